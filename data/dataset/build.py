"""Dataset builder: parse and replay every collected run, split by whole trace, write a dataset.

    python -m data.build --traces DIR [DIR...] --out DATASET --unseen CATEGORY[,CATEGORY]

A run is a directory holding meta.json and a trace file and/or can_migrate records (found
recursively under each --traces DIR). A trace gives the migration and next_task tables, records
(can_migrate.parquet or the loader's records.bin[.zst]) the can_migrate table: the records
passing the kernel's hard conditions, with Chen's 15 features and both labels
(data/can_migrate/features.py). Splitting is by whole trace (data/dataset/splits.py) so no window of one trace
can land in two splits: runs of the --unseen categories form test_unseen; in the other
categories each workload's runs are sorted by run_id and the last one is test_seen, the rest
train (a workload with a single run stays in train, and the card says so). Validation runs are
taken out of train by the DataModule, by the same rule: the summary printed at the end names
the runs of every split and which train runs a DataModule with its default settings holds out
for validation, with their rows. Per-workload test sets are the rows of that workload in the
test tables (a `workload` column), so they get no files of their own.

Every row of every table (migration, next_task, can_migrate) carries its run's `workload`,
`category`, `load_pct` (int16: the --load level the run was collected at, in percent of the
CPUs; 100 for runs whose meta.json has none, which were all sized at 100% of the CPUs) and
`topology` (dictionary string: the guest's --topology spec such as "2x2x2" for a NUMA guest,
"flat<nr_cpus>" such as "flat4" for a flat guest, "host" for a run on the collector's own
kernel, ftrace or --bcc). Runs collected at several load levels or topologies are split per
workload and level or topology (data/dataset/splits.py), and a DataModule's `data.shift` can
train on some of these values and test on the others.

The dataset is written into a temporary directory beside DATASET and renamed into place, so a
reader never sees a half-written dataset; an existing DATASET is replaced only with --force.
Run folders under a staging name (`.RUN.partial-PID`: a collector killed midway) are never
runs: they are skipped and counted in the summary and the card (`incomplete_runs_skipped`).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data.can_migrate.features import (
    CHEN_FEATURES,
    FORCED,
    LABEL,
    can_migrate_table,
    filter_counts,
    migration_cost_of,
)
from data.can_migrate.files import RECORD_FILES, read_records, run_records
from data.can_migrate.record import RecordFormatError
from data.collect.runs import run_load
from data.collect.workloads import DEFAULT_LOAD_PCT
from data.dataset import splits as splits_mod
from data.dataset.replay import replay
from data.dataset.splits import RUN_VALUES, natural
from data.dataset.tables import MIGRATION_FEATURES, NEXT_TASK_COLUMNS, topology_classes
from data.parse.tracefile import TraceFormatError, parse_file
from plumbing.atomic import STAGING, file_sha256, recover, staging_path, swap_dir_in
from plumbing.cli import ArgParser, bad_json, fail, interrupted, os_error, unwritable

PROG = "python -m data.build"

VERSION = 1
SPLITS = ("train", "test_seen", "test_unseen")
TASKS = ("migration", "next_task")  # from traces
CM_TASK = "can_migrate"  # from records
# --runnable: the replay's runnable set at each switch (data.dataset.tables.CANDIDATE_COLUMNS) beside
# the next_task tables, one file per split: DATASET/next_task/candidates_<split>.parquet
CANDIDATES = "candidates"
CANDIDATES_TABLE = "next_task"


def candidates_file(split: str) -> str:
    """The candidates file of a split, under DATASET/next_task/."""
    return f"{CANDIDATES}_{split}.parquet"


TRACE_NAMES = ("trace.txt.zst", "trace.txt.xz", "trace.txt.gz", "trace.txt")
SPLIT_RULE = (
    "Whole traces only (data/dataset/splits.py). Runs whose category is in unseen_categories -> "
    "test_unseen. Otherwise, per workload, runs sorted by run_id (natural order): the last -> "
    "test_seen, the rest -> train; a workload with a single run -> train only. Runs of --load levels "
    "(run ids <workload>-load<P>-rNN) are split per workload and level, so each level has its own "
    "test_seen run; a workload with runs on several topologies is split per topology the same way. "
    "No validation split here: train holds the validation runs too, and a DataModule takes them out (its "
    "val_runs / val_category; its meta['split'] records the runs). splits.workload[name] lists "
    "the test runs (test_seen + test_unseen) of each workload."
)
DELTA_COLUMNS = ("ts", "line")  # near-monotonic int64: delta encoding shrinks them ~3x
# the per-run value columns every table carries, named as meta.json's keys (data.collect.runs.load_meta,
# data.collect.guest.topology); data.dataset.splits.RUN_VALUES is their one list (a DataModule splits by them)
LOAD_COLUMN, TOPOLOGY_COLUMN = RUN_VALUES
LOAD_NOTE = (
    "load_pct (int16, every table): the run's load level, its workloads sized for load_pct% of "
    "the CPUs (python -m data.collect --load); 100 for runs whose meta.json has no load_pct "
    "(collected without --load, i.e. sized at 100% of the CPUs)"
)
HOST = "host"  # the topology of a run on the collector's own kernel (ftrace, --bcc)
TOPOLOGY_NOTE = (
    "topology (dictionary string, every table): the machine the run's kernel saw: a guest's "
    "--topology spec (e.g. 2x2x2: sockets x cores x threads, one NUMA node per socket), "
    "flat<nr_cpus> for a flat guest (python -m data.collect --vm without --topology, e.g. flat4), "
    "host for a run on the collector's own kernel (ftrace or --bcc; its meta.json names no guest)"
)


class BuildError(Exception):
    """Bad input to the builder (no runs, unknown category, existing output...)."""


@dataclass
class Run:
    run_id: str
    workload: str
    category: str
    trace: Path | None
    meta: dict
    records: Path | None = None

    @property
    def load_pct(self) -> int:
        """The run's load level (meta.json's load_pct; DEFAULT_LOAD_PCT when it has none: runs
        collected before load levels existed were sized at 100% of the CPUs, as `--load 100`)."""
        return self.meta.get(LOAD_COLUMN, DEFAULT_LOAD_PCT)

    @property
    def topology(self) -> str | None:
        """The run's topology (TOPOLOGY_NOTE): a guest's spec from meta.json's "topology" (what
        data.collect.guest.topology.parse stored; older guest runs have no such key and were flat),
        else flat<nr_cpus>; HOST for any other collector. None: a guest run without nr_cpus.
        The sched_ext scheduler's recorded runs (kernel/scx, collector "scx") are guest runs too."""
        if self.meta.get("collector") not in ("guest", "scx"):
            return HOST
        spec = (self.meta.get(TOPOLOGY_COLUMN) or {}).get("spec")
        if spec:
            return str(spec)
        cpus = self.meta.get("nr_cpus")
        return f"flat{cpus}" if isinstance(cpus, int) and not isinstance(cpus, bool) and cpus > 0 else None


