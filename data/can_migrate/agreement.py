"""How often the kernel's rule (rule.py) agrees with the verdicts the kernel recorded, and
where the disagreements sit.

    python -m data.can_migrate.agreement DATASET | RECORD_FILE...
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from data.can_migrate.features import FORCED, LABEL, can_migrate_table
from data.can_migrate.files import read_records
from data.can_migrate.record import RecordFormatError
from data.can_migrate.rule import RULE_CONTEXT, kernel_verdict
from plumbing.cli import ArgParser, fail


def disagreements(table: pd.DataFrame) -> dict:
    """Agreement of the rule with the recorded labels of a can_migrate table, and where the
    disagreements sit (by the context flags and Chen flags that decide the rule)."""
    allow, forced = kernel_verdict(table)
    out = {"rows": len(table)}
    for name, pred in ((LABEL, allow), (FORCED, forced)):
        wrong = pred != table[name].to_numpy()
        out[f"{name}_agreement"] = float(1 - wrong.mean()) if len(table) else 1.0
        out[f"{name}_wrong"] = int(wrong.sum())
        if wrong.any():
            w = table[wrong]
            keys = [c for c in (*RULE_CONTEXT, "delta_hot", "buddy_hot", "extra_fails") if c in w]
            groups = w.groupby(keys).size().sort_values(ascending=False).head(8)
            out[f"{name}_wrong_by"] = [
                {
                    **{k: int(v) for k, v in zip(keys, idx, strict=False)},
                    "rows": int(n),
                    "recorded_yes": int(w.set_index(keys).loc[idx, name].sum()) if len(keys) else 0,
                }
                for idx, n in groups.items()
            ]
    return out


def main(argv: list[str] | None = None) -> int:
    """python -m data.can_migrate.agreement DATASET | RECORD_FILE...: the rule against recorded verdicts."""
    ap = ArgParser(prog="python -m data.can_migrate.agreement", description=main.__doc__.split(":")[1].strip())
    ap.add_argument("paths", nargs="+", type=Path, help="a built dataset directory or record files")
    args = ap.parse_args(argv)
    for path in args.paths:
        try:
            if path.is_dir():
                parts = {p.stem: pd.read_parquet(p) for p in sorted((path / "can_migrate").glob("*.parquet"))}
                if not parts:
                    raise FileNotFoundError(f"{path}: no can_migrate/*.parquet (build it with python -m data.build)")
            else:
                parts = {path.name: can_migrate_table(read_records(path))}
        except (OSError, RecordFormatError) as e:
            return fail(ap.prog, str(e), 2)
        for name, table in parts.items():
            print(f"{path} {name}: {json.dumps(disagreements(table))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
