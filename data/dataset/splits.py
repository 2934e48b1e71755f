"""The one rule that puts whole runs into train / val / test_seen / test_unseen.

data.dataset.build (which writes no val: its train is train + val) and every DataModule (which re-splits
the pooled tables by run_id, e.g. for a leave-one-category-out fold `data.unseen=[io]`) call
`split_runs`, so a dataset's card and a checkpoint's `meta["split"]` always agree on the rule:

* runs of the `unseen` categories -> test_unseen;
* every other workload, runs in natural run_id order (r2 before r10): the last -> test_seen;
  the `val_runs` before it -> val; the rest -> train. A workload with too few runs keeps them
  in train (a note says so; one run only: no test_seen either);
* runs collected at load levels (`python -m data.collect --load 50,200`, run ids
  `<workload>-load<P>-rNN`, read back by data.collect.runs.run_load) are split per workload *and level*: each
  level of a workload gets its own test_seen (and val) run, so every split holds every level.
  (Grouped by workload alone, natural order would put all of test_seen at the highest level.)
  The level comes from the run id because the run id is what every caller passes;
  data.dataset.build checks it against meta.json's load_pct. A workload with runs on several
  guest topologies (the builder's `topology` column) is split per topology the same way;
* `val_category`: one whole training category held out as "unseen-like" validation (all its
  runs but each workload's test_seen run). `"auto"`: the first category after the (first)
  unseen one in sorted cyclic order that is not unseen; None: none.

Shifts generalise `unseen` (which is the category shift) to any of RUN_COLUMNS, the columns every
table has: `shift={"by": "load_pct", "train": [100, 200], "test": [50]}` puts the runs whose
`by` value is in `test` into test_unseen and splits those in `train` by the rule above (test_seen,
val, train); runs in neither are dropped (a note counts them). Under a shift by anything but
category, `val_category="auto"` holds out no category: validation is then held-out runs of the
training values (val_runs), which is what a load or topology shift should be selected on; an
explicit category still applies. `train_workloads=[w, ...]` (Pinto's per-benchmark training)
trains and validates on those workloads' runs only: their last runs are test_seen and every run
of every other workload is test_unseen. `where={"topology": ["2x2x2"]}` keeps only the runs
whose column value is listed, before anything else (e.g. a leave-one-category-out on NUMA runs).
Whatever the settings, test_unseen holds the runs of what training never saw.

A DataModule's defaults are DEFAULT_VAL_CATEGORY and DEFAULT_VAL_RUNS (conf/data/*.yaml say the
same); the builder's summary uses them to show which of its train runs a default DataModule
holds out. `why_no_val` says why a split has no validation run and `rebalance` which settings
would give training more rows than validation: both for one-line messages.

Pure Python (no pandas, no torch): selection must never look at a test split, and one small
function is easy to check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from data.collect.runs import run_load
from data.collect.workloads import DEFAULT_LOAD_PCT

SPLITS = ("train", "val", "test_seen", "test_unseen")
AUTO = "auto"
DEFAULT_VAL_CATEGORY = AUTO  # every DataModule's default validation (conf/data/*.yaml)
DEFAULT_VAL_RUNS = 1
MIN_VAL_SHARE = 0.1  # rebalance: a validation under a tenth of train + val rows is no choice
RUN_VALUES = ("load_pct", "topology")  # the per-run value columns of every table (data.dataset.build)
RUN_COLUMNS = ("category", "workload", *RUN_VALUES)  # what `shift.by` and `where` can name
CATEGORY = RUN_COLUMNS[0]


class RunInfo(NamedTuple):
    """What the rule knows of a run: its identity and the values a shift can split it by
    (topology None: a dataset built before the column)."""

    run_id: str
    workload: str
    category: str
    load_pct: int
    topology: str | None


def natural(name) -> list:
    """Sort key that orders r2 before r10 (a run id or a path)."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(name))]


def _group(run_id: str, workload: str) -> str:
    """The unit that gets its own test_seen / val runs: the workload, or the workload at one load level."""
    load = run_load(run_id)
    return workload if load is None else f"{workload} at load {load}%"


