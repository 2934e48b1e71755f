"""metrics.json (everything, machine-readable) and report.md (the same as tables) of an evaluation.

metrics.json schema (version 1):
  {"version", "created", "command", "config",
   "models": [{"label", "task", "backbone", "ckpt_path", "run_dir", "dataset_dir", "window",
               "inputs" (feature groups), "n_inputs", "params", "macs", "primary", "metric_names",
               "latency": {"eager": {p50_us, p99_us, mean_us, calls}, "onnxruntime": {... , max_abs_diff}},
               "splits": {test set: {metric: value, "confusion": [[...]], "n", "lift", "best_baseline"}},
                 (migration: `<split>/no_balancer`, the split without its balancer_migrated rows, has
                  "balancer_rows": the rows removed; data.dataset.balancer)
               "baselines": {test set: {baseline: {metric: value, ...}}},
               "importance": {"metric", "split", "base", "repeats", "seed", "samples",
                              "features": {name: {drop_mean, drop_std}}} | null}],
   "groups": [{"label", "task", "backbone", "settings", "members", "seeds", "n", "macs", "window", "params",
               "validation": {metric: {"mean", "std", "n"}}, "splits": {test set: {metric: {...}}},
               "baselines": {test set: {baseline: {metric: {...}}}}}]  (runs that differ only by seed),
   "winner": winner.json's content, "files": [...]}
ranking.json: per model with a permutation importance, its ranking on validation rows and the
exact feature-count multirun command (the only way to get a ranking into experiment=feature_count).
"""

from __future__ import annotations

import json
from pathlib import Path

from data.dataset.balancer import REMOVED, parent_of
from data.dataset.tables import BALANCER_LABEL
from evaluation.lead_time import lead_time_table
from evaluation.plots import baseline_rows
from evaluation.seeds import fmt_ms
from evaluation.winner import describe
from models.cost import RELATION
from plumbing import markdown
from plumbing.atomic import write_atomic

VERSION = 1


def write_json(path: Path, obj) -> Path:
    return write_atomic(path, json.dumps(obj, indent=1, default=float) + "\n")


