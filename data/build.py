"""Dataset builder: parse and replay every collected run, split by whole trace, write a dataset.

    python -m data.build --traces DIR [DIR...] --out DATASET --unseen CATEGORY[,CATEGORY]

A run is a directory holding meta.json and a trace file (found recursively under each --traces
DIR). Splitting is by whole trace so no window of one trace can land in two splits: runs of the
--unseen categories form test_unseen; in the other categories each workload's runs are sorted by
run_id and the last one is test_seen, the rest train (a workload with a single run stays in
train, and the card says so). Every workload's test runs also get a file of their own.

The dataset is written into a temporary directory beside DATASET and renamed into place, so a
reader never sees a half-written dataset; an existing DATASET is replaced only with --force.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data.atomic import swap_dir_in
from data.parse import parse_file
from data.replay import MIGRATION_FEATURES, NEXT_TASK_COLUMNS, replay

VERSION = 1
SPLITS = ("train", "test_seen", "test_unseen")
TASKS = ("migration", "next_task")
TRACE_NAMES = ("trace.txt.zst", "trace.txt.xz", "trace.txt.gz", "trace.txt")
SPLIT_RULE = (
    "Whole traces only. Runs whose category is in unseen_categories -> test_unseen. Otherwise, "
    "per workload, runs sorted by run_id (natural order): the last -> test_seen, the rest -> "
    "train; a workload with a single run -> train only. splits.workload[name] lists the test "
    "runs (test_seen + test_unseen) of each workload.")
DELTA_COLUMNS = ("ts", "line")  # near-monotonic int64: delta encoding shrinks them ~3x


class BuildError(Exception):
    """Bad input to the builder (no runs, unknown category, existing output...)."""


@dataclass
class Run:
    run_id: str
    workload: str
    category: str
    trace: Path
    meta: dict


def _natural(run_id: str) -> list:
    """Sort key that orders r2 before r10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", run_id)]


def find_runs(dirs: list[Path]) -> list[Run]:
    runs: dict[str, Run] = {}
    for d in dirs:
        for meta_path in sorted(Path(d).rglob("meta.json")):
            meta = json.loads(meta_path.read_text())
            names = [meta["trace_file"]] if "trace_file" in meta else list(TRACE_NAMES)
            trace = next((meta_path.parent / n for n in names
                          if (meta_path.parent / n).is_file()), None)
            if trace is None or "workload" not in meta:
                continue  # not a run directory (e.g. a built dataset's card)
            run_id = meta.get("run_id") or meta_path.parent.name
            if run_id in runs:
                raise BuildError(f"duplicate run_id {run_id!r}: {runs[run_id].trace} and {trace}")
            runs[run_id] = Run(run_id, meta["workload"], meta["category"], trace, meta)
    if not runs:
        raise BuildError(f"no traces found under {', '.join(map(str, dirs))} "
                         f"(looking for <run>/meta.json beside one of {', '.join(TRACE_NAMES)})")
    return sorted(runs.values(), key=lambda r: _natural(r.run_id))


def split_runs(runs: list[Run], unseen: list[str]) -> tuple[dict, list[str]]:
    """Assign whole runs to splits. Returns (splits as in the card, notes)."""
    categories = sorted({r.category for r in runs})
    missing = [c for c in unseen if c not in categories]
    if missing:
        raise BuildError(f"--unseen names categories with no runs: {', '.join(missing)} "
                         f"(categories present: {', '.join(categories)})")
    splits: dict = {s: [] for s in SPLITS}
    notes = []
    by_workload: dict[str, list[Run]] = {}
    for r in runs:
        by_workload.setdefault(r.workload, []).append(r)
    for name, wruns in sorted(by_workload.items()):
        ids = sorted((r.run_id for r in wruns), key=_natural)
        if wruns[0].category in unseen:
            splits["test_unseen"] += ids
        elif len(ids) == 1:
            splits["train"] += ids
            notes.append(f"workload {name} has a single run ({ids[0]}): train only, "
                         f"no test_seen run")
        else:
            splits["train"] += ids[:-1]
            splits["test_seen"].append(ids[-1])
    for s in SPLITS:
        splits[s].sort(key=_natural)
    test = set(splits["test_seen"]) | set(splits["test_unseen"])
    splits["workload"] = {name: [r for r in sorted((r.run_id for r in wruns), key=_natural)
                                 if r in test]
                          for name, wruns in sorted(by_workload.items())}
    return splits, notes


def _write_parquet(table: pa.Table, path: Path) -> None:
    """zstd Parquet, small enough to ship in the repository."""
    delta = [c for c in DELTA_COLUMNS if c in table.column_names]
    pq.write_table(table, path, compression="zstd", compression_level=15,
                   use_dictionary=[c for c in table.column_names if c not in delta],
                   column_encoding={c: "DELTA_BINARY_PACKED" for c in delta})


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _with_run_columns(df, run: Run) -> pa.Table:
    t = pa.Table.from_pandas(df, preserve_index=False)
    n = t.num_rows
    t = t.append_column("workload", pa.array([run.workload] * n, pa.string()))
    return t.append_column("category", pa.array([run.category] * n, pa.string()))


