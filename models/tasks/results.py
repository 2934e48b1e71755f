"""Test metrics of the model and its baselines as one table (printed with rich, saved as JSON),
and a run's results.json (what `evaluate.py runs=DIR` reads instead of reloading every model)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from models.cost import macs_per_decision, parameter_count
from plumbing.atomic import write_json_atomic

MODEL = "model"
RESULTS_VERSION = 1


def results_frame(metrics: dict[str, float], order: list[str] | None = None) -> pd.DataFrame:
    """Wide table indexed by (split, predictor) with one column per metric.

    Keys look like `test_seen/bal_acc` (the model) or `test_seen/baseline/logreg/bal_acc`.
    """
    recs = []
    for key, value in metrics.items():
        parts = key.split("/")
        if parts[0] in ("train", "val", "model") or len(parts) < 2 or parts[-1] == "loss":
            continue
        if "baseline" in parts:
            i = parts.index("baseline")
            recs.append(("/".join(parts[:i]), parts[i + 1], parts[-1], value))
        else:
            recs.append(("/".join(parts[:-1]), MODEL, parts[-1], value))
    if not recs:
        return pd.DataFrame()
    df = pd.DataFrame(recs, columns=["split", "predictor", "metric", "value"])
    wide = df.pivot_table(index=["split", "predictor"], columns="metric", values="value", sort=False)
    cols = list(dict.fromkeys([*(order or []), *df["metric"]]))
    return wide[[c for c in cols if c in wide.columns]]


def print_results(metrics: dict[str, float], title: str = "test metrics", order: list[str] | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    wide = results_frame(metrics, order)
    if wide.empty:
        return
    table = Table(title=title)
    table.add_column("split")
    table.add_column("predictor")
    for m in wide.columns:
        table.add_column(m, justify="right")
    last = None
    for (split, predictor), row in wide.iterrows():
        if last is not None and split != last:
            table.add_section()
        style = "bold" if predictor == MODEL else None
        table.add_row(split if split != last else "", predictor, *(f"{v:.4f}" for v in row), style=style)
        last = split
    Console().print(table)


def write_results(metrics: dict[str, float], path: Path) -> None:
    """Atomically write all final metrics as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, metrics, indent=1, sort_keys=True)


def _plain(obj):
    """Plain containers all the way down (OmegaConf nodes may sit inside plain dicts)."""
    if OmegaConf.is_config(obj):
        return OmegaConf.to_container(obj, resolve=True)
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def run_results(
    cfg, trainer, module, datamodule, metrics: dict[str, float], stopped_by: str | None, best_score, best_path: str
) -> dict:
    """results.json of a training run. Everything in it is a function of the command (no wall
    times), so two identical runs write identical files apart from their paths.

    {"version", "task", "backbone", "seed", "stopped_by" (max_time | early_stopping | max_epochs |
     max_steps | interrupted | null when not trained), "reproducible" (false when max_time fired),
     "epochs", "global_step", "monitor", "validation" ({primary metric: best monitored value}),
     "best_ckpt", "params", "macs", "split" (the datamodule's resolved split, if it records one),
     "metrics" (every final metric: test splits, baselines), "config" (the resolved run config)}
    "macs" are MACs per decision (window `window`): models.cost.RELATION says how they relate
    to the exported model's MACs per step."""
    monitor = str(cfg.monitor)
    net = module.net
    macs = None
    for name in ("val", "train"):
        split = datamodule.get_split(name)
        if len(split):
            macs = macs_per_decision(net, *split.last_window())
            break
    meta = _plain(datamodule.meta or {})  # a resumed run's metadata came through hydra.utils.instantiate
    return {
        "version": RESULTS_VERSION,
        "task": meta.get("task"),
        "backbone": str(cfg.model._target_).rsplit(".", 1)[-1],
        "seed": cfg.get("seed"),
        "stopped_by": stopped_by,
        "reproducible": stopped_by != "max_time",
        "epochs": int(trainer.current_epoch),
        "global_step": int(trainer.global_step),
        "monitor": monitor,
        "validation": {monitor.split("/", 1)[-1]: None if best_score is None else float(best_score)},
        "best_ckpt": best_path or None,
        "params": parameter_count(net),
        "macs": macs,
        "window": meta.get("window"),
        "inputs": list(dict.fromkeys(f["column"] for f in meta.get("features", []))),
        "split": meta.get("split"),
        "metrics": metrics,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