def incomplete_runs(dirs: list[Path]) -> list[str]:
    """Run folders a collector was killed in the middle of (plumbing.atomic staging names, e.g.
    `.RUN.partial-PID`): never runs, however complete their files look; `--traces`-relative."""
    found = []
    for d in dirs:
        for p in sorted(Path(d).rglob(".*")):
            rel = p.relative_to(d)
            if p.is_dir() and STAGING.match(p.name) and not any(STAGING.match(x) for x in rel.parts[:-1]):
                found.append(str(Path(d).name / rel))
    return found


def find_runs(dirs: list[Path]) -> list[Run]:
    runs: dict[str, Run] = {}
    for d in dirs:
        for meta_path in sorted(Path(d).rglob("meta.json")):
            if any(STAGING.match(x) for x in meta_path.relative_to(d).parts[:-1]):
                continue  # an incomplete run (incomplete_runs)
            meta = json.loads(meta_path.read_text())
            names = [meta["trace_file"]] if "trace_file" in meta else list(TRACE_NAMES)
            trace = next((meta_path.parent / n for n in names if (meta_path.parent / n).is_file()), None)
            records = run_records(meta_path.parent)
            if (trace is None and records is None) or "workload" not in meta:
                continue  # not a run directory (e.g. a built dataset's card)
            run_id = meta.get("run_id") or meta_path.parent.name
            if run_id in runs:
                raise BuildError(
                    f"duplicate run_id {run_id!r}: {meta_path.parent} and "
                    f"{(runs[run_id].trace or runs[run_id].records).parent}"
                )
            run = runs[run_id] = Run(run_id, meta["workload"], meta["category"], trace, meta, records)
            load, named = run.load_pct, run_load(run_id)
            if isinstance(load, bool) or not isinstance(load, int) or not 1 <= load <= 32767:
                raise BuildError(f"{meta_path}: load_pct {load!r} is not a whole percentage in 1..32767")
            if named is not None and named != load:
                raise BuildError(f"{meta_path}: run id {run_id} names load {named}% but load_pct is {load}")
            try:  # the replay's topology classes (a flat run has none)
                topology_classes(meta.get(TOPOLOGY_COLUMN), 0)
            except ValueError as e:
                raise BuildError(f"{meta_path}: {e}") from e
            if run.topology is None:
                raise BuildError(
                    f"{meta_path}: a guest run without a topology spec or nr_cpus: its topology is unknown"
                )
    if not runs:
        skipped = incomplete_runs(dirs)
        raise BuildError(
            f"no traces found under {', '.join(map(str, dirs))} "
            + (f"({len(skipped)} incomplete runs skipped: {', '.join(skipped)}) " if skipped else "")
            + f"(looking for <run>/meta.json beside one of {', '.join(TRACE_NAMES)} "
            f"or {', '.join(RECORD_FILES)})"
        )
    return sorted(runs.values(), key=lambda r: natural(r.run_id))


