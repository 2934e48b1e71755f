"""Scores of models and baselines on a test set, with the task's own torchmetrics collection.

Every predictor (model or baseline) yields logits shaped like the network's and is scored by the
task module's `make_metrics` / `metric_inputs`, exactly as in training's test step, plus a
confusion matrix. `lift` puts a model beside the best baseline on the same test set.
"""

from __future__ import annotations

import torch
from torchmetrics.classification import BinaryConfusionMatrix, MulticlassConfusionMatrix

from data.dataset.candidates import CandidateSplit
from data.dataset.windows import SplitData
from models.baselines import fit_baselines
from models.tasks.next_task_candidates import candidate_logits

CHUNK = 4096
MAX_CONFUSION_CLASSES = 32  # next_task: a token confusion matrix only for small encodings (MTF)


def primary_metric(module) -> str:
    """The metric the run was selected on: its monitor without the `val/` prefix."""
    return (module.hparams.get("monitor") or "val/bal_acc").split("/")[-1]


@torch.inference_mode()
def predict(net: torch.nn.Module, split: SplitData, chunk: int = CHUNK) -> torch.Tensor:
    """Logits of every window of the split (network in eval mode); of every sample's candidate
    slots for a CandidateSplit (task next_task_candidates)."""
    net.eval()
    if isinstance(split, CandidateSplit):
        c = split.max_candidates
        parts = [
            candidate_logits(net, split.batch(torch.arange(a, min(a + chunk, len(split)))), c)
            for a in range(0, len(split), chunk)
        ]
        return torch.cat(parts) if parts else torch.zeros(0, c + 1)
    out = []
    for a in range(0, len(split), chunk):
        idx = split.index[a : a + chunk]
        out.append(net(split.steps[idx], None if split.tokens is None else split.tokens[idx]))
    return torch.cat(out) if out else torch.zeros(0, 1)


def confusion_metric(meta: dict):
    if meta.get("max_candidates"):  # next_task_candidates: a slot names no class
        return None
    n = int(meta["n_out"])
    if n == 1:
        return BinaryConfusionMatrix()
    return MulticlassConfusionMatrix(n) if n <= MAX_CONFUSION_CLASSES else None


def score(module, logits: torch.Tensor, target: torch.Tensor) -> dict:
    """{metric: float} of the task, `confusion` (rows = true class, columns = predicted) and `n`."""
    preds, target = module.metric_inputs(logits), target.long()
    out = {k: float(v) for k, v in module.make_metrics()(preds, target).items()}
    confusion = confusion_metric(module.meta)
    if confusion is not None:
        out["confusion"] = confusion(preds, target).tolist()
    out["n"] = int(len(target))
    return out


def baseline_key(cand) -> tuple:
    """Baselines depend on the dataset and the rows fitted on (the resolved split, the synthetic
    source), the encoding and the numeric inputs, not on the network."""
    m = cand.meta
    return (
        m["task"],
        str(cand.dm.dataset_dir),
        repr(m.get("split")),
        m.get("source"),
        tuple(m["feature_names"]),
        m.get("encoding"),
        m.get("k"),
        len(m.get("vocab") or []),
        m.get("window_by"),
        m.get("label"),
        repr(m.get("future")),  # label forced_future: its calls and horizon define the targets
        m.get("max_candidates"),
    )


def split_logits(splits: list[str], derived: dict[str, tuple[str, torch.Tensor]], logits_of) -> dict[str, torch.Tensor]:
    """Logits of every named set: `logits_of(name)`, or a slice of the parent's for derived sets."""
    out: dict[str, torch.Tensor] = {}
    for name in sorted(splits, key=lambda n: n in derived):  # parents first
        parent = derived.get(name)
        out[name] = out[parent[0]][parent[1]] if parent else logits_of(name)
    return out


def baseline_scores(cand, splits: list[str], cache: dict, chunk: int = CHUNK) -> dict[str, dict[str, dict]]:
    """{split: {baseline: scores}}; baselines are fitted once per `baseline_key` on its train split."""
    key = baseline_key(cand)
    if key not in cache:
        train = cand.dm.get_split("train")
        cache[key] = {"fitted": fit_baselines(cand.task, train, cand.meta), "scores": {}}
    entry = cache[key]
    todo = [n for n in splits if n not in entry["scores"]]
    derived = cand.derived(todo)
    for b in entry["fitted"]:

        def logits_of(name, b=b):
            split = cand.get_split(name)
            return torch.cat([b.logits(split, slice(a, a + chunk)) for a in range(0, len(split), chunk)])

        for name, logits in split_logits(todo, derived, logits_of).items():
            entry["scores"].setdefault(name, {})[b.name] = score(cand.module, logits, cand.get_split(name).target)
    return {name: entry["scores"][name] for name in splits}


def lift(model: dict, baselines: dict[str, dict], metric: str) -> dict:
    """The model's `metric` minus the best baseline's on the same test set (and which one that is)."""
    if not baselines:
        return {}
    best = max(baselines, key=lambda b: baselines[b][metric])
    return {"lift": model[metric] - baselines[best][metric], "best_baseline": best}
