"""`evaluate(cfg)`: every checkpoint on every test set, with baselines, cost, latency and
feature importance; seed groups (mean ± std); then the winner, report.md, metrics.json,
winner.json, ranking.json and the PNGs. A leave-one-category-out sweep (`loco`) is read from the
runs' results.json instead and gives the per-category tables."""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from data.dataset import balancer
from evaluation import plots
from evaluation.branches import branch_scores
from evaluation.config import check
from evaluation.importance import permutation_importance
from evaluation.latency import measure
from evaluation.lead_time import applies as lead_time_applies
from evaluation.lead_time import lead_time_scores
from evaluation.loco import is_loco, loco_tables, read_results, render_loco
from evaluation.metrics import baseline_scores, lift, predict, primary_metric, score, split_logits
from evaluation.report import VERSION, ranking, render, split_order, write_json
from evaluation.seeds import aggregate, group_setups
from evaluation.sources import Candidate, EvaluationError, TraceTables, assign_labels, find_checkpoints, load_candidate
from evaluation.winner import SELECTION_SPLIT, describe, pick_winners
from models.config import check_trained
from models.cost import macs_per_decision, parameter_count
from plumbing.atomic import write_atomic

log = logging.getLogger(__name__)


def header(cfg: DictConfig) -> dict:
    """What every metrics.json starts with: schema version, time, the command and the config."""
    command = (
        " ".join(["python evaluate.py", *sys.argv[1:]]) if Path(sys.argv[0]).name == "evaluate.py" else "evaluate(cfg)"
    )
    return {
        "version": VERSION,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def progress(msg: str) -> None:
    """One line per stage, so a long evaluation is never silent."""
    log.info("[evaluate] %s", msg)


def validation_scores(cand: Candidate, chunk: int) -> dict:
    """Scores on the datamodule's validation rows (the winner is chosen on these), or {} if none."""
    split = cand.get_split(SELECTION_SPLIT)
    if len(split) == 0:
        return {"n": 0}
    return score(cand.module, predict(cand.module.net, split, chunk), split.target)


def evaluate_candidate(cand: Candidate, cfg: DictConfig, cache: dict, step: str = "") -> dict:
    t0 = time.perf_counter()
    module, net = cand.module, cand.module.net
    primary = primary_metric(module)
    splits = cand.test_sets(cfg.workloads)
    if not splits:
        raise EvaluationError(
            f"{cand.ckpt_path}: no test set with samples (dataset {cand.dm.dataset_dir}, traces {list(cfg.traces)})"
        )
    chunk = int(cfg.data.eval_batch_size)
    derived = cand.derived(splits)

    def logits_of(s: str) -> torch.Tensor:
        progress(f"{step}{cand.label}: test set {s} ({len(cand.get_split(s))} windows)")
        return predict(net, cand.get_split(s), chunk)

    logits = split_logits(splits, derived, logits_of)
    scores = {s: score(module, logits[s], cand.get_split(s).target) for s in splits}
    for s in splits:  # <split>/no_balancer: how many rows a balancer moved (data.dataset.balancer)
        if (parent := balancer.parent_of(s)) is not None:
            scores[s][balancer.REMOVED] = len(cand.get_split(parent)) - len(cand.get_split(s))
    progress(f"{step}{cand.label}: validation rows ({SELECTION_SPLIT}, for the winner)")
    validation = validation_scores(cand, chunk)
    if cfg.baselines:
        progress(f"{step}{cand.label}: baselines")
    baselines = baseline_scores(cand, splits, cache, chunk) if cfg.baselines else {}
    for s in splits:
        scores[s].update(lift(scores[s], baselines.get(s, {}), primary))
    x, tokens = cand.get_split(splits[0]).last_window()  # one real batch-1 window
    entry = {
        "label": cand.label,
        "task": cand.task,
        "backbone": cand.backbone,
        "seed": cand.cfg.get("seed"),
        "ckpt_path": str(cand.ckpt_path),
        "run_dir": str(cand.run_dir),
        "dataset_dir": str(cand.dm.dataset_dir),
        "window": int(cand.meta["window"]),
        "inputs": cand.input_features,
        "n_inputs": len(cand.input_features),
        "params": parameter_count(net),
        "macs": macs_per_decision(net, x, tokens),
        "primary": primary,
        "metric_names": list(module.metric_names),
        "splits": scores,
        "validation": validation,
        "baselines": baselines,
        "latency": None,
        "importance": None,
    }
    whole = [s for s in splits if not s.startswith("workload/")]  # test sets, not their per-workload parts
    if cand.task == "can_migrate":  # which branch of the kernel's rule the model misses
        entry["branches"] = {s: branch_scores(module, logits[s], cand.get_split(s)) for s in whole}
    if lead_time_applies(cand.meta):  # forced_future: how far ahead of the forced call
        entry["lead_time"] = {s: lead_time_scores(module, logits[s], cand.get_split(s)) for s in whole}
    if cfg.latency.enabled:
        progress(f"{step}{cand.label}: latency ({int(cfg.latency.calls)} calls per engine)")
        entry["latency"] = measure(
            net, cand.meta, x, tokens, int(cfg.latency.calls), int(cfg.latency.warmup), bool(cfg.latency.onnx)
        )
    if cfg.importance.enabled:
        # rankings are choices: made on validation rows unless a split is named explicitly
        name = cfg.importance.split if cfg.importance.split in splits else SELECTION_SPLIT
        if len(cand.get_split(name)):
            progress(f"{step}{cand.label}: permutation importance on {name}")
            entry["importance"] = permutation_importance(
                module,
                cand.get_split(name),
                primary,
                int(cfg.importance.repeats),
                int(cfg.importance.seed),
                cfg.importance.max_samples,
            )
    log.info(
        "%s (%s): %s in %.1fs",
        cand.label,
        cand.task,
        ", ".join(f"{s} {primary}={scores[s][primary]:.4f}" for s in splits[:2]),
        time.perf_counter() - t0,
    )
    return entry


def write_plots(models: list[dict], out: Path, cfg: DictConfig) -> list[str]:
    files = []
    split, engine = cfg.report_split, cfg.winner.latency
    files.append(plots.accuracy_latency(models, out / "accuracy_latency.png", split, engine))
    for task in plots.tasks_of(models):
        ms = [m for m in models if m["task"] == task]
        files += [
            plots.per_split_bars(
                models,
                task,
                [s for s in split_order(ms) if s.startswith(("workload/", "trace/"))],
                out / f"workloads_{task}.png",
            ),
            plots.per_split_bars(
                models,
                task,
                [s for s in split_order(ms) if not s.startswith(("workload/", "trace/"))],
                out / f"splits_{task}.png",
            ),
            plots.confusion(models, task, split, out / f"confusion_{task}.png"),
            plots.importance(models, task, out / f"importance_{task}.png"),
            plots.feature_count(models, task, split, out / f"feature_count_{task}.png"),
        ]
    return [p.name for p in files if p is not None]


def evaluate(cfg: DictConfig) -> dict:
    """Evaluate the configured checkpoints; returns metrics.json's content (also written).

    The output folder is created only once every checkpoint has loaded, so a run that fails on
    its input leaves nothing behind (evaluate.py also removes Hydra's folder then)."""
    out = Path(cfg.paths.output_dir)
    check(cfg)  # also makes a single ckpt_paths / runs / traces path a list of one
    if cfg.runs and cfg.loco is not False:
        results = read_results(list(cfg.runs))
        if cfg.loco is True or (results and is_loco(results)):
            return evaluate_loco(cfg, results, out)
    torch.manual_seed(int(cfg.seed))
    traces = TraceTables(list(cfg.traces))  # missing files fail before any model is loaded
    overrides = {"dataset_dir": cfg.data_dir, "eval_batch_size": cfg.data.eval_batch_size}
    paths = find_checkpoints(cfg.ckpt_path, cfg.ckpt_paths, cfg.runs)
    cands = []
    for i, p in enumerate(paths, 1):
        progress(f"load {i}/{len(paths)}: {p}")
        check_trained(p, "checkpoint")
        cands.append(load_candidate(p, overrides))
    assign_labels(cands)
    for cand in cands:
        traces.attach(cand)
    cache: dict = {}
    models = []
    for i, c in enumerate(cands, 1):
        models.append(evaluate_candidate(c, cfg, cache, f"{i}/{len(cands)} "))
        c.release()  # memory holds one candidate's windows at a time, not every checkpoint's
    setups = group_setups(
        [{"task": c.task, "backbone": c.backbone, "config": OmegaConf.to_container(c.cfg, resolve=True)} for c in cands]
    )  # runs that differ only by seed
    for g in setups:
        for i in g["members"]:
            models[i]["group"] = g["label"]
    groups = aggregate(models, setups)
    w = cfg.winner
    winner = pick_winners(groups, OmegaConf.to_container(w.metric), int(w.budget_macs), w.latency)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.plots:
        progress(f"plots -> {out}")
    files = write_plots(models, out, cfg) if cfg.plots else []
    rank = ranking(models)
    files += ["metrics.json", "report.md", "winner.json"] + (["ranking.json"] if rank["models"] else [])
    result = {**header(cfg), "models": models, "groups": groups, "winner": winner, "files": files}
    write_json(out / "winner.json", winner)
    if rank["models"]:
        write_json(out / "ranking.json", rank)
        for r in rank["models"]:
            print(f"feature ranking of {r['label']} ({r['split']}): retrain on its top-k with\n    {r['command']}")
    write_json(out / "metrics.json", result)
    write_atomic(out / "report.md", render(models, winner, files, result["command"], cfg.report_split, groups))
    for task, v in winner["winners"].items():
        progress(f"winner {describe(task, v, winner['latency_engine'])}")
    progress(f"report: {out / 'report.md'}")
    return result


def evaluate_loco(cfg: DictConfig, results: list[dict], out: Path) -> dict:
    """Leave-one-category-out tables from the runs' results.json (no model is reloaded)."""
    if not results:
        raise EvaluationError(
            f"runs={','.join(cfg.runs)}: no results.json under it (train with this version of train.py)"
        )
    progress(f"leave-one-category-out: {len(results)} runs from results.json")
    tables = loco_tables(results)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        **header(cfg),
        "loco": tables,
        "runs": [r["run_dir"] for r in results],
        "files": ["metrics.json", "report.md"],
    }
    write_json(out / "metrics.json", result)
    write_atomic(
        out / "report.md",
        f"# Leave-one-category-out report\n\nCommand: `{result['command']}`\n\n" + render_loco(tables),
    )
    for t in tables:
        sig = t["significance"].get("mean over categories", {}).get("text")
        progress(
            f"{t['task']} ({t['dataset']}): {len(t['folds'])} categories, {len(t['columns'])} columns; mean: {sig}"
        )
    progress(f"report: {out / 'report.md'}")
    return result