def split_runs(runs: list[Run], unseen: list[str]) -> tuple[dict, list[str]]:
    """Assign whole runs to splits by data.dataset.splits.split_runs without validation (a DataModule
    takes its val runs out of train). Returns (splits as in the card, notes)."""
    try:
        split = splits_mod.split_runs(runs, unseen, val_category=None, val_runs=0)
    except ValueError as e:
        raise BuildError(f"--{e}" if str(e).startswith("unseen") else str(e)) from e
    splits: dict = {s: split["runs"][s] for s in SPLITS}
    test = set(splits["test_seen"]) | set(splits["test_unseen"])
    by_workload: dict[str, list[str]] = {}
    for r in runs:
        by_workload.setdefault(r.workload, []).append(r.run_id)
    splits["workload"] = {
        name: [r for r in sorted(ids, key=natural) if r in test] for name, ids in sorted(by_workload.items())
    }
    return splits, split["notes"]


def _write_parquet(table: pa.Table, path: Path) -> None:
    """zstd Parquet, small enough to ship in the repository."""
    delta = [c for c in DELTA_COLUMNS if c in table.column_names]
    pq.write_table(
        table,
        path,
        compression="zstd",
        compression_level=15,
        use_dictionary=[c for c in table.column_names if c not in delta],
        column_encoding={c: "DELTA_BINARY_PACKED" for c in delta},
    )


def _with_run_values(t: pa.Table, run: Run) -> pa.Table:
    """The table with the run's RUN_VALUES columns appended (load_pct int16, topology dictionary string)."""
    n = t.num_rows
    t = t.append_column(LOAD_COLUMN, pa.array([run.load_pct] * n, pa.int16()))
    return t.append_column(TOPOLOGY_COLUMN, pa.array([run.topology] * n, pa.string()).dictionary_encode())


def _with_run_columns(df, run: Run) -> pa.Table:
    t = pa.Table.from_pandas(df, preserve_index=False)
    n = t.num_rows
    t = t.append_column("workload", pa.array([run.workload] * n, pa.string()))
    return _with_run_values(t.append_column("category", pa.array([run.category] * n, pa.string())), run)


