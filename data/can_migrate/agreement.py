"""How often the kernel's rule (rule.py) agrees with the verdicts the kernel recorded, per
topology, and which branch of can_migrate_task() decided each verdict.

    python -m data.can_migrate.agreement PATH...

PATH: a folder of runs (searched for <run>/meta.json beside a record file, as data.build does),
a run folder, a built dataset (DATASET/can_migrate/*.parquet; runs found through its card's
sources) or record files (their run is the meta.json beside them). Runs are grouped by
meta.json's "topology": its spec (e.g. 2x2x2) for a NUMA guest; `flat` for a guest run without
one (topology null, without spec, or not recorded: the guest collector before --topology);
`unknown` for a run without meta.json or from another collector. Markdown on stdout: per
topology the agreement with both labels, then per topology the branches (rule.BRANCHES) with
the verdicts each decided and its disagreements.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from data.can_migrate.features import FORCED, LABEL, can_migrate_table, migration_cost_of
from data.can_migrate.files import read_meta, read_records, run_records
from data.can_migrate.record import RecordFormatError
from data.can_migrate.rule import BRANCHES, decision_path, kernel_verdict
from plumbing import markdown
from plumbing.cli import ArgParser, fail

FLAT, UNKNOWN = "flat", "unknown"
# Per-branch counts, in the report's column order, with their headings.
BRANCH_COUNTS = {
    "verdicts": "verdicts",
    "allowed": "rule allows",
    "extra_fails_override": "extra_fails overrides",
    "by_weights": "by fault weights",
    "locality_neutral": "after locality -1",
    f"{LABEL}_wrong": f"{LABEL} wrong",
    f"{FORCED}_wrong": f"{FORCED} wrong",
}


def topology_of(meta: dict | None) -> str:
    """The topology a run is grouped under (see the module docstring)."""
    if meta is None:
        return UNKNOWN
    spec = (meta.get("topology") or {}).get("spec")
    if spec:
        return str(spec)
    return FLAT if meta.get("collector") == "guest" else UNKNOWN


def run_settings(meta: dict | None) -> dict:
    """The optional record columns rule.rule_context reads, from a run's meta.json topology:
    `numa_nodes` and `numa_balancing` (the sysctl), where recorded."""
    topo = (meta or {}).get("topology") or {}
    out = {}
    if isinstance(topo.get("nodes"), int):
        out["numa_nodes"] = topo["nodes"]
    sysctl = (topo.get("numa_balancing") or {}).get("sysctl")
    if isinstance(sysctl, int):
        out["numa_balancing"] = int(sysctl != 0)
    return out


def counts(table: pd.DataFrame) -> dict:
    """Integer counts of the rule against a can_migrate table's labels (they add up over runs):
    rows, wrong per label, verdicts by approximate weights, and BRANCH_COUNTS per branch."""
    allow, forced = kernel_verdict(table)
    path = decision_path(table)
    wrong = {name: pred != table[name].to_numpy() for name, pred in ((LABEL, allow), (FORCED, forced))}
    cols = pd.DataFrame(
        {
            "branch": path["branch"],
            "verdicts": 1,
            "allowed": allow,
            **{c: path[c].astype(int) for c in ("extra_fails_override", "by_weights", "locality_neutral")},
            **{f"{name}_wrong": w.astype(int) for name, w in wrong.items()},
        }
    )
    by = cols.groupby("branch", observed=False).sum()
    approx = table["locality_approx"].to_numpy() != 0 if "locality_approx" in table else False
    return {
        "rows": len(table),
        **{f"{name}_wrong": int(w.sum()) for name, w in wrong.items()},
        "approx_weights": int((path["by_weights"].to_numpy() & approx).sum()),
        "branches": {b: {c: int(by.loc[b, c]) for c in BRANCH_COUNTS} for b in BRANCHES},
    }


def merge(a: dict, b: dict) -> dict:
    """The counts of two tables together."""
    out = {k: a[k] + b[k] for k in a if k != "branches"}
    out["branches"] = {br: dict(Counter(a["branches"][br]) + Counter(b["branches"][br])) for br in BRANCHES}
    for br in BRANCHES:  # Counter drops zeros
        out["branches"][br] = {c: out["branches"][br].get(c, 0) for c in BRANCH_COUNTS}
    return out


def disagreements(table: pd.DataFrame) -> dict:
    """counts() of one table with the agreement of each label (share of rows the rule gets right)."""
    c = counts(table)
    for name in (LABEL, FORCED):
        c[f"{name}_agreement"] = 1 - c[f"{name}_wrong"] / c["rows"] if c["rows"] else 1.0
    return c


def runs_of(path: Path) -> list[tuple[str, str, dict, pd.DataFrame]]:
    """(topology, run, settings, can_migrate table) for every run a PATH argument holds."""
    if path.is_file():
        meta = read_meta(path.parent / "meta.json")
        table = can_migrate_table(read_records(path), migration_cost_of(meta))
        tables = [(path.parent.name if meta else path.name, meta, table)]
    elif (path / "can_migrate").is_dir():
        tables = _dataset_runs(path)
    elif path.is_dir():
        found = [(m.parent, run_records(m.parent)) for m in sorted(path.rglob("meta.json"))]
        found = [(d, f) for d, f in found if f is not None]
        if not found:
            raise FileNotFoundError(
                f"{path}: no <run>/meta.json beside a record file, and no can_migrate/*.parquet of a built dataset"
            )
        tables = []
        for run_dir, file in found:
            meta = read_meta(run_dir / "meta.json")
            records = read_records(file).assign(**run_settings(meta))
            tables.append((run_dir.name, meta, can_migrate_table(records, migration_cost_of(meta))))
    else:
        raise FileNotFoundError(f"{path}: no such file or folder")
    return [(topology_of(meta), run, run_settings(meta), table) for run, meta, table in tables]


def _dataset_runs(path: Path) -> list[tuple[str, dict | None, pd.DataFrame]]:
    """A built dataset's can_migrate rows per run; each run's meta.json from the card's sources
    (None where that folder is gone). The tables were built without the run's settings."""
    parts = [pd.read_parquet(p) for p in sorted((path / "can_migrate").glob("*.parquet"))]
    if not parts:
        raise FileNotFoundError(f"{path}: no can_migrate/*.parquet (build it with python -m data.build)")
    card = read_meta(path / "meta.json") or {}
    source = {s["run_id"]: Path(s["path"]).parent / "meta.json" for s in card.get("sources", []) if "path" in s}
    rows = pd.concat(parts, ignore_index=True)
    return [
        (str(run), read_meta(source[run]) if run in source else None, t.reset_index(drop=True))
        for run, t in rows.groupby("run_id", sort=True)
    ]