def fmt(v, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def table(header: list[str], rows: list[list]) -> str:
    return markdown.table(header, rows, fmt)


def split_order(models: list[dict]) -> list[str]:
    names = list(dict.fromkeys(s for m in models for s in m["splits"]))
    rank = {"test_seen": 0, "test_unseen": 1}
    return sorted(names, key=lambda s: (rank.get(s, 2 if s.startswith("workload/") else 3), s))


def lat(m: dict, engine: str, key: str):
    return (m.get("latency") or {}).get(engine, {}).get(key)


def models_table(models: list[dict]) -> str:
    us = lambda v: None if v is None else f"{v:.1f}"  # noqa: E731
    rows = [
        [
            m["label"],
            m["task"],
            m["backbone"],
            m["window"],
            m["n_inputs"],
            m["params"],
            m["macs"],
            *(us(lat(m, e, k)) for e in ("eager", "onnxruntime") for k in ("p50_us", "p99_us")),
            f"`{m['ckpt_path']}`",
        ]
        for m in models
    ]
    return table(
        [
            "model",
            "task",
            "backbone",
            "window",
            "inputs",
            "params",
            "MACs per decision (window W)",
            "eager p50 us",
            "eager p99 us",
            "ORT p50 us",
            "ORT p99 us",
            "checkpoint",
        ],
        rows,
    )


def split_table(ms: list[dict], split: str) -> str:
    names = list(ms[0]["metric_names"])
    rows = [
        [
            f"**{m['label']}**",
            *(m["splits"][split].get(k) for k in names),
            m["splits"][split].get("lift"),
            m["splits"][split].get("best_baseline"),
        ]
        for m in ms
        if split in m["splits"]
    ]
    rows += [[label, *(s.get(k) for k in names), None, None] for label, s in baseline_rows(ms, split).items()]
    return table(["predictor", *names, "lift", "vs"], rows)


def workload_table(ms: list[dict], splits: list[str]) -> str:
    metric = ms[0]["primary"]
    base_labels = list(dict.fromkeys(b for s in splits for b in baseline_rows(ms, s)))
    rows = []
    for s in splits:
        base = baseline_rows(ms, s)
        n = next((m["splits"][s]["n"] for m in ms if s in m["splits"]), None)
        rows.append(
            [
                s,
                n,
                *(m["splits"].get(s, {}).get(metric) for m in ms),
                *(base.get(b, {}).get(metric) for b in base_labels),
            ]
        )
    return table(["test set", "samples", *(m["label"] for m in ms), *base_labels], rows)


def balancer_note(ms: list[dict], split: str) -> list[str]:
    """A `<split>/no_balancer` set's line: the rows removed (data.dataset.balancer), else nothing."""
    removed = next((m["splits"][split].get(REMOVED) for m in ms if split in m["splits"]), None)
    if removed is None:
        return []
    parent = parent_of(split)
    n = next(m["splits"][parent]["n"] for m in ms if parent in m["splits"])
    return [f"{parent} without its {removed:,} of {n:,} rows a balancer moved ({BALANCER_LABEL} = 1).", ""]


def confusion_table(ms: list[dict], split: str) -> str | None:
    rows = []
    for m in ms:
        cm = m["splits"].get(split, {}).get("confusion")
        if cm is not None and len(cm) == 2:
            (tn, fp), (fn, tp) = cm
            rows.append([m["label"], tn, fp, fn, tp])
    return table(["model", "TN (stay, stay)", "FP", "FN", "TP (migrate, migrate)"], rows) if rows else None


def _acc(v):
    return fmt_ms(v) if isinstance(v, dict) else v


def branch_table(ms: list[dict], split: str) -> str | None:
    """can_migrate: per branch of the kernel's rule, its samples and each model's (or seed
    group's: mean ± std) accuracy; one table per distinct test set of that name (a shift
    experiment's directions test on different rows)."""
    per = [(m["label"], m["branches"][split]) for m in ms if split in m.get("branches", {})]
    sets: dict[tuple, list] = {}
    for label, scores in per:
        sets.setdefault(tuple((b, v["n"]) for b, v in scores.items()), []).append((label, scores))
    tables = []
    for members in sets.values():
        first = members[0][1]
        rows = [
            [b, v["n"], f"{v['share']:.1%}", v["positive"], *(_acc(s[b]["acc"]) for _, s in members)]
            for b, v in first.items()
        ]
        tables.append(table(["branch", "samples", "share", "target=1 share", *(label for label, _ in members)], rows))
    return "\n\n".join(tables) or None


def importance_table(ms: list[dict]) -> str | None:
    ms = [m for m in ms if m.get("importance")]
    if not ms:
        return None
    names = list(dict.fromkeys(n for m in ms for n in m["importance"]["features"]))
    rows = [[n, *(m["importance"]["features"].get(n, {}).get("drop_mean") for m in ms)] for n in names]
    imp = ms[0]["importance"]
    head = (
        f"Drop in {imp['metric']} on {imp['split']} when one feature is shuffled "
        f"(mean of {imp['repeats']} shuffles, seed {imp['seed']}, {imp['samples']} samples); sorted by the first model.\n\n"
    )
    return head + table(["feature", *(m["label"] for m in ms)], rows)


def feature_count_command(m: dict, ks=(1, 2, 4)) -> str | None:
    """The train.py multirun that retrains `m` on its top-k features by importance."""
    imp = m.get("importance")
    if not imp:
        return None
    ranked = [n for n in imp["features"] if n != "token"]
    subsets = [ranked[:k] for k in ks if k < len(ranked)]
    sweep = ",".join("[" + ",".join(s) + "]" for s in subsets) + ",null"
    return (
        f"python train.py -m experiment=feature_count task={m['task']} model={m['backbone']} "
        f"paths.dataset_dir={m['dataset_dir']} 'data.features={sweep}'"
    )


def ranking(models: list[dict]) -> dict:
    """ranking.json: each model's feature ranking (permutation importance on validation rows by
    default) and the feature-count multirun command built from it."""
    out = []
    for m in models:
        imp = m.get("importance")
        if not imp:
            continue
        out.append(
            {
                "label": m["label"],
                "task": m["task"],
                "backbone": m["backbone"],
                "ckpt_path": m["ckpt_path"],
                "split": imp["split"],
                "metric": imp["metric"],
                "samples": imp["samples"],
                "ranking": [n for n in imp["features"] if n != "token"],
                "drop_mean": {n: v["drop_mean"] for n, v in imp["features"].items()},
                "command": feature_count_command(m),
            }
        )
    return {
        "note": "rankings are choices: made on validation rows (importance.split), never copied by hand; "
        "paste `command` to retrain on the top-k features",
        "models": out,
    }


def feature_count_table(ms: list[dict], split: str) -> str | None:
    if len({m["n_inputs"] for m in ms}) < 2:
        return None
    rows = sorted(
        ([m["label"], m["n_inputs"], ", ".join(m["inputs"]), m["splits"].get(split, {}).get(m["primary"])] for m in ms),
        key=lambda r: (r[1], r[0]),
    )
    return table(["model", "features kept", "features", f"{ms[0]['primary']} ({split})"], rows)


def groups_table(gs: list[dict], split: str | None) -> str:
    """Rows = seed groups; cells = mean ± std (n) of every metric on `split` (None: validation)."""
    names = list(gs[0]["metric_names"])
    rows = [
        [
            g["label"],
            g["n"],
            ", ".join(str(s) for s in g["seeds"]),
            *(fmt_ms((g["validation"] if split is None else g["splits"].get(split, {})).get(k)) for k in names),
        ]
        for g in gs
    ]
    return table(["setup", "seeds", "seed values", *names], rows)


def winner_line(task: str, w: dict, engine: str) -> str:
    """The verdict of one task as a Markdown list item (evaluation.winner.describe, rounded)."""
    head, rest = describe(task, w, engine).split(": ", 1)
    return f"- **{head}**: {rest}"


def render(
    models: list[dict], winner: dict, files: list[str], command: str, split: str, groups: list[dict] | None = None
) -> str:
    out = [
        "# Evaluation report",
        "",
        f"Command: `{command}`",
        "",
        "Latency: CPU, batch 1, one thread (torch.set_num_threads(1); onnxruntime intra/inter-op threads 1), "
        f"per call after warm-up. MACs: multiply-accumulates; {RELATION} (export reports MACs per step). "
        "lift: the model's primary metric minus the best baseline's on the same test set (`vs`).",
        "",
        "## Models",
        "",
        models_table(models),
        "",
        "## Winner",
        "",
        f"Rule: {winner['rule']}.",
        "",
    ]
    out += [f"Chosen on: {winner['split']} ({winner['split_note']}).", ""]
    for task, w in winner["winners"].items():
        out.append(winner_line(task, w, winner["latency_engine"]))
    rows = [
        [
            task,
            c["label"],
            fmt_ms({"mean": c["value"], "std": c["std"], "n": c["n"]}),
            c.get("window"),
            c["macs"],
            "yes" if c["within_budget"] else "no",
            None if c["p99_us"] is None else f"{c['p99_us']:.1f}",
        ]
        for task, w in winner["winners"].items()
        for c in w["candidates"]
    ]
    if rows:
        out += [
            "",
            table(
                [
                    "task",
                    "setup (seed group)",
                    "validation mean ± std (n seeds)",
                    "window W",
                    "MACs per decision (window W)",
                    f"<= {winner['budget_macs']:,} MACs",
                    f"{winner['latency_engine']} p99 us (reported)",
                ],
                rows,
            ),
        ]
    for task in dict.fromkeys(m["task"] for m in models):
        ms = [m for m in models if m["task"] == task]
        splits = split_order(ms)
        out += ["", f"## {task}", "", f"Primary metric: {ms[0]['primary']}.", ""]
        gs = [g for g in groups or [] if g["task"] == task]
        if gs:
            out += [
                "### Seeds: mean ± std over runs that differ only by seed (ddof=1; n = seeds; "
                "one seed: spread unknown)",
                "",
                "validation:",
                "",
                groups_table(gs, None),
                "",
            ]
            for s in [s for s in splits if not s.startswith(("workload/", "trace/"))]:
                out += [f"{s}:", "", groups_table(gs, s), ""]
        for s in [s for s in splits if not s.startswith(("workload/", "trace/"))]:
            out += [f"### {s}", "", *balancer_note(ms, s), split_table(ms, s), ""]
        per = [s for s in splits if s.startswith(("workload/", "trace/"))]
        if per:
            out += [f"### Per workload and raw trace ({ms[0]['primary']})", "", workload_table(ms, per), ""]
        whole = [s for s in splits if not s.startswith("workload/")]
        for s in whole:
            bt = branch_table(gs or ms, s)
            if bt:
                out += [f"### Accuracy per branch of the kernel's rule ({s})", "", bt, ""]
        for s in whole:
            lt = lead_time_table(ms, s, table)
            if lt:
                out += [f"### Lead time of correct positives ({s}, forced_future; per run)", "", lt, ""]
        cm = confusion_table(ms, split)
        if cm:
            out += [f"### Confusion matrices ({split})", "", cm, ""]
        imp = importance_table(ms)
        if imp:
            out += ["### Permutation feature importance", "", imp, ""]
            cmd = feature_count_command(next(m for m in ms if m.get("importance")))
            if cmd:
                out += [
                    "Feature-count experiment (top-k features by this ranking, then evaluate the multirun "
                    "with `python evaluate.py runs=logs/feature_count/multiruns/<time>`):",
                    "",
                    f"    {cmd}",
                    "",
                ]
        fc = feature_count_table(ms, split)
        if fc:
            out += ["### Metric against the number of features", "", fc, ""]
    out += ["## Figures", ""] + [f"![{f}]({f})" for f in files if f.endswith(".png")]
    return "\n".join(out) + "\n"
