"""Leave-one-category-out tables from the runs' results.json (no model is reloaded).

A LOCO sweep (conf/experiment/loco_*.yaml) trains every model with each category held out in
turn (`data.unseen=[cat]`) and three seeds, and tests on test_unseen only. Each run's results.json
already holds its test metrics and the baselines' (logged at test time by BaselineMetrics, from the
same rows), so this module only reads and aggregates:

  rows     held-out category, then "mean over categories" (per seed the mean over categories,
           then mean ± std over seeds);
  columns  each model setup (runs equal but for seed and held-out category; labels show what
           tells setups of one backbone apart, e.g. `lstm window=1`) and each baseline;
  cells    mean ± std (ddof=1) over seeds of the task's primary test_unseen metrics;
  significance (per row): the best sequence model (lstm/tcn, window > 1) against the best of
           the MLP and logistic regression (next_task, which has no logistic regression: the MLP
           and the baselines): "beats" only by more than the sum of their spreads, else "no
           significant difference", "below" (by more than the spreads), or "1 seed: spread unknown".
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from data.dataset import balancer
from data.dataset.splits import natural
from evaluation.report import table
from evaluation.seeds import compare, fmt_ms, group_setups, mean_std

log = logging.getLogger(__name__)

SPLIT = "test_unseen"
METRICS = {
    "migration": ["bal_acc", "ap"],
    "next_task": ["top1", "top3"],
    "can_migrate": ["bal_acc"],
    # top1_multi: top-1 on the samples with two candidates or more (models/tasks/next_task_candidates.py)
    "next_task_candidates": ["top1", "top1_multi", "top3"],
}
RARE_LABELS = ("forced", "forced_future")  # can_migrate labels with few positives: AP and F1 beside bal_acc


def metrics_of(task: str, rs: list[dict]) -> list[str]:
    """The LOCO table's metrics of a task's runs (can_migrate's rare labels add AP and F1)."""
    labels = {((r.get("config") or {}).get("data") or {}).get("label") for r in rs}
    rare = task == "can_migrate" and labels & set(RARE_LABELS)
    return METRICS.get(task, []) + (["ap", "f1"] if rare else [])


CEILING = {"next_task": "ceiling", "next_task_candidates": "ceiling"}  # a property of the data, shown beside the table
SEQUENCE = ("lstm", "tcn")
MEAN_ROW = "mean over categories"
WINDOW_VERDICTS = {"beats": "longer window beats window 1", "below": "window 1 beats the longer window"}


def read_results(roots) -> list[dict]:
    """Every results.json under the given directories (natural order), with its run folder."""
    out = []
    for root in [roots] if isinstance(roots, (str, Path)) else list(roots or []):
        for p in sorted(Path(root).rglob("results.json"), key=natural):
            r = json.loads(p.read_text())
            if "config" in r and "metrics" in r:
                out.append({**r, "run_dir": str(p.parent)})
    return out


def fold_of(r: dict) -> str:
    """The held-out categories of a run: the datamodule's resolved split, else data.unseen."""
    unseen = (r.get("split") or {}).get("unseen")
    if unseen is None:
        unseen = ((r.get("config") or {}).get("data") or {}).get("unseen")
    return "+".join(unseen) if isinstance(unseen, (list, tuple)) and unseen else "dataset's own"


def is_loco(results: list[dict]) -> bool:
    """More than one held-out category among the runs of some task."""
    folds: dict[str, set] = {}
    for r in results:
        folds.setdefault(r.get("task"), set()).add(fold_of(r))
    return any(len(f) > 1 for f in folds.values())


def _window(r: dict) -> int:
    return int(r.get("window") or ((r.get("config") or {}).get("data") or {}).get("window") or 1)


def splits_of(rs: list[dict]) -> list[str]:
    """test_unseen, then test_unseen/no_balancer where the runs tested on it too (a migration
    sweep with it in data.test_splits: the held-out rows no load balancer moved)."""
    derived = balancer.name_of(SPLIT)
    return [SPLIT] + [derived] * any(k.startswith(f"{derived}/") for r in rs for k in r["metrics"])


def loco_tables(results: list[dict]) -> list[dict]:
    """One entry per (task, dataset, test split): columns, per-fold cells, the mean row and significance."""
    tables = []
    keys = list(dict.fromkeys((r["task"], str(r["config"]["data"].get("dataset_dir"))) for r in results))
    for task, dataset in keys:
        rs = [r for r in results if r["task"] == task and str(r["config"]["data"].get("dataset_dir")) == dataset]
        tables += [_loco_table(task, dataset, rs, split) for split in splits_of(rs)]
    return tables


def _loco_table(task: str, dataset: str, rs: list[dict], split: str) -> dict:
    """The table of one task and dataset on one test split."""
    metrics = metrics_of(task, rs)
    groups = group_setups(rs, exclude=("data.unseen",))
    folds = sorted(dict.fromkeys(fold_of(r) for r in rs))
    # values[column][metric][fold][seed]
    values: dict[str, dict] = {}
    kinds: dict[str, str] = {}
    for g in groups:
        label = g["label"]
        kinds[label] = "sequence" if g["backbone"] in SEQUENCE and _window(rs[g["members"][0]]) > 1 else g["backbone"]
        for i in g["members"]:
            r = rs[i]
            for m in metrics + [CEILING.get(task)] if CEILING.get(task) else metrics:
                v = r["metrics"].get(f"{split}/{m}")
                if v is not None:
                    values.setdefault(label, {}).setdefault(m, {}).setdefault(fold_of(r), {})[r.get("seed")] = v
    prefix = f"{split}/baseline/"
    baselines = sorted({k[len(prefix) :].split("/")[0] for r in rs for k in r["metrics"] if k.startswith(prefix)})
    for b in baselines:
        label = f"baseline: {b}"
        kinds[label] = "logreg" if b == "logreg" else "baseline"
        for r in rs:
            for m in metrics:
                v = r["metrics"].get(f"{split}/baseline/{b}/{m}")
                if v is not None:  # the same rows for every model of a fold and seed
                    values.setdefault(label, {}).setdefault(m, {}).setdefault(fold_of(r), {})[r.get("seed")] = v
    columns = [g["label"] for g in groups] + [f"baseline: {b}" for b in baselines]
    cells = {
        m: {f: {c: mean_std(list(values.get(c, {}).get(m, {}).get(f, {}).values())) for c in columns} for f in folds}
        for m in metrics
    }
    mean_row = {m: {c: _mean_over_folds(values.get(c, {}).get(m, {}), folds) for c in columns} for m in metrics}
    ceiling = None
    if CEILING.get(task):
        per_fold = {}
        for c in columns:
            for f, by_seed in values.get(c, {}).get(CEILING[task], {}).items():
                per_fold.setdefault(f, list(by_seed.values()))
        ceiling = {f: mean_std(v) for f, v in per_fold.items()}
        ceiling[MEAN_ROW] = mean_std([ceiling[f]["mean"] for f in folds if f in ceiling])
    primary = metrics[0] if metrics else None
    significance = {}
    if primary:
        for f in [*folds, MEAN_ROW]:
            row = mean_row[primary] if f == MEAN_ROW else cells[primary][f]
            significance[f] = _significance(row, kinds, task)
    return {
        "task": task,
        "dataset": dataset,
        "split": split,
        "metrics": metrics,
        "folds": folds,
        "columns": columns,
        "kinds": kinds,
        "runs": len(rs),
        "seeds": sorted({r.get("seed") for r in rs}, key=str),
        "cells": cells,
        "mean": mean_row,
        "ceiling": ceiling,
        "significance": significance,
        "window_comparison": _window_comparison(groups, rs, mean_row.get(primary, {})),
    }


def _mean_over_folds(by_fold: dict, folds: list[str]) -> dict:
    """Per seed present in every fold: the mean over folds; then mean ± std over those seeds."""
    seeds = set.intersection(*(set(by_fold.get(f, {})) for f in folds)) if folds else set()
    per_seed = [sum(by_fold[f][s] for f in folds) / len(folds) for s in sorted(seeds, key=str)]
    return mean_std(per_seed)


def _significance(row: dict, kinds: dict, task: str) -> dict:
    """The best sequence column against the best reference column (MLP, logistic regression)."""
    ref_kinds = ("mlp", "logreg") if "logreg" in kinds.values() else ("mlp", "logreg", "baseline")
    seq = [c for c, k in kinds.items() if k == "sequence" and row[c]["mean"] is not None]
    ref = [c for c, k in kinds.items() if k in ref_kinds and row[c]["mean"] is not None]
    if not seq or not ref:
        return {"verdict": None, "text": "–"}
    a = max(seq, key=lambda c: row[c]["mean"])
    b = max(ref, key=lambda c: row[c]["mean"])
    verdict = compare(row[a], row[b])  # "below" too only by more than the spreads: a tie is no difference
    diff = row[a]["mean"] - row[b]["mean"]
    won = verdict == "beats"
    text = f"{a} {'beats' if won else 'vs'} {b}: {diff:+.4f}" + ("" if won else f" ({verdict})")
    return {"verdict": verdict, "sequence": a, "reference": b, "diff": diff, "text": text}


def _window_comparison(groups: list[dict], rs: list[dict], mean_row: dict) -> list[dict]:
    """Window 1 against the other windows of the same backbone, on the mean over categories."""
    out = []
    for backbone in SEQUENCE:
        gs = [g for g in groups if g["backbone"] == backbone]
        ones = [g for g in gs if _window(rs[g["members"][0]]) == 1]
        longer = [g for g in gs if _window(rs[g["members"][0]]) > 1]
        for one in ones:
            for g in longer:
                a, b = mean_row.get(g["label"]), mean_row.get(one["label"])
                if a and b:
                    verdict = compare(a, b)
                    out.append(
                        {
                            "backbone": backbone,
                            "window": _window(rs[g["members"][0]]),
                            "long": g["label"],
                            "one": one["label"],
                            "long_value": a,
                            "one_value": b,
                            "verdict": WINDOW_VERDICTS.get(verdict, verdict),
                        }
                    )
    return out


def render_loco(tables: list[dict]) -> str:
    out = []
    for t in tables:
        out += [
            f"## Leave-one-category-out: {t['task']} on `{t['dataset']}`"
            + (f", {t['split']}" if t["split"] != SPLIT else ""),
            "",
            f"{t['runs']} runs, seeds {', '.join(map(str, t['seeds']))}; {t['split']} of each fold (the held-out "
            f"category); cells: mean ± std over seeds (ddof=1, n = seeds). Last row: per seed the mean over "
            f"categories, then mean ± std over seeds. Significance: the best sequence model (lstm/tcn, window > 1) "
            f"against the best of the MLP and logistic regression; it beats only by more than the sum of the "
            f"spreads.",
            "",
        ]
        for i, m in enumerate(t["metrics"]):
            header = ["held-out category", *t["columns"]]
            if t["ceiling"]:
                header.append("ceiling")
            if i == 0:
                header.append("significance")
            rows = []
            for f in [*t["folds"], MEAN_ROW]:
                cells = t["mean"][m] if f == MEAN_ROW else t["cells"][m][f]
                row = [f"**{f}**" if f == MEAN_ROW else f, *(fmt_ms(cells[c]) for c in t["columns"])]
                if t["ceiling"]:
                    row.append(fmt_ms(t["ceiling"].get(f)))
                if i == 0:
                    row.append(t["significance"].get(f, {}).get("text", "–"))
                rows.append(row)
            out += [f"### {m} ({t['split']})", "", table(header, rows), ""]
        if t["window_comparison"]:
            rows = [
                [w["backbone"], w["long"], fmt_ms(w["long_value"]), w["one"], fmt_ms(w["one_value"]), w["verdict"]]
                for w in t["window_comparison"]
            ]
            out += [
                f"### Window 1 against the default window ({t['metrics'][0]}, mean over categories)",
                "",
                table(["backbone", "setup", "value", "window 1", "value", "verdict"], rows),
                "",
            ]
    return "\n".join(out) + "\n"