def _first_seconds(events: pa.Table, seconds: float) -> pa.Table:
    """The events of the trace's first `seconds` (from its first timestamped event)."""
    ts = events.column("ts")
    valid = pc.filter(ts, pc.greater_equal(ts, 0))
    if len(valid) == 0:
        return events
    end = pc.min(valid).as_py() + int(seconds * 1e9)
    return events.filter(pc.less(ts, end))


def _cut(events: pa.Table, seconds: float | None, max_events: int | None) -> pa.Table:
    """The part of a trace the dataset uses: its first `seconds` and at most its first
    `max_events` events (whole-trace prefixes, so every decision keeps its history)."""
    if seconds is not None:
        events = _first_seconds(events, seconds)
    return events if max_events is None else events.slice(0, max_events)


def _process_trace(
    run: Run,
    events_dir: Path | None,
    trace_seconds: float | None = None,
    max_events: int | None = None,
    runnable: bool = False,
) -> tuple[dict, dict[str, pa.Table]]:
    """Parse + replay one run's trace (its first `trace_seconds` / `max_events` when given); write its events
    (unless events_dir is None); return its card fields and its migration / next_task tables (with
    `runnable`, also its candidates table under CANDIDATES)."""
    t0 = time.perf_counter()
    events, pstats = parse_file(run.trace)
    parsed = events.num_rows
    events = _cut(events, trace_seconds, max_events)
    if events_dir is not None:
        _write_parquet(events, events_dir / f"{run.run_id}.parquet")
    try:
        result = replay(events, run.run_id, topology=run.meta.get(TOPOLOGY_COLUMN), runnable=runnable)  # None: flat
    except ValueError as e:  # a CPU number no kernel has (tables.NR_CPUS_MAX)
        raise TraceFormatError(f"{run.trace}: {e}") from e
    lossy = {
        key: {str(k): int(v) for k, v in (run.meta.get(key) or {}).items()}
        for key in ("overruns", "dropped_events", "commit_overruns")
    }
    source = {
        "path": str(run.trace),
        "sha256": file_sha256(run.trace),
        "bytes": run.trace.stat().st_size,
        "events": parsed,
        "events_used": events.num_rows,
        "skipped": sum(pstats.skipped.values()),
        "lost": pstats.lost_markers,
        "lost_events": result.stats["lost_events"],
        **{key: sum(per_cpu.values()) for key, per_cpu in lossy.items()},
        "overruns_by_cpu": lossy["overruns"],
        "parse": pstats.to_dict(),
        "replay": result.stats,
    }
    print(
        f"{run.run_id}: {events.num_rows} events, {len(result.migration)} migration rows "
        f"({result.stats['migration_positives']} positive), {len(result.next_task)} next_task "
        f"rows, {time.perf_counter() - t0:.1f}s",
        file=sys.stderr,
    )
    tables = {
        "migration": _with_run_columns(result.migration, run),
        "next_task": _with_run_columns(result.next_task, run),
    }
    if runnable:
        tables[CANDIDATES] = pa.Table.from_pandas(result.candidates, preserve_index=False)
    return source, tables


def _process_records(run: Run) -> tuple[dict, pa.Table]:
    """Decode one run's can_migrate records; return card fields and its can_migrate table."""
    try:
        records = read_records(run.records)
    except RecordFormatError as e:
        raise BuildError(str(e)) from e
    cost = migration_cost_of(run.meta)
    table = can_migrate_table(records.assign(run_id=run.run_id, workload=run.workload, category=run.category), cost)
    source = {
        "migration_cost_ns": cost,  # task_hot()'s window delta_hot was built with
        "records_path": str(run.records),
        "records_sha256": file_sha256(run.records),
        "records_bytes": run.records.stat().st_size,
        "can_migrate_filter": filter_counts(records),
        "can_migrate_labels": {LABEL: int(table[LABEL].sum()), FORCED: int(table[FORCED].sum())},
    }
    print(
        f"{run.run_id}: {len(records)} can_migrate records, {len(table)} pass the hard "
        f"conditions ({int(table[LABEL].sum())} allowed, {int(table[FORCED].sum())} forced)",
        file=sys.stderr,
    )
    return source, _with_run_values(pa.Table.from_pandas(table, preserve_index=False), run)


