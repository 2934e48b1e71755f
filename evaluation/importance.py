"""Permutation feature importance: how much the primary metric drops when one input is shuffled.

Inputs are grouped by the decision-table column they come from (the three one-hot `kind_*`
inputs are one feature, `kind`), and next_task's token is a feature of its own. A feature is
shuffled across the split's steps (every window that contains a step sees the shuffled value,
so windows stay internally consistent in everything else); the drop is averaged over
`repeats` shuffles drawn from a fixed seed. The group names are the ones `data.features`
accepts, so the ranking feeds the feature-count experiment directly.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from data.dataset.windows import SplitData
from evaluation.metrics import predict, score

TOKEN = "token"  # next_task: the incoming task's encoded token


def feature_groups(meta: dict) -> dict[str, list[int]]:
    """{feature: step columns}; `valid` (window padding) is not a feature."""
    groups: dict[str, list[int]] = {}
    for j, spec in enumerate(meta["features"]):
        groups.setdefault(spec["column"], []).append(j)
    if meta.get("n_tokens"):
        groups[TOKEN] = []
    return groups


def subsample(split: SplitData, max_samples: int | None, rng: np.random.Generator) -> SplitData:
    if not max_samples or len(split) <= max_samples:
        return split
    sel = np.sort(rng.choice(len(split), max_samples, replace=False))
    return dataclasses.replace(
        split, index=split.index[sel], target=split.target[sel], rows=split.rows.iloc[sel].reset_index(drop=True)
    )


def shuffled(split: SplitData, columns: list[int], rng: np.random.Generator) -> SplitData:
    """A copy with `columns` of the steps (or the tokens, for []) permuted across steps."""
    perm = torch.from_numpy(rng.permutation(len(split.steps) - 1))
    if not columns:
        tokens = split.tokens.clone()
        tokens[:-1] = split.tokens[:-1][perm]
        return dataclasses.replace(split, tokens=tokens)
    steps = split.steps.clone()
    cols = torch.as_tensor(columns)
    steps[:-1, cols] = split.steps[:-1][perm][:, cols]
    return dataclasses.replace(split, steps=steps)


def permutation_importance(
    module, split: SplitData, metric: str, repeats: int = 3, seed: int = 0, max_samples: int | None = 20000
) -> dict:
    """{"metric", "split", "base", "repeats", "samples", "features": {name: {drop_mean, drop_std}}},
    features sorted by mean drop, largest first."""
    rng = np.random.default_rng(seed)
    split = subsample(split, max_samples, rng)
    base = score(module, predict(module.net, split), split.target)[metric]
    drops = {}
    for name, cols in feature_groups(module.meta).items():
        values = [
            base - score(module, predict(module.net, shuffled(split, cols, rng)), split.target)[metric]
            for _ in range(repeats)
        ]
        drops[name] = {"drop_mean": float(np.mean(values)), "drop_std": float(np.std(values))}
    ranked = dict(sorted(drops.items(), key=lambda kv: -kv[1]["drop_mean"]))
    return {
        "metric": metric,
        "split": split.name,
        "base": base,
        "repeats": repeats,
        "seed": seed,
        "samples": len(split),
        "features": ranked,
    }
