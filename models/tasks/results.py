"""Test metrics of the model and its baselines as one table (printed with rich, saved as JSON)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from data.atomic import write_json_atomic

MODEL = "model"


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
