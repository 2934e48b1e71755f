"""Migration: will the task next run on a CPU other than the one it last ran on? (binary)"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAveragePrecision, BinaryF1Score

from models.tasks.base import DecisionModule
from models.tasks.metrics import BinaryBalancedAccuracy, BinaryMCC


class BinaryFocalLoss(nn.Module):
    """BCE with logits, each term scaled by (1 - p_t)^gamma (Lin et al.'s focal loss), so the many
    easy negatives of a rare-positive task stop dominating the gradient; positives keep the
    `pos_weight` factor. gamma = 0 is exactly nn.BCEWithLogitsLoss(pos_weight=...)."""

    def __init__(self, gamma: float = 2.0, pos_weight: float = 1.0):
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal_gamma must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.register_buffer("pos_weight", torch.tensor(float(pos_weight)))

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        bce = nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none")
        weight = torch.where(y > 0.5, self.pos_weight, torch.ones_like(self.pos_weight))
        if self.gamma:
            p = torch.sigmoid(logits)
            p_t = torch.where(y > 0.5, p, 1.0 - p)
            weight = weight * (1.0 - p_t).pow(self.gamma)
        return (weight * bce).mean()


class BinaryDecisionModule(DecisionModule):
    """One logit; positives are rare, so the loss weighs them by the DataModule's `pos_weight`
    (1.0 when it balances with a sampler instead) and the headline metrics are balanced ones.
    `loss_options.focal_gamma` > 0 switches BCE to the focal loss (0, the default: plain BCE)."""

    def make_loss(self) -> nn.Module:
        pos_weight = float(self.meta.get("pos_weight", 1.0))
        gamma = float((self.hparams.get("loss_options") or {}).get("focal_gamma", 0.0))
        if gamma:
            return BinaryFocalLoss(gamma, pos_weight)
        return nn.BCEWithLogitsLoss(pos_weight=torch.tensor(pos_weight))

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(logits.squeeze(-1), y)

    metric_names = ("bal_acc", "f1", "ap", "mcc", "acc")  # display order

    def make_metrics(self) -> MetricCollection:
        return MetricCollection(
            {
                "bal_acc": BinaryBalancedAccuracy(),
                "f1": BinaryF1Score(),
                "ap": BinaryAveragePrecision(),  # PR-AUC
                "mcc": BinaryMCC(),
                "acc": BinaryAccuracy(),
            }
        )

    def metric_inputs(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits.squeeze(-1))


class MigrationModule(BinaryDecisionModule):
    """Decision points (data/dataset/replay.py): wakeups of tasks that ran before, preemptions, forks."""

    task_name = "migration"
