"""can_migrate with label forced_future (issue 22): how far ahead of the forced call a model's
correct positives come (data.dataset.forced_future.lead_times), per test set."""

from __future__ import annotations

import torch

from data.dataset.forced_future import FORCED_FUTURE, LEAD, lead_times
from data.dataset.windows import SplitData


def applies(meta: dict) -> bool:
    return meta.get("task") == "can_migrate" and meta.get("label") == FORCED_FUTURE


def lead_time_scores(module, logits: torch.Tensor, split: SplitData) -> dict:
    """lead_times of the model's yes (probability > 0.5) on the split's rows: the true positives'
    lead (p50 / p90 ms) and, per forced event, the earliest correct positive ahead of it."""
    preds = (module.metric_inputs(logits).reshape(-1) > 0.5).numpy()
    rows = split.rows
    return lead_times(preds, split.target.reshape(-1).numpy(), rows[LEAD].to_numpy(), rows[["run_id", "pid", "ts"]])


def _ms(v) -> str:
    return "" if v is None else f"{v:.3f}"


def lead_time_table(ms: list[dict], split: str, table) -> str | None:
    """Rows per model (label): true positives and their lead, forced events caught and the
    earliest correct positive's lead; `table` renders (header, rows) as report.md does."""
    rows = []
    for m in ms:
        lt = (m.get("lead_time") or {}).get(split)
        if lt:
            rows.append(
                [
                    m["label"],
                    lt["true_positives"],
                    _ms(lt["tp_p50_ms"]),
                    _ms(lt["tp_p90_ms"]),
                    f"{lt.get('events_caught', 0)} / {lt.get('events', 0)}",
                    _ms(lt.get("event_p50_ms")),
                    _ms(lt.get("event_p90_ms")),
                ]
            )
    if not rows:
        return None
    head = [
        "model",
        "true positives",
        "TP lead p50 ms",
        "TP lead p90 ms",
        "forced events caught",
        "earliest lead p50 ms",
        "earliest lead p90 ms",
    ]
    return table(head, rows)
