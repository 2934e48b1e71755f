"""next_task as candidate scoring: one shared scorer over each runnable task, softmax over the set.

The scorer is the usual SchedNet with one output (forward(x (N, L, F)) -> (N, 1)), run on every
candidate's sequence (data/dataset/candidates.py); its scores fill slots 0..C-1 of each sample's
logits (C = data.max_candidates), empty slots get PAD_LOGIT and slot C, the miss (the chosen task
was cut off or not in the set), MISS_LOGIT: finite and below every real score, so top-k (k <= C)
never names it and a miss target always counts as wrong.
"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from models.tasks.base import DecisionModule
from models.tasks.metrics import TargetRate

PAD_LOGIT = -1e9  # an empty slot
MISS_LOGIT = -2e9  # the miss slot: below the empty ones, so no top-k with k <= C reaches it
REAL = PAD_LOGIT / 2  # logits above this are real candidates


def slot_logits(scores: torch.Tensor, owner: torch.Tensor, slot: torch.Tensor, n: int, c: int) -> torch.Tensor:
    """(n, c + 1) logits: candidate scores (N,) at (owner, slot), PAD_LOGIT elsewhere, MISS_LOGIT in slot c."""
    out = torch.full((n, c + 1), PAD_LOGIT, dtype=scores.dtype, device=scores.device)
    out[:, c] = MISS_LOGIT
    out[owner, slot] = scores
    return out


def candidate_logits(net: nn.Module, batch: dict[str, torch.Tensor], c: int) -> torch.Tensor:
    """The scorer over a CandidateSplit batch: one score per candidate, placed in its sample's slots."""
    return slot_logits(net(batch["x"]).squeeze(-1), batch["owner"], batch["slot"], len(batch["y"]), c)


def real_counts(preds: torch.Tensor) -> torch.Tensor:
    """Candidates per sample, read off the logits."""
    return (preds > REAL).sum(-1)


class SingleRate(MeanMetric):
    """Share of samples with exactly one candidate (trivially right when it is the chosen one)."""

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        super().update((real_counts(preds) == 1).float())


class MultiTop1(MulticlassAccuracy):
    """Top-1 on the samples with two candidates or more: the figure a scorer must earn."""

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        multi = real_counts(preds) >= 2
        if multi.any():
            super().update(preds[multi], target[multi])


class NextTaskCandidatesModule(DecisionModule):
    """Cross-entropy over each sample's candidate slots (samples whose chosen task is missing from
    the set carry no gradient); top1 / top3 over the slots, `ceiling` the share whose chosen task
    is in the (kept) set, `single` the share with one candidate, `top1_multi` top-1 on the rest."""

    task_name = "next_task_candidates"
    metric_names = ("top1", "top3", "top1_multi", "single", "ceiling")  # display order

    @property
    def max_candidates(self) -> int:
        return int(self.meta["max_candidates"])

    def make_loss(self) -> nn.Module:
        smoothing = float((self.hparams.get("loss_options") or {}).get("label_smoothing", 0.0))
        return nn.CrossEntropyLoss(label_smoothing=smoothing)

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        hit = y < self.max_candidates
        if not hit.any():
            return logits.sum() * 0.0
        # only real slots share the smoothing mass: the others are masked to -inf
        masked = logits[hit, : self.max_candidates].masked_fill(logits[hit, : self.max_candidates] <= REAL, -torch.inf)
        return self.loss_fn(masked, y[hit]) if self.loss_fn.label_smoothing == 0 else self._smoothed(masked, y[hit])

    def _smoothed(self, masked: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(masked, -1)
        real = torch.isfinite(masked)
        eps = self.loss_fn.label_smoothing
        nll = -logp.gather(1, y[:, None]).squeeze(1)
        uniform = -(logp.where(real, 0.0)).sum(-1) / real.sum(-1)
        return ((1 - eps) * nll + eps * uniform).mean()

    def make_metrics(self) -> MetricCollection:
        n = self.max_candidates + 1
        return MetricCollection(
            {
                "top1": MulticlassAccuracy(n, top_k=1, average="micro"),
                "top3": MulticlassAccuracy(n, top_k=3, average="micro"),
                "top1_multi": MultiTop1(n, top_k=1, average="micro"),
                "single": SingleRate(),
                "ceiling": TargetRate(self.max_candidates, complement=True),
            }
        )

    def metric_inputs(self, logits: torch.Tensor) -> torch.Tensor:
        return logits

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return candidate_logits(self.net, batch, self.max_candidates)
