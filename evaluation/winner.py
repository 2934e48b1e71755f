"""The winner rule, stated in conf/eval.yaml (`winner:`) and written out with the verdict.

Candidates are seed groups (evaluation/seeds.py: runs that differ only by seed). Per
task: among groups whose cost, in MACs per decision (window W: models/cost.py), is within
`budget_macs`, rank by the MEAN of `metric` on the VALIDATION rows (the `val` split of the
datamodule: whole held-out training runs plus the held-out validation category, what train.py's
early stopping and checkpoint choice use). Verdicts:
  * "only candidate": one group within the budget; it is the winner by default, nothing is
    compared, so nothing about significance is claimed (its spread is shown, or "spread unknown");
  * "significant": the best group's mean beats the runner-up's by more than the spread,
    best_mean - runner_up_mean > std_best + std_runner_up (sample std over seeds): the winner;
  * "no significant difference": it does not; no winner, the tied groups are listed;
  * "1 seed: spread unknown": two or more groups and one of the top two has a single seed;
    no winner.
Test splits are only reported, never used to choose.

Cost is counted, not timed: a MAC count does not change with the load of the machine. Measured
p99 latency (`latency_engine`) is reported beside each candidate for information. `describe`
is the verdict in one line (values rounded), for report.md and the console.
"""

from __future__ import annotations

from evaluation.seeds import NO_DIFFERENCE, SPREAD_UNKNOWN, beats
from models.cost import per_decision

SELECTION_SPLIT = "val"
SPLIT_NOTE = (
    "validation rows of the checkpoint's datamodule: whole held-out training runs and the held-out "
    "validation category (what train.py's early stopping and checkpointing use)"
)
SIGNIFICANT, ONLY = "significant", "only candidate"


def rule_text(metric: dict, budget_macs: int, engine: str) -> str:
    names = ", ".join(f"{t}: {m}" for t, m in metric.items())
    return (
        f"per task, among the seed groups costing <= {budget_macs:,} MACs per decision (window W), the one "
        f"with the best mean validation metric ({names}); a lone group wins as the only candidate (nothing "
        f"compared, no significance claimed); of two or more, the best wins only if its mean beats the "
        f"runner-up's by more than std_best + std_runner_up (sample std over seeds), and with one seed in "
        f"either the spread is unknown and no winner is declared; {engine} p99 latency is reported, not used "
        f"(it moves with machine load); test splits are never used to choose"
    )


def _value(mean, std, n) -> str:
    """`0.7837 ± 0.0040 (n=3 seeds)`; one seed: `0.7837 (n=1 seed: spread unknown)`."""
    if mean is None:
        return "–"
    if std is None:
        return f"{mean:.4f} (n={n} seed{'s' * (n != 1)}: spread unknown)"
    return f"{mean:.4f} ± {std:.4f} (n={n} seeds)"


def describe(task: str, w: dict, engine: str) -> str:
    """One task's verdict in one line, values rounded: what report.md and the console print."""
    if not w["winner"]:
        tied = f"; tied: {', '.join(w['tied'])}" if w.get("tied") else ""
        return f"{task}: no winner ({w['reason']}{tied})"
    why = "only candidate: nothing compared" if w["verdict"] == ONLY else w["verdict"]
    macs = "–" if w["macs"] is None else f"{w['macs']:,}"
    p99 = "–" if w["p99_us"] is None else f"{w['p99_us']:.1f} us"
    return (
        f"{task}: {w['winner']} ({why}; validation {w.get('metric') or 'metric'} "
        f"{_value(w['value'], w['std'], w['n'])}; {macs} {per_decision(w.get('window'))}; {engine} p99 {p99})"
    )


def p99(group: dict, engine: str) -> float | None:
    return (group.get("latency") or {}).get(engine, {}).get("p99_us")


def why_none(task: str, name: str | None, cands: list[dict], budget_macs: int) -> str:
    """The reason no group of `task` could be ranked, naming the groups and what excluded them."""
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


def _spread(cand: dict) -> dict:
    return {"mean": cand["value"], "std": cand["std"]}


def pick_winners(groups: list[dict], metric: dict, budget_macs: int, engine: str) -> dict:
    """winner.json: the rule, its parameters and, per task, the verdict and every candidate group.

    Each group's validation scores are read from group["validation"][metric] = {"mean", "std", "n"}."""
    out = {
        "rule": rule_text(metric, budget_macs, engine),
        "metric": dict(metric),
        "split": SELECTION_SPLIT,
        "split_note": SPLIT_NOTE,
        "budget_macs": int(budget_macs),
        "latency_engine": engine,
        "winners": {},
    }
    for task in dict.fromkeys(g["task"] for g in groups):
        name = metric.get(task)
        cands = []
        for g in (g for g in groups if g["task"] == task):
            val = (g.get("validation") or {}).get(name) if name else None
            val = val or {"mean": None, "std": None, "n": 0}
            cands.append(
                {
                    "label": g["label"],
                    "ckpt_paths": g.get("ckpt_paths", []),
                    "value": val["mean"],
                    "std": val["std"],
                    "n": val["n"],
                    "seeds": g.get("seeds"),
                    "macs": g.get("macs"),
                    "window": g.get("window"),
                    "p99_us": p99(g, engine),
                    "within_budget": g.get("macs") is not None and g["macs"] <= budget_macs,
                }
            )
        eligible = sorted(
            (c for c in cands if c["within_budget"] and c["value"] is not None), key=lambda c: (-c["value"], c["macs"])
        )
        best = eligible[0] if eligible else None
        verdict, tied, reason = None, [], None
        if best is None:
            verdict, reason = "none", why_none(task, name, cands, budget_macs)
        elif len(eligible) == 1:
            verdict = ONLY
        else:
            wins = [beats(_spread(best), _spread(c)) for c in eligible[1:]]
            tied = [best["label"]] + [c["label"] for c, w in zip(eligible[1:], wins, strict=False) if w is not True]
            if best["n"] < 2 or eligible[1]["n"] < 2:
                verdict, reason = (
                    SPREAD_UNKNOWN,
                    (
                        f"{SPREAD_UNKNOWN}: {best['label']} ({best['n']} seed(s)) and "
                        f"{eligible[1]['label']} ({eligible[1]['n']} seed(s)); train more "
                        f"seeds (seed=1,2,3) to tell them apart"
                    ),
                )
            elif wins[0]:
                verdict, tied = SIGNIFICANT, []
            else:
                verdict, reason = (
                    NO_DIFFERENCE,
                    (f"{NO_DIFFERENCE}: {best['label']} and {eligible[1]['label']} differ by less than their spread"),
                )
        won = best if verdict in (SIGNIFICANT, ONLY) else None
        out["winners"][task] = {
            "winner": won["label"] if won else None,
            "verdict": verdict,
            "metric": name,
            "tied": tied,
            "ckpt_path": (won["ckpt_paths"] or [None])[0] if won else None,
            "ckpt_paths": won["ckpt_paths"] if won else [],
            "value": won["value"] if won else None,
            "std": won["std"] if won else None,
            "n": won["n"] if won else None,
            "macs": won["macs"] if won else None,
            "window": won["window"] if won else None,
            "p99_us": won["p99_us"] if won else None,
            "reason": reason,
            "candidates": cands,
        }
    return out