def _process(run: Run, events_dir: Path) -> tuple[dict, dict[str, pa.Table]]:
    """Parse + replay one run; write its events; return its card entry and its task tables."""
    t0 = time.perf_counter()
    events, pstats = parse_file(run.trace)
    _write_parquet(events, events_dir / f"{run.run_id}.parquet")
    result = replay(events, run.run_id)
    lossy = {key: {str(k): int(v) for k, v in (run.meta.get(key) or {}).items()}
             for key in ("overruns", "dropped_events", "commit_overruns")}
    source = {
        "run_id": run.run_id, "workload": run.workload, "category": run.category,
        "path": str(run.trace), "sha256": _sha256(run.trace), "bytes": run.trace.stat().st_size,
        "events": events.num_rows, "skipped": sum(pstats.skipped.values()),
        "lost": pstats.lost_markers, "lost_events": result.stats["lost_events"],
        **{key: sum(per_cpu.values()) for key, per_cpu in lossy.items()},
        "overruns_by_cpu": lossy["overruns"],
        "nr_cpus": run.meta.get("nr_cpus"), "seconds": run.meta.get("seconds"),
        "parse": pstats.to_dict(), "replay": result.stats,
    }
    print(f"{run.run_id}: {events.num_rows} events, {len(result.migration)} migration rows "
          f"({result.stats['migration_positives']} positive), {len(result.next_task)} next_task "
          f"rows, {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return source, {"migration": _with_run_columns(result.migration, run),
                    "next_task": _with_run_columns(result.next_task, run)}


def _counts(task: str, t: pa.Table) -> dict:
    n = t.num_rows
    if task == "migration":
        pos = int(pc.sum(t.column("migrated")).as_py() or 0)
        kinds = t.column("kind").to_numpy()
        return {"rows": n, "positives": pos, "positive_rate": pos / n if n else 0.0,
                "by_kind": {k: int((kinds == i).sum())
                            for i, k in enumerate(("wakeup", "preempt", "new"))}}
    df = t.select(["run_id", "next_tid"]).to_pandas()
    tasks = df[df.next_tid != 0].drop_duplicates()
    return {"rows": n, "distinct_tasks": len(tasks),
            "idle_rate": float((df.next_tid == 0).mean()) if n else 0.0}


def _write_task(task: str, tables: dict[str, pa.Table], splits: dict, root: Path) -> dict:
    """Write one task's split files and per-workload files; return their counts."""
    (root / task / "workload").mkdir(parents=True)
    empty = next(iter(tables.values())).slice(0, 0)
    counts = {}
    for name, ids in [*((s, splits[s]) for s in SPLITS),
                      *((f"workload/{w}", ids) for w, ids in splits["workload"].items() if ids)]:
        t = pa.concat_tables([tables[i] for i in ids]) if ids else empty
        _write_parquet(t, root / task / f"{name}.parquet")
        counts[name] = _counts(task, t)
    return counts


def build(trace_dirs: list[Path], out: Path, unseen: list[str], force: bool = False) -> dict:
    """Build the dataset at `out` and return its card."""
    out = Path(out)
    if out.exists() and not force:
        raise BuildError(f"{out} exists (use --force to replace it)")
    runs = find_runs(trace_dirs)
    splits, notes = split_runs(runs, unseen)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / "events").mkdir(parents=True)
        sources, tables = [], {task: {} for task in TASKS}
        for run in runs:
            source, per_task = _process(run, tmp / "events")
            sources.append(source)
            for task in TASKS:
                tables[task][run.run_id] = per_task[task]
        card = {
            "version": VERSION,
            "unseen_categories": list(unseen),
            "split_rule": SPLIT_RULE,
            "splits": splits,
            "notes": notes,
            "counts": {task: _write_task(task, tables[task], splits, tmp) for task in TASKS},
            "features": {"migration": list(MIGRATION_FEATURES), "migration_label": "migrated",
                         "migration_kinds": {"0": "wakeup", "1": "preempt", "2": "new"},
                         "next_task": list(NEXT_TASK_COLUMNS)},
            "sources": sources,
        }
        (tmp / "meta.json").write_text(json.dumps(card, indent=1) + "\n")
        swap_dir_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return card




def _summary(card: dict) -> str:
    lines = [f"{len(card['sources'])} runs; unseen categories: "
             f"{', '.join(card['unseen_categories']) or '(none)'}"]
    for s in SPLITS:
        m, n = card["counts"]["migration"][s], card["counts"]["next_task"][s]
        lines.append(f"  {s:11s} runs={len(card['splits'][s]):3d}  migration rows={m['rows']} "
                     f"positive_rate={m['positive_rate']:.4f}  next_task rows={n['rows']}")
    return "\n".join(lines + [f"  note: {x}" for x in card["notes"]])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data.build", description=__doc__.split("\n")[0])
    ap.add_argument("--traces", nargs="+", required=True, type=Path,
                    help="directories searched recursively for <run>/meta.json + trace file")
    ap.add_argument("--out", required=True, type=Path, help="dataset directory to create")
    ap.add_argument("--unseen", default="",
                    help="comma-separated categories held out as test_unseen")
    ap.add_argument("--force", action="store_true", help="replace an existing --out")
    args = ap.parse_args(argv)
    unseen = [c for c in args.unseen.split(",") if c]
    try:
        card = build(args.traces, args.out, unseen, args.force)
    except BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(_summary(card))
    return 0


if __name__ == "__main__":
    sys.exit(main())