def _process(
    run: Run,
    events_dir: Path | None,
    trace_seconds: float | None = None,
    max_events: int | None = None,
    runnable: bool = False,
) -> tuple[dict, dict[str, pa.Table]]:
    """One run's card entry and its task tables (only the tasks its files give)."""
    source = {
        "run_id": run.run_id,
        "workload": run.workload,
        "category": run.category,
        "nr_cpus": run.meta.get("nr_cpus"),
        "seconds": run.meta.get("seconds"),
        LOAD_COLUMN: run.load_pct,
        TOPOLOGY_COLUMN: run.topology,
        "scalable": run.meta.get("scalable"),  # False: the workload's size ignores the load level
        # what recorded it (ftrace, bcc, guest: CFS's own state; scx: scx_schedlearn's analogues)
        "collector": run.meta.get("collector"),
    }
    tables = {}
    if run.trace is not None:
        fields, tables = _process_trace(run, events_dir, trace_seconds, max_events, runnable)
        source.update(fields)
    if run.records is not None:
        fields, tables[CM_TASK] = _process_records(run)
        source.update(fields)
    return source, tables


def _counts(task: str, t: pa.Table) -> dict:
    n = t.num_rows
    if task == CM_TASK:
        out = {"rows": n}
        for label in (LABEL, FORCED):
            pos = int(pc.sum(t.column(label)).as_py() or 0)
            out[f"{label}_positives"] = pos
            out[f"{label}_positive_rate"] = pos / n if n else 0.0
        out["positive_rate"] = out[f"{LABEL}_positive_rate"]
        return out
    if task == "migration":
        pos = int(pc.sum(t.column("migrated")).as_py() or 0)
        kinds = t.column("kind").to_numpy()
        return {
            "rows": n,
            "positives": pos,
            "positive_rate": pos / n if n else 0.0,
            "by_kind": {k: int((kinds == i).sum()) for i, k in enumerate(("wakeup", "preempt", "new"))},
        }
    df = t.select(["run_id", "next_tid"]).to_pandas()
    tasks = df[df.next_tid != 0].drop_duplicates()
    return {"rows": n, "distinct_tasks": len(tasks), "idle_rate": float((df.next_tid == 0).mean()) if n else 0.0}


def _write_splits(tables: dict[str, pa.Table], splits: dict, path_of, count) -> dict:
    """Write each split's table (its runs' tables, concatenated) to path_of(split); return count(table) per split."""
    empty = next(iter(tables.values())).slice(0, 0)
    counts = {}
    for name in SPLITS:
        ids = [i for i in splits[name] if i in tables]
        t = pa.concat_tables([tables[i] for i in ids]) if ids else empty
        _write_parquet(t, path_of(name))
        counts[name] = count(t)
    return counts


def _write_task(task: str, tables: dict[str, pa.Table], splits: dict, root: Path) -> dict:
    """Write one task's split files from the runs that have its table; return their counts."""
    (root / task).mkdir(parents=True)
    return _write_splits(tables, splits, lambda name: root / task / f"{name}.parquet", lambda t: _counts(task, t))


def _write_candidates(tables: dict[str, pa.Table], splits: dict, root: Path) -> dict:
    """Write the candidates of every split's runs beside the next_task tables; return their counts."""

    def count(t: pa.Table) -> dict:  # one chosen row per switch with rows
        return {"rows": t.num_rows, "switches": int(pc.sum(t.column("chosen")).as_py() or 0)}

    return _write_splits(tables, splits, lambda name: root / CANDIDATES_TABLE / candidates_file(name), count)