def _info(run_id, workload, category, load_pct=None, topology=None) -> RunInfo:
    """A RunInfo; load_pct defaults to the level the run id names, else DEFAULT_LOAD_PCT."""
    load = run_load(str(run_id)) if load_pct is None else load_pct
    return RunInfo(
        str(run_id),
        str(workload),
        str(category),
        int(DEFAULT_LOAD_PCT if load is None else load),
        None if topology is None else str(topology),
    )


def run_infos(runs: Iterable) -> list[RunInfo]:
    """RunInfo of tuples (run_id, workload, category[, load_pct[, topology]]), dicts (a dataset
    card's sources) or objects with those attributes (data.dataset.build.Run)."""
    out = []
    for r in runs:
        if isinstance(r, dict):
            out.append(_info(r["run_id"], r["workload"], r["category"], r.get("load_pct"), r.get("topology")))
        elif isinstance(r, (tuple, list)):
            out.append(_info(*r[:5]))
        else:
            out.append(
                _info(r.run_id, r.workload, r.category, getattr(r, "load_pct", None), getattr(r, "topology", None))
            )
    return out


def _groups(runs: list[RunInfo]) -> dict[str, list[RunInfo]]:
    """Runs by the unit that gets its own test_seen / val runs (see the module docstring)."""
    topologies: dict[str, set] = {}
    for r in runs:
        topologies.setdefault(r.workload, set()).add(r.topology)
    out: dict[str, list[RunInfo]] = {}
    for r in runs:
        name = _group(r.run_id, r.workload)
        if len(topologies[r.workload]) > 1:
            name += f" on {r.topology}"
        out.setdefault(name, []).append(r)
    return out


def _values(column: str, values, setting: str) -> list:
    """A setting's values as the runs hold them (whole numbers for load_pct, else strings), once each."""
    if isinstance(values, (str, int)) or not isinstance(values, Iterable):
        values = [values]
    out = []
    for v in values:
        if column == "load_pct":
            try:
                v = int(str(v))
            except ValueError:
                raise ValueError(f"{setting}: load_pct values are whole percentages, got {v!r}") from None
        out.append(v if column == "load_pct" else str(v))
    return list(dict.fromkeys(out))


def _check_column(column, setting: str) -> str:
    if column not in RUN_COLUMNS:
        raise ValueError(f"{setting}: {column!r} is no run column (one of {', '.join(RUN_COLUMNS)})")
    return column


def _check_present(runs: list[RunInfo], column: str, values: list, setting: str) -> None:
    """ValueError naming the values no run has, with the values present."""
    present = sorted({getattr(r, column) for r in runs if getattr(r, column) is not None}, key=natural)
    if not present:
        raise ValueError(
            f"{setting}: no run says its {column} (a dataset built before the {column} column: "
            f"rebuild it with python -m data.build)"
        )
    missing = [v for v in values if v not in present]
    if missing:
        raise ValueError(
            f"{setting} names {column} values no run has: {', '.join(map(str, missing))} "
            f"({column} values present: {', '.join(map(str, present))})"
        )


def normal_shift(shift: Mapping | None) -> dict | None:
    """{"by", "train", "test"} with the values as the runs hold them; None for no shift (also
    {by: None, train: None, test: None}, the config's unset node)."""
    if not shift or not any(shift.get(k) for k in ("by", "train", "test")):
        return None
    unknown = sorted(set(shift) - {"by", "train", "test"})
    if unknown or not shift.get("by"):
        raise ValueError(f"shift takes by, train and test (got {', '.join(f'{k}={v}' for k, v in shift.items())})")
    by = _check_column(str(shift["by"]), "shift.by")
    out = {"by": by, **{k: _values(by, shift.get(k) or [], f"shift.{k}") for k in ("train", "test")}}
    for k in ("train", "test"):
        if not out[k]:
            raise ValueError(f"shift.{k} is empty: name the {by} values to {k} on")
    both = [v for v in out["train"] if v in out["test"]]
    if both:
        raise ValueError(f"shift: {by} {', '.join(map(str, both))} in both train and test")
    return out


