"""The one rule that puts whole runs into train / val / test_seen / test_unseen.

data.dataset.build (which writes no val: its train is train + val) and every DataModule (which re-splits
the pooled tables by run_id, e.g. for a leave-one-category-out fold `data.unseen=[io]`) call
`split_runs`, so a dataset's card and a checkpoint's `meta["split"]` always agree on the rule:

* runs of the `unseen` categories -> test_unseen;
* every other workload, runs in natural run_id order (r2 before r10): the last -> test_seen;
  the `val_runs` before it -> val; the rest -> train. A workload with too few runs keeps them
  in train (a note says so; one run only: no test_seen either);
* `val_category`: one whole training category held out as "unseen-like" validation (all its
  runs but each workload's test_seen run). `"auto"`: the first category after the (first)
  unseen one in sorted cyclic order that is not unseen; None: none.

Pure Python (no pandas, no torch): selection must never look at a test split, and one small
function is easy to check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

SPLITS = ("train", "val", "test_seen", "test_unseen")
AUTO = "auto"


def natural(name) -> list:
    """Sort key that orders r2 before r10 (a run id or a path)."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(name))]


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
    by_workload: dict[str, list[tuple[str, str]]] = {}
    for run_id, workload, category in triples:
        by_workload.setdefault(workload, []).append((run_id, category))
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    notes = []
    for name, wruns in sorted(by_workload.items()):
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