def _share(right: int, rows: int) -> str:
    return f"{right / rows:.4f}" if rows else "–"


def report(runs: list[tuple[str, str, dict, pd.DataFrame]]) -> str:
    """The Markdown report of runs_of()'s runs, pooled per topology (in order of first appearance)."""
    groups: dict[str, dict] = {}
    for topo, run, settings, table in runs:
        g = groups.setdefault(topo, {"runs": [], "counts": None, "nodes": set()})
        g["runs"].append(run)
        g["nodes"].add(settings.get("numa_nodes", "–"))
        c = counts(table)
        g["counts"] = c if g["counts"] is None else merge(g["counts"], c)
    summary = []
    for topo, g in groups.items():
        c = g["counts"]
        summary.append(
            [
                topo,
                ", ".join(str(n) for n in sorted(g["nodes"], key=str)),
                len(g["runs"]),
                c["rows"],
                _share(c["rows"] - c[f"{LABEL}_wrong"], c["rows"]),
                c[f"{LABEL}_wrong"],
                _share(c["rows"] - c[f"{FORCED}_wrong"], c["rows"]),
                c[f"{FORCED}_wrong"],
                c["approx_weights"],
            ]
        )
    out = [
        "# The kernel rule (data/can_migrate/rule.py) against the recorded verdicts",
        "",
        markdown.table(
            [
                "topology",
                "nodes",
                "runs",
                "verdicts",
                f"{LABEL} agreement",
                f"{LABEL} wrong",
                f"{FORCED} agreement",
                f"{FORCED} wrong",
                "by approximate weights",
            ],
            summary,
        ),
    ]
    for topo, g in groups.items():
        br = g["counts"]["branches"]
        out += [
            "",
            f"## {topo}: the branch that decided",
            "",
            markdown.table(["branch", *BRANCH_COUNTS.values()], [[b, *br[b].values()] for b in BRANCHES]),
        ]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    """python -m data.can_migrate.agreement PATH...: the rule against recorded verdicts, per topology."""
    ap = ArgParser(prog="python -m data.can_migrate.agreement", description=main.__doc__.split(":")[1].strip())
    ap.add_argument("paths", nargs="+", type=Path, help="folders of runs, run folders, built datasets or record files")
    args = ap.parse_args(argv)
    runs = []
    for path in args.paths:
        try:
            runs += runs_of(path)
        except (OSError, RecordFormatError) as e:
            return fail(ap.prog, str(e), 2)
    print(report(runs), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