def _filter_total(sources: list[dict]) -> dict:
    """Sum of the runs' hard-condition filter counts."""
    total: dict[str, int] = {}
    for src in sources:
        for k, v in src.get("can_migrate_filter", {}).items():
            total[k] = total.get(k, 0) + v
    return total


def label_rates(sources: list[dict]) -> list[dict]:
    """Per topology, load level and workload: runs, kept can_migrate rows, allowed and forced
    counts and the forced rate (the card's can_migrate_rates; Pinto measured 0.003-7.02% forced
    per benchmark)."""
    groups: dict[tuple, dict] = {}
    for src in sources:
        if "can_migrate_labels" not in src:
            continue
        key = (str(src.get(TOPOLOGY_COLUMN)), int(src.get(LOAD_COLUMN) or 0), src["workload"])
        g = groups.setdefault(key, {"runs": 0, "kept": 0, LABEL: 0, FORCED: 0})
        g["runs"] += 1
        g["kept"] += int(src["can_migrate_filter"]["kept"])
        for label in (LABEL, FORCED):
            g[label] += int(src["can_migrate_labels"][label])
    return [
        {
            TOPOLOGY_COLUMN: t,
            LOAD_COLUMN: load,
            "workload": w,
            **g,
            "forced_rate": g[FORCED] / g["kept"] if g["kept"] else 0.0,
        }
        for (t, load, w), g in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], splits_mod.natural(kv[0][2])))
    ]