def normal_where(where: Mapping | None) -> dict | None:
    """{column: [values]} without the columns left unset; None when none is set."""
    out = {_check_column(str(k), "where"): _values(str(k), v, f"where.{k}") for k, v in (where or {}).items() if v}
    return out or None


def _show(values) -> str:
    return f"[{', '.join(map(str, values))}]"


def resolve_val_category(categories: Iterable[str], unseen: list[str], val_category: str | None) -> str | None:
    """The validation category `val_category` stands for (see the module docstring); ValueError
    for a category that has no runs or is unseen."""
    cats = sorted(set(categories))
    if val_category is None:
        return None
    if val_category != AUTO:
        if val_category not in cats:
            raise ValueError(f"val_category={val_category!r}: no run has that category (known: {', '.join(cats)})")
        if val_category in unseen:
            raise ValueError(
                f"val_category={val_category!r} is also unseen ({', '.join(unseen)}): "
                f"pick another category or val_category=null"
            )
        return val_category
    training = [c for c in cats if c not in unseen]
    if len(training) < 2:  # holding out the only training category would leave train empty
        return None
    first = min(c for c in unseen if c in cats) if any(c in cats for c in unseen) else None
    start = cats.index(first) + 1 if first is not None else 0
    return next(c for c in cats[start:] + cats[:start] if c not in unseen)


