"""migration: each dataset test split again without the rows a load balancer decided
(data.dataset.tables.BALANCER_LABEL == 1: a sched_migrate_task moved the task while it was
queued, after the decision and before its next run). Their label is the balancer's move, which no
input of the wakeup can see, so the same models and baselines are scored on `<split>/no_balancer`
too (issue 21): one more derived test set, a subset of its parent's samples, scored by the same
code as every set (evaluation.metrics); the windows keep the removed rows as history. Its scores
carry `balancer_rows`, the number of rows removed."""

from __future__ import annotations

import torch

from data.dataset.tables import BALANCER_LABEL
from data.dataset.windows import SplitData

SUFFIX = "/no_balancer"
REMOVED = "balancer_rows"  # the key of the scores that counts the rows removed


def name_of(split: str) -> str:
    return split + SUFFIX


def parent_of(name: str) -> str | None:
    """The split a `<split>/no_balancer` set is taken from; None for any other name."""
    return name[: -len(SUFFIX)] if name.endswith(SUFFIX) else None


def keep_mask(split: SplitData) -> torch.Tensor | None:
    """Samples not moved by a balancer (bool, one per sample); None where the rows have no
    BALANCER_LABEL (another task, or a dataset built before the column)."""
    if BALANCER_LABEL not in split.rows:
        return None
    return torch.from_numpy(split.rows[BALANCER_LABEL].to_numpy(copy=True) == 0)


def without_balancer(split: SplitData, keep: torch.Tensor) -> SplitData:
    """The samples of `split` where `keep` holds: same steps (the windows' history is whole),
    their windows, targets and decision rows."""
    return SplitData(
        name_of(split.name),
        split.steps,
        split.index[keep],
        split.target[keep],
        tokens=split.tokens,
        rows=split.rows[keep.numpy()].reset_index(drop=True),
    )