def build(
    trace_dirs: list[Path],
    out: Path,
    unseen: list[str],
    force: bool = False,
    events: bool = True,
    trace_seconds: float | None = None,
    max_events: int | None = None,
    runnable: bool = False,
) -> dict:
    """Build the dataset at `out` and return its card. events=False leaves out the per-run
    events/ copies; trace_seconds replays only each trace's first seconds (the shipped guest
    dataset does both, to stay small; can_migrate records are always used whole); runnable also
    writes each split's candidates (next_task/candidates_<split>.parquet: the runnable set at each
    switch, for task next_task_candidates)."""
    if trace_seconds is not None and trace_seconds <= 0:
        raise BuildError(f"trace_seconds must be > 0, got {trace_seconds}")
    if max_events is not None and max_events < 1:
        raise BuildError(f"max_events must be >= 1, got {max_events}")
    out = Path(out)
    recover(out.parent, out.name)  # what a killed build left: its old dataset back, staging removed
    if out.exists() and not force:
        raise BuildError(f"{out} exists (use --force to replace it)")
    runs = find_runs(trace_dirs)
    skipped = incomplete_runs(trace_dirs)
    splits, notes = split_runs(runs, unseen)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = staging_path(out, "tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        if events:
            (tmp / "events").mkdir()
        sources, tables = [], {task: {} for task in (*TASKS, CM_TASK, CANDIDATES)}
        for run in runs:
            source, per_task = _process(run, tmp / "events" if events else None, trace_seconds, max_events, runnable)
            sources.append(source)
            for task, table in per_task.items():
                tables[task][run.run_id] = table
        tasks = [t for t in (*TASKS, CM_TASK) if tables[t]]
        card = {
            "version": VERSION,
            "unseen_categories": list(unseen),
            "split_rule": SPLIT_RULE,
            "splits": splits,
            "notes": notes,
            "trace_seconds": trace_seconds,
            "max_events": max_events,
            "tasks": tasks,
            "counts": {task: _write_task(task, tables[task], splits, tmp) for task in tasks},
            # --runnable: next_task/candidates_<split>.parquet written (the replay's stats hold their counters)
            CANDIDATES: bool(runnable and tables[CANDIDATES]),
            "features": {
                "migration": list(MIGRATION_FEATURES),
                "migration_label": "migrated",
                "migration_kinds": {"0": "wakeup", "1": "preempt", "2": "new"},
                "next_task": list(NEXT_TASK_COLUMNS),
                "can_migrate": list(CHEN_FEATURES),
                "run_columns": ["run_id", "workload", "category", *RUN_VALUES],
                LOAD_COLUMN: LOAD_NOTE,
                TOPOLOGY_COLUMN: TOPOLOGY_NOTE,
                "can_migrate_labels": {
                    LABEL: "can_migrate_task() returned 1",
                    FORCED: "returned 1 and set p->sched_task_hot (allowed although cache hot)",
                },
            },
            "sources": sources,
        }
        if card[CANDIDATES]:
            card["candidate_counts"] = _write_candidates(tables[CANDIDATES], splits, tmp)
        if skipped:  # killed collections' run folders (incomplete_runs), left out
            card["incomplete_runs_skipped"] = skipped
        if CM_TASK in tasks:
            card["can_migrate_filter"] = _filter_total(sources)
            card["can_migrate_rates"] = label_rates(sources)
        (tmp / "meta.json").write_text(json.dumps(card, indent=1) + "\n")
        swap_dir_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return card


def run_rows(card: dict, task: str) -> dict[str, int]:
    """Rows of `task`'s table per run, from the card's sources."""
    out = {}
    for src in card["sources"]:
        if task == CM_TASK:
            n = (src.get("can_migrate_filter") or {}).get("kept")
        else:
            n = (src.get("replay") or {}).get(f"{task}_rows")
        if n is not None:
            out[src["run_id"]] = int(n)
    return out


def default_split(card: dict) -> dict:
    """The split a DataModule with its default settings makes of this dataset (the same rule,
    data.dataset.splits): which of the card's train runs it holds out for validation."""
    return splits_mod.split_runs(
        card["sources"], card["unseen_categories"], splits_mod.DEFAULT_VAL_CATEGORY, splits_mod.DEFAULT_VAL_RUNS
    )


def default_validation(card: dict, split: dict) -> list[str]:
    """Summary lines: every split's runs, the train runs `split` (default_split) holds out for
    validation, their rows against the rest of train, and the override that helps when
    validation outweighs training."""
    runs = split["runs"]
    lines = [
        f"  train runs ({len(card['splits']['train'])}, including the {len(runs['val'])} validation runs below): "
        + (", ".join(card["splits"]["train"]) or "none"),
        f"    of which a DataModule with default settings ({splits_mod.describe(split)}) holds out "
        f"{len(runs['val'])} for validation: " + (", ".join(runs["val"]) or "none"),
    ]
    if not runs["val"]:
        lines.append(f"    note: no validation run, so training stops: {splits_mod.why_no_val(card['sources'], split)}")
    for task in card["tasks"]:
        rows = run_rows(card, task)
        train, val = (sum(rows.get(r, 0) for r in runs[s]) for s in ("train", "val"))
        n = len(runs["train"])
        line = f"    {task}: training {train:,} rows ({n} run{'s' * (n != 1)}), validation {val:,} rows"
        if val > train:
            line += "; validation outweighs training: " + splits_mod.rebalance_advice(card["sources"], split, rows)
        lines.append(line)
    for name in ("test_seen", "test_unseen"):
        lines.append(f"  {name} runs ({len(card['splits'][name])}): " + (", ".join(card["splits"][name]) or "none"))
    return lines


def _summary(card: dict) -> str:
    split = default_split(card)
    lines = [f"{len(card['sources'])} runs; unseen categories: {', '.join(card['unseen_categories']) or '(none)'}"]
    if skipped := card.get("incomplete_runs_skipped"):
        lines[0] += f"; {len(skipped)} incomplete runs skipped ({', '.join(skipped)})"
    counts = card["counts"]
    for s in SPLITS:
        parts = [f"  {s:11s} runs={len(card['splits'][s]):3d}"]
        if s == "train":  # the card's train holds the validation runs: say how many
            parts[0] += f" (incl. {len(split['runs']['val'])} validation)"
        if "migration" in counts:
            m, n = counts["migration"][s], counts["next_task"][s]
            parts.append(
                f"migration rows={m['rows']} positive_rate={m['positive_rate']:.4f}  next_task rows={n['rows']}"
            )
        if card.get("candidate_counts"):
            c = card["candidate_counts"][s]
            parts.append(f"candidates rows={c['rows']} switches={c['switches']}")
        if CM_TASK in counts:
            c = counts[CM_TASK][s]
            parts.append(
                f"can_migrate rows={c['rows']} allowed={c[f'{LABEL}_positive_rate']:.4f} "
                f"forced={c[f'{FORCED}_positive_rate']:.4f}"
            )
        lines.append("  ".join(parts))
    if "can_migrate_filter" in card:
        lines.append(
            "  can_migrate hard-condition filter: "
            + ", ".join(f"{k}={v}" for k, v in card["can_migrate_filter"].items())
        )
    if card.get("can_migrate_rates"):
        totals: dict[tuple, list[int]] = {}
        for r in card["can_migrate_rates"]:
            t = totals.setdefault((r[TOPOLOGY_COLUMN], r[LOAD_COLUMN]), [0, 0])
            t[0] += r["kept"]
            t[1] += r[FORCED]
        lines.append(
            "  can_migrate kept / forced by topology and load: "
            + "; ".join(
                f"{t} {load}%: {k:,} / {f:,} ({100 * f / k if k else 0:.3f}%)" for (t, load), (k, f) in totals.items()
            )
        )
    lines += default_validation(card, split)
    return "\n".join(lines + [f"  note: {x}" for x in card["notes"]])


def _check_args(ap, args) -> None:
    """Paths a user can get wrong, each reported in one line before any work starts."""
    for d in args.traces:
        if not d.is_dir():
            ap.error(f"--traces {d}: {'not a folder' if d.exists() else 'no such folder'}")
        if why := bad_json(d):
            ap.error(f"--traces {d}: {why}")
    if args.out.exists() and not args.out.is_dir():
        ap.error(f"--out {args.out}: exists and is not a folder")
    if why := unwritable(args.out):
        ap.error(f"--out {args.out}: {why}")


def main(argv: list[str] | None = None) -> int:
    ap = ArgParser(prog=PROG, description=__doc__.split("\n")[0])
    ap.add_argument(
        "--traces",
        nargs="+",
        required=True,
        type=Path,
        help="directories searched recursively for <run>/meta.json + trace file",
    )
    ap.add_argument("--out", required=True, type=Path, help="dataset directory to create")
    ap.add_argument("--unseen", default="", help="comma-separated categories held out as test_unseen")
    ap.add_argument("--force", action="store_true", help="replace an existing --out")
    ap.add_argument("--no-events", action="store_true", help="leave out the per-run events/ copies (smaller dataset)")
    ap.add_argument(
        "--trace-seconds",
        type=float,
        default=None,
        help="replay only the first S seconds of every trace (smaller dataset)",
    )
    ap.add_argument(
        "--max-events",
        type=int,
        default=None,
        help="replay at most the first N events of every trace (keeps the 300k-1.3M "
        "events/s IPC stressors from outweighing the other workloads)",
    )
    ap.add_argument(
        "--runnable",
        action="store_true",
        help="also write each split's runnable set at every switch (next_task/candidates_<split>.parquet), "
        "which task next_task_candidates trains on",
    )
    args = ap.parse_args(argv)
    _check_args(ap, args)
    unseen = [c for c in args.unseen.split(",") if c]
    try:
        card = build(
            args.traces,
            args.out,
            unseen,
            args.force,
            events=not args.no_events,
            trace_seconds=args.trace_seconds,
            max_events=args.max_events,
            runnable=args.runnable,
        )
    except BuildError as e:
        return fail(PROG, str(e), 2)
    except TraceFormatError as e:  # a truncated or corrupt trace: the message names the file
        return fail(PROG, f"{e}; nothing written")
    except OSError as e:
        return fail(PROG, f"{os_error(e)}; nothing written")
    except KeyboardInterrupt:
        return interrupted(PROG, f"{args.out} left as it was")
    print(_summary(card))
    return 0
