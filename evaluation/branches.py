"""can_migrate: a model's accuracy on each branch of the kernel's rule that decided the verdict
(`data.can_migrate.rule.decision_path`), so that a missed target names the branch the model
misses (an SMT-level verdict, a locality verdict, a cache-hot buddy, ...)."""

from __future__ import annotations

import torch

from data.can_migrate.rule import BRANCHES, decision_path
from data.dataset.windows import SplitData


def branch_scores(module, logits: torch.Tensor, split: SplitData) -> dict[str, dict]:
    """{branch: {n, share, acc, positive}} over the split's samples, in the kernel's order;
    `positive` is the share of samples whose target is 1 (allowed, or forced)."""
    preds = module.metric_inputs(logits).reshape(-1) > 0.5
    target = split.target.reshape(-1).bool()
    hit = (preds == target).numpy()
    branch = decision_path(split.rows)["branch"].to_numpy()
    out = {}
    for name in BRANCHES:
        mask = branch == name
        n = int(mask.sum())
        if n:
            out[name] = {
                "n": n,
                "share": n / len(hit),
                "acc": float(hit[mask].mean()),
                "positive": float(target.numpy()[mask].mean()),
            }
    return out
