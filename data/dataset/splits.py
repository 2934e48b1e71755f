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
  data.dataset.build checks it against meta.json's load_pct;
* `val_category`: one whole training category held out as "unseen-like" validation (all its
  runs but each workload's test_seen run). `"auto"`: the first category after the (first)
  unseen one in sorted cyclic order that is not unseen; None: none.

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

from data.collect.runs import run_load

SPLITS = ("train", "val", "test_seen", "test_unseen")
AUTO = "auto"
DEFAULT_VAL_CATEGORY = AUTO  # every DataModule's default validation (conf/data/*.yaml)
DEFAULT_VAL_RUNS = 1
MIN_VAL_SHARE = 0.1  # rebalance: a validation under a tenth of train + val rows is no choice


def natural(name) -> list:
    """Sort key that orders r2 before r10 (a run id or a path)."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(name))]


def _group(run_id: str, workload: str) -> str:
    """The unit that gets its own test_seen / val runs: the workload, or the workload at one load level."""
    load = run_load(run_id)
    return workload if load is None else f"{workload} at load {load}%"


def _triples(runs: Iterable) -> list[tuple[str, str, str]]:
    """(run_id, workload, category) from tuples, dicts or objects with those attributes."""
    out = []
    for r in runs:
        if isinstance(r, dict):
            out.append((str(r["run_id"]), str(r["workload"]), str(r["category"])))
        elif isinstance(r, (tuple, list)):
            out.append((str(r[0]), str(r[1]), str(r[2])))
        else:
            out.append((str(r.run_id), str(r.workload), str(r.category)))
    return out


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


def split_runs(runs: Iterable, unseen: Iterable[str] = (), val_category: str | None = None, val_runs: int = 0) -> dict:
    """Assign whole runs (run_id, workload, category) to SPLITS. Returns
    {"unseen": [...], "val_category": str | None, "val_runs": n,
     "runs": {split: [run_id, ...] in natural order}, "notes": [...]}.
    Deterministic: the input order does not matter. Unknown category names -> ValueError."""
    triples = _triples(runs)
    unseen = list(dict.fromkeys(unseen or ()))
    if isinstance(val_runs, bool) or not isinstance(val_runs, int) or val_runs < 0:
        raise ValueError(f"val_runs must be an integer >= 0, got {val_runs!r}")
    categories = sorted({c for _, _, c in triples})
    missing = [c for c in unseen if c not in categories]
    if missing:
        raise ValueError(
            f"unseen names categories with no runs: {', '.join(missing)} (categories present: {', '.join(categories)})"
        )
    val_cat = resolve_val_category(categories, unseen, val_category)
    notes = []
    if val_category == AUTO and val_cat is None:
        training = [c for c in categories if c not in unseen]
        notes.append(
            f"val_category auto holds out no category: {training[0]} is the only training category"
            if training
            else "val_category auto holds out no category: every category is unseen"
        )
    by_workload: dict[str, list[tuple[str, str]]] = {}
    for run_id, workload, category in triples:
        by_workload.setdefault(_group(run_id, workload), []).append((run_id, category))
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for name, wruns in sorted(by_workload.items(), key=lambda kv: natural(kv[0])):
        ids = sorted((r for r, _ in wruns), key=natural)
        cats = sorted({c for _, c in wruns})
        if len(cats) > 1:
            raise ValueError(f"workload {name} has runs in several categories: {', '.join(cats)}")
        if cats[0] in unseen:
            out["test_unseen"] += ids
            continue
        if len(ids) == 1:
            out["val" if cats[0] == val_cat else "train"] += ids
            notes.append(
                f"workload {name} has a single run ({ids[0]}): "
                f"{'val' if cats[0] == val_cat else 'train'} only, no test_seen run"
            )
            continue
        rest, out["test_seen"] = ids[:-1], out["test_seen"] + ids[-1:]
        if cats[0] == val_cat:
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
    return {"unseen": unseen, "val_category": val_cat, "val_runs": val_runs, "runs": out, "notes": notes}


def describe(split: dict) -> str:
    """The split settings in one line, for error messages."""
    return f"unseen={split['unseen']}, val_category={split['val_category']}, val_runs={split['val_runs']}"


def _training_workloads(runs: Iterable, unseen: list[str]) -> tuple[dict[str, int], list[str]]:
    """({workload: number of runs}, sorted categories) of the runs outside the `unseen` categories."""
    counts: dict[str, int] = {}
    categories = set()
    for run_id, workload, category in _triples(runs):
        if category not in unseen:
            counts[_group(run_id, workload)] = counts.get(_group(run_id, workload), 0) + 1
            categories.add(category)
    return counts, sorted(categories)


def why_no_val(runs: Iterable, split: dict) -> str:
    """Why `split` (split_runs' result for `runs`) has no validation run, and what would give it
    one, short enough for a one-line error."""
    counts, categories = _training_workloads(runs, split["unseen"])
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
    if len(categories) >= 2:
        fixes.append(f"data.val_category={AUTO}")
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
    runs = _triples(runs)
    unseen, category, n = split["unseen"], split["val_category"], split["val_runs"]
    _, categories = _training_workloads(runs, unseen)
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
            other = split_runs(runs, unseen, val_category, val_runs)
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
