"""The winner rule, stated in conf/eval.yaml (`winner:`) and written out with the verdict:
per task, the model with the best `metric` on `split` among those whose p99 latency (batch 1,
one thread, `engine`) is within `budget_p99_us`; ties go to the lower p99. A model without a
latency figure cannot be shown to be within budget, so it is not eligible.
"""
from __future__ import annotations


def rule_text(metric: dict, split: str, budget_us: float, engine: str) -> str:
    names = ", ".join(f"{t}: {m}" for t, m in metric.items())
    return (f"per task, the best {split} metric ({names}) among models whose {engine} p99 latency "
            f"(batch 1, one thread) is <= {budget_us:g} us; ties -> lower p99")


def p99(model: dict, engine: str) -> float | None:
    return (model.get("latency") or {}).get(engine, {}).get("p99_us")


def pick_winners(models: list[dict], metric: dict, split: str, budget_us: float, engine: str) -> dict:
    """winner.json: the rule, its parameters and, per task, the winner and every candidate."""
    out = {"rule": rule_text(metric, split, budget_us, engine), "metric": dict(metric), "split": split,
           "budget_p99_us": budget_us, "latency_engine": engine, "winners": {}}
    for task in dict.fromkeys(m["task"] for m in models):
        name = metric.get(task)
        cands = []
        for m in (m for m in models if m["task"] == task):
            value = m["splits"].get(split, {}).get(name)
            lat = p99(m, engine)
            cands.append({"label": m["label"], "ckpt_path": m["ckpt_path"], "value": value, "p99_us": lat,
                          "within_budget": lat is not None and lat <= budget_us})
        eligible = [c for c in cands if c["within_budget"] and c["value"] is not None]
        best = max(eligible, key=lambda c: (c["value"], -c["p99_us"]), default=None)
        reason = None if best else (f"no model with a {split} {name} and {engine} p99 <= {budget_us:g} us")
        out["winners"][task] = {"winner": best["label"] if best else None,
                                "ckpt_path": best["ckpt_path"] if best else None,
                                "value": best["value"] if best else None,
                                "p99_us": best["p99_us"] if best else None,
                                "reason": reason, "candidates": cands}
    return out