def split_runs(
    runs: Iterable,
    unseen: Iterable[str] = (),
    val_category: str | None = None,
    val_runs: int = 0,
    shift: Mapping | None = None,
    train_workloads: Iterable[str] | None = None,
    where: Mapping | None = None,
) -> dict:
    """Assign whole runs (anything run_infos reads) to SPLITS. Returns
    {"unseen": [...], "val_category": str | None, "val_runs": n,
     "runs": {split: [run_id, ...] in natural order}, "notes": [...]}, plus "shift",
    "train_workloads" and "where" (normalised) when set and "dropped" (the runs in no split) when
    any. Deterministic: the input order does not
    matter. Names that fit no run, or settings that contradict each other -> ValueError whose
    message starts with the setting's name."""
    runs = run_infos(runs)
    unseen = list(dict.fromkeys(unseen or ()))
    if isinstance(val_runs, bool) or not isinstance(val_runs, int) or val_runs < 0:
        raise ValueError(f"val_runs must be an integer >= 0, got {val_runs!r}")
    shift, where = normal_shift(shift), normal_where(where)
    names = list(dict.fromkeys(str(w) for w in train_workloads or ()))
    if shift and unseen:
        raise ValueError(
            f"unseen={_show(unseen)} and shift both set: unseen is the category shift; "
            f"set one of them (shift={{by: category, train: [...], test: {_show(unseen)}}})"
        )
    by_workload: dict[str, set[str]] = {}
    for r in runs:
        by_workload.setdefault(r.workload, set()).add(r.category)
    for w, cats in sorted(by_workload.items()):
        if len(cats) > 1:
            raise ValueError(f"workload {w} has runs in several categories: {', '.join(sorted(cats))}")
    notes, dropped = [], []
    for column, values in (where or {}).items():
        _check_present(runs, column, values, f"where.{column}")
        kept = [r for r in runs if getattr(r, column) in values]
        notes.append(f"where {column} in {_show(values)}: {len(kept)} of {len(runs)} runs kept")
        dropped += [r for r in runs if r not in kept]
        runs = kept
    categories = sorted({r.category for r in runs})
    missing = [c for c in unseen if c not in categories]
    if missing:
        raise ValueError(
            f"unseen names categories with no runs: {', '.join(missing)} (categories present: {', '.join(categories)})"
        )
    if shift:
        by = shift["by"]
        _check_present(runs, by, shift["train"] + shift["test"], "shift")
        test = [r for r in runs if getattr(r, by) in shift["test"]]
        pool = [r for r in runs if getattr(r, by) in shift["train"]]
        placed = {r.run_id for r in test + pool}
        neither = [r for r in runs if r.run_id not in placed]
        if neither:
            values = sorted({str(getattr(r, by)) for r in neither}, key=natural)
            notes.append(
                f"shift by {by}: {len(neither)} run{'s' * (len(neither) != 1)} dropped, "
                f"{by} {', '.join(values)} being neither train nor test"
            )
            dropped += neither
        if by == CATEGORY:
            unseen = list(shift["test"])
    else:
        test = [r for r in runs if r.category in unseen]
        pool = [r for r in runs if r.category not in unseen]
    if names:
        absent = [w for w in names if not any(r.workload == w for r in runs)]
        if absent:
            present = sorted({r.workload for r in runs})
            raise ValueError(
                f"train_workloads names workloads with no runs: {', '.join(absent)} "
                f"(workloads present: {', '.join(present)})"
            )
        held = [w for w in names if not any(r.workload == w for r in pool)]
        if held:
            raise ValueError(
                f"train_workloads: {', '.join(held)} has no run to train on (all its runs are test_unseen: "
                f"unseen={_show(unseen)}{', shift' if shift else ''})"
            )
        test += [r for r in pool if r.workload not in names]
        pool = [r for r in pool if r.workload in names]
    pool_cats = sorted({r.category for r in pool})
    if shift and shift["by"] != CATEGORY and val_category == AUTO:
        val_cat = None
        notes.append(
            f"val_category auto holds out no category under a shift by {shift['by']}: validation is "
            f"val_runs={val_runs} held-out run(s) per training workload and level"
        )
    else:
        per_category = not names and not (shift and shift["by"] != CATEGORY)
        val_cat = resolve_val_category(
            sorted(set(pool_cats) | set(unseen)) if per_category else pool_cats,
            unseen if per_category else [],
            val_category,
        )
        if val_category == AUTO and val_cat is None:
            notes.append(
                f"val_category auto holds out no category: {pool_cats[0]} is the only training category"
                if pool_cats
                else "val_category auto holds out no category: every category is unseen"
            )
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    out["test_unseen"] = [r.run_id for r in test]
    for name, wruns in sorted(_groups(pool).items(), key=lambda kv: natural(kv[0])):
        ids = sorted((r.run_id for r in wruns), key=natural)
        category = wruns[0].category
        if len(ids) == 1:
            out["val" if category == val_cat else "train"] += ids
            notes.append(
                f"workload {name} has a single run ({ids[0]}): "
                f"{'val' if category == val_cat else 'train'} only, no test_seen run"
            )
            continue
        rest, out["test_seen"] = ids[:-1], out["test_seen"] + ids[-1:]
        if category == val_cat:
            out["val"] += rest
        elif val_runs and len(rest) > val_runs:
            out["train"] += rest[:-val_runs]
            out["val"] += rest[-val_runs:]
        else:
            out["train"] += rest
            if val_runs:
                notes.append(
                    f"workload {name} has {len(ids)} runs: too few for {val_runs} "
                    f"validation run(s) besides train and test_seen; all in train"
                )
    for s in SPLITS:
        out[s].sort(key=natural)
    result = {"unseen": unseen, "val_category": val_cat, "val_runs": val_runs, "runs": out, "notes": notes}
    dropped = sorted((r.run_id for r in dropped), key=natural)
    for key, value in (("shift", shift), ("train_workloads", names), ("where", where), ("dropped", dropped)):
        if value:
            result[key] = value
    return result


def settings(split: dict) -> dict:
    """split_runs' keyword arguments that give `split` again (also a checkpoint's meta["split"],
    whose val_category is the resolved one)."""
    shift = split.get("shift")
    return {
        "unseen": [] if shift else list(split["unseen"]),
        "val_category": split["val_category"],
        "val_runs": split["val_runs"],
        "shift": shift,
        "train_workloads": split.get("train_workloads"),
        "where": split.get("where"),
    }


def describe(split: dict) -> str:
    """The split settings in one line, for error messages."""
    text = f"unseen={split['unseen']}, val_category={split['val_category']}, val_runs={split['val_runs']}"
    if shift := split.get("shift"):
        text += f", shift={{by: {shift['by']}, train: {_show(shift['train'])}, test: {_show(shift['test'])}}}"
    if split.get("train_workloads"):
        text += f", train_workloads={_show(split['train_workloads'])}"
    if where := split.get("where"):
        text += ", where={" + ", ".join(f"{k}: {_show(v)}" for k, v in where.items()) + "}"
    return text


