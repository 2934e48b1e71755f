"""What an export needs from a trained model, and how to get it from a checkpoint.

`Source` is deliberately plain (an nn.Module + numpy windows) so the pipeline also runs on
models built in tests; `from_checkpoint` fills it from the training stack (models.tasks):
the checkpoint's net, its data metadata, the training split (calibration) and the test splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class Decisions:
    """How a candidate scorer's windows group into decisions (one switch's runnable set): window i
    is candidate `slot[i]` of decision `owner[i]`; y (D,) is each decision's chosen slot, a slot no
    window has (max_candidates) when the chosen task is not in the set. Decisions without a
    candidate have no window and are always wrong, as in training's top1."""

    owner: np.ndarray  # (N,) int64, ascending
    slot: np.ndarray  # (N,) int64
    y: np.ndarray  # (D,) int64


@dataclass
class Split:
    """Windows of one split: x (N, L, F) float32, tok (N, L) | None, y (N,) | None.

    `rows_x`/`rows_tok` are the split's steps in stream order and `row` the step each window
    ends on; `start` marks the steps that begin a stream (None when the windows cannot tell,
    i.e. window length 1). Together they let the integer model be run as it streams in the
    kernel, one step per event, instead of window by window."""

    name: str
    x: np.ndarray
    tok: np.ndarray | None = None
    y: np.ndarray | None = None
    rows_x: np.ndarray | None = None
    rows_tok: np.ndarray | None = None
    row: np.ndarray | None = None
    start: np.ndarray | None = None
    decisions: Decisions | None = None  # a candidate scorer's split: the windows' decisions

    def __len__(self) -> int:
        return len(self.x)

    def batches(self, size: int = 4096):
        for i in range(0, len(self.x), size):
            yield self.x[i : i + size], None if self.tok is None else self.tok[i : i + size]

    def take(self, n: int, rng: np.random.Generator) -> Split:
        """A random subset of windows (in order), for the slower checks."""
        if n >= len(self):
            return self
        idx = np.sort(rng.choice(len(self), n, replace=False))
        return Split(
            self.name, self.x[idx], None if self.tok is None else self.tok[idx], None if self.y is None else self.y[idx]
        )


@dataclass
class Source:
    net: torch.nn.Module
    window: int
    n_num: int
    vocab: int
    calib: Split  # training windows: activation ranges
    evals: list[Split] = field(default_factory=list)  # held-out windows: agreement, metric, vectors
    task: str = "migration"
    metric: str = "bal_acc"  # primary metric (the training monitor without "val/")
    unknown_token: int | None = None  # next_task: never a valid prediction
    features: list[dict] | None = None  # FeatureSpec dicts + mean/std, for slm_encode
    describe: str = ""
    trained_on: dict | None = None  # the checkpoint's data_meta["dataset"]: dir, train runs, collectors
    # what the kernel module must know about the model's inputs (data_meta; None: not said)
    inputs: str | None = None  # can_migrate's data.inputs: the module computes only KERNEL_INPUTS
    label: str | None = None  # e.g. forced_future, whose steps read the task's own call history
    window_by: str | None = None  # "task": the streaming state belongs to a task, not a CPU
    max_candidates: int | None = None  # a candidate scorer (next_task_candidates): the largest set kept
    input_names: list[str] | None = None  # a candidate scorer's inputs (its `features` say the steps' only)


def split_from_data(sd) -> Split:
    """data.dataset.windows.SplitData -> Split (windows gathered, pad row dropped from the steps)."""
    steps = sd.steps.numpy()
    index = sd.index.numpy()
    pad = len(steps) - 1
    tokens = None if sd.tokens is None else sd.tokens.numpy()
    start = None
    if index.shape[1] > 1:
        start = np.zeros(pad, bool)
        start[index[:, -1][index[:, -2] == pad]] = True
    return Split(
        sd.name,
        steps[index],
        None if tokens is None else tokens[index],
        sd.target.numpy(),
        steps[:-1],
        None if tokens is None else tokens[:-1],
        index[:, -1],
        start,
    )


def split_from_candidates(cs) -> Split:
    """data.dataset.candidates.CandidateSplit -> Split: one window per candidate (the scorer's
    input, CandidateSplit.batch) and the decisions they belong to. No stream form: a candidate's
    indicator and candidate channels differ at every step from another candidate's, so its window
    is evaluated whole, from reset."""
    b = cs.batch(torch.arange(len(cs)))
    return Split(
        cs.name,
        b["x"].numpy(),
        decisions=Decisions(b["owner"].numpy(), b["slot"].numpy(), b["y"].numpy()),
    )


def candidate_input_names(meta: dict) -> list[str]:
    """A candidate scorer's inputs in order: step features, indicators, the candidate's features."""
    from data.dataset.candidates import INDICATORS

    return [*meta["feature_names"], *INDICATORS, *(s["name"] for s in meta["candidate_features"])]


def from_checkpoint(ckpt_path: str, dataset_dir: str | None = None, splits: list[str] | None = None) -> Source:
    """Net, metadata and data splits of a training checkpoint."""
    # deferred on purpose: models.tasks loads Lightning (about 3 s); Source and Split serve models
    # built without it (kernel/vm/models.py, the export tests)
    from data.dataset.candidates import CandidateSplit
    from models.tasks import load_from_checkpoint, make_datamodule

    def to_split(sd) -> Split:
        return split_from_candidates(sd) if isinstance(sd, CandidateSplit) else split_from_data(sd)

    module, cfg, meta = load_from_checkpoint(ckpt_path)
    overrides = {"dataset_dir": dataset_dir} if dataset_dir else {}
    dm = make_datamodule(cfg, meta, **overrides)
    names = splits or dm.test_split_names
    monitor = (module.hparams.get("monitor") or "val/bal_acc").split("/")[-1]
    feats = None
    # a candidate scorer's meta["features"] are its step inputs only: the caller encodes its inputs
    if meta.get("features") is not None and meta.get("max_candidates") is None:
        feats = {"specs": meta["features"], "mean": meta["mean"], "std": meta["std"], "names": meta["feature_names"]}
    return Source(
        module.net.eval(),
        int(meta["window"]),
        int(meta["n_features"]),
        int(meta.get("n_tokens") or 0),
        to_split(dm.get_split("train")),
        [to_split(dm.get_split(n)) for n in names],
        task=meta["task"],
        metric=monitor,
        unknown_token=meta.get("unknown_token"),
        features=feats,
        describe=f"{ckpt_path} ({meta['task']}, {type(module.net.backbone).__name__})",
        trained_on=meta.get("dataset"),
        inputs=meta.get("inputs"),
        label=meta.get("label"),
        window_by=meta.get("window_by"),
        max_candidates=meta.get("max_candidates"),
        input_names=candidate_input_names(meta) if meta.get("max_candidates") is not None else None,
    )
