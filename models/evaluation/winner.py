"""The winner rule, stated in conf/eval.yaml (`winner:`) and written out with the verdict.

Per task: the model with the best `metric` on the VALIDATION rows (the `val` split of the
datamodule: the last val_fraction of every training run, the rows train.py's early stopping
and checkpoint choice use) among those whose cost, in MACs per decision, is within
`budget_macs`; ties go to fewer MACs. Test splits are only reported, never used to choose.

Cost is counted, not timed: a MAC count does not change with the load of the machine, so the
same checkpoints always give the same winner. Measured p99 latency (`latency_engine`) is
reported beside each candidate for information. Every "none" carries the reason.
"""
from __future__ import annotations

SELECTION_SPLIT = "val"
SPLIT_NOTE = ("validation rows of the checkpoint's datamodule: the last val_fraction of every "
              "training run by time (what train.py's early stopping and checkpointing use)")


def rule_text(metric: dict, budget_macs: int, engine: str) -> str:
    names = ", ".join(f"{t}: {m}" for t, m in metric.items())
    return (f"per task, the best validation metric ({names}) among models costing <= {budget_macs:,} MACs "
            f"per decision; ties -> fewer MACs; {engine} p99 latency is reported, not used "
            f"(it moves with machine load); test splits are never used to choose")


def p99(model: dict, engine: str) -> float | None:
    return (model.get("latency") or {}).get(engine, {}).get("p99_us")


def why_none(task: str, name: str | None, cands: list[dict], budget_macs: int) -> str:
    """The reason no model of `task` won, naming the models and what excluded them."""
    if name is None:
        return f"no winner metric configured for task {task!r} (winner.metric)"
    if not cands:
        return f"no {task} model was evaluated"
    parts = []
    over = [c for c in cands if c["macs"] is not None and c["macs"] > budget_macs]
    if over:
        parts.append("over the MAC budget: " + ", ".join(f"{c['label']} ({c['macs']:,} MACs)" for c in over))
    unscored = [c for c in cands if c["value"] is None]
    if unscored:
        parts.append(f"no validation {name}: " + ", ".join(c["label"] for c in unscored))
    return f"no model within {budget_macs:,} MACs with a validation {name}; " + "; ".join(parts)


def pick_winners(models: list[dict], metric: dict, budget_macs: int, engine: str) -> dict:
    """winner.json: the rule, its parameters and, per task, the winner and every candidate.

    Each model's validation scores are read from model["validation"] ({metric: value, "n"})."""
    out = {"rule": rule_text(metric, budget_macs, engine), "metric": dict(metric), "split": SELECTION_SPLIT,
           "split_note": SPLIT_NOTE, "budget_macs": int(budget_macs), "latency_engine": engine, "winners": {}}
    for task in dict.fromkeys(m["task"] for m in models):
        name = metric.get(task)
        cands = []
        for m in (m for m in models if m["task"] == task):
            val = m.get("validation") or {}
            value = val.get(name) if name and val.get("n") else None
            cands.append({"label": m["label"], "ckpt_path": m["ckpt_path"], "value": value,
                          "val_samples": val.get("n"), "macs": m.get("macs"), "p99_us": p99(m, engine),
                          "within_budget": m.get("macs") is not None and m["macs"] <= budget_macs})
        eligible = [c for c in cands if c["within_budget"] and c["value"] is not None]
        best = max(eligible, key=lambda c: (c["value"], -c["macs"]), default=None)
        out["winners"][task] = {"winner": best["label"] if best else None,
                                "ckpt_path": best["ckpt_path"] if best else None,
                                "value": best["value"] if best else None,
                                "macs": best["macs"] if best else None,
                                "p99_us": best["p99_us"] if best else None,
                                "reason": None if best else why_none(task, name, cands, budget_macs),
                                "candidates": cands}
    return out