def _training_groups(runs: Iterable, split: dict) -> tuple[dict[str, int], list[str]]:
    """({group: number of runs}, sorted categories) of the runs `split` trains, validates or
    tests as seen (its pool: every run but test_unseen and the dropped ones)."""
    placed = {r for s in ("train", "val", "test_seen") for r in split["runs"][s]}
    pool = [r for r in run_infos(runs) if r.run_id in placed]
    return {name: len(rs) for name, rs in _groups(pool).items()}, sorted({r.category for r in pool})


def why_no_val(runs: Iterable, split: dict) -> str:
    """Why `split` (split_runs' result for `runs`) has no validation run, and what would give it
    one, short enough for a one-line error."""
    counts, categories = _training_groups(runs, split)
    n = split["val_runs"]
    need = max(n + 2, 3)  # train, n validation runs, test_seen
    if n == 0:
        why = "val_runs=0 holds out no run of a workload"
    else:
        few = sorted(counts.items())
        shown = ", ".join(f"{w}: {k}" for w, k in few[:3]) + (", ..." if len(few) > 3 else "")
        why = f"no training workload has the {n + 2} runs val_runs={n} needs ({shown})"
    if len(categories) < 2:
        why += f", and {categories[0] if categories else 'no category'} is the only training category"
    else:
        why += ", and val_category=null holds out no category"
    fixes = []
    if len(categories) >= 2:  # under a shift by anything but category auto holds none out: name one
        shifted = (split.get("shift") or {}).get("by", CATEGORY) != CATEGORY
        fixes.append(f"data.val_category={categories[0] if shifted else AUTO}")
    if n == 0 and any(k >= 3 for k in counts.values()):
        fixes.append("data.val_runs=1")
    more = f"collect {need}+ runs per workload (python -m data.collect ... --runs {need})"
    return f"{why}; set {' or '.join(fixes)}, or {more}" if fixes else f"{why}; {more}"


def rebalance(runs: Iterable, split: dict, rows: Mapping[str, int]) -> list[tuple[str, int, int]]:
    """Overrides of val_category / val_runs under which training gets more rows than validation
    while validation keeps at least MIN_VAL_SHARE of the two (a handful of rows cannot choose a
    checkpoint), as (override, train rows, validation rows), the simplest first. `rows`: rows
    per run_id of the table in question (a run not in it counts 0). Only train and validation
    runs move between these settings: the test splits stay as they are."""
    runs = run_infos(runs)
    category, n = split["val_category"], split["val_runs"]
    _, categories = _training_groups(runs, split)
    options = []
    if category is not None:
        options.append(("data.val_category=null", None, n))
        if n > 0:
            options.append(("data.val_runs=0", category, 0))
    if n > 1:
        options.append(("data.val_runs=1", category, 1))
    options += [(f"data.val_category={c}", c, n) for c in categories if c != category]
    out = []
    for override, val_category, val_runs in options:
        try:
            other = split_runs(runs, **{**settings(split), "val_category": val_category, "val_runs": val_runs})
        except ValueError:
            continue
        train, val = (sum(rows.get(r, 0) for r in other["runs"][s]) for s in ("train", "val"))
        if train > val >= MIN_VAL_SHARE * (train + val) and val > 0:
            out.append((override, train, val))
    return out


def rebalance_advice(runs: Iterable, split: dict, rows: Mapping[str, int]) -> str:
    """What to do when validation outweighs training, for the builder's summary and the
    DataModule's warning: the first two `rebalance` overrides with their rows, or that none helps."""
    options = rebalance(runs, split, rows)
    if options:
        return "for more training rows use " + " or ".join(
            f"{o} (train {t:,} / validation {v:,} rows)" for o, t, v in options[:2]
        )
    return (
        "no data.val_category / data.val_runs setting gives training more rows with a validation left; "
        "collect more runs per workload (python -m data.collect ... --runs N keeps N-1-val_runs of each "
        "workload for training)"
    )
