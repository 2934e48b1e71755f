"""Migration: will the task next run on a CPU other than the one it last ran on? (binary)"""
from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import BinaryAccuracy, BinaryAveragePrecision, BinaryF1Score

from models.tasks.base import DecisionModule
from models.tasks.metrics import BinaryBalancedAccuracy, BinaryMCC


class BinaryDecisionModule(DecisionModule):
    """One logit; positives are rare, so the loss weighs them by the DataModule's `pos_weight`
    (1.0 when it balances with a sampler instead) and the headline metrics are balanced ones."""

    def make_loss(self) -> nn.Module:
        return nn.BCEWithLogitsLoss(pos_weight=torch.tensor(float(self.meta.get("pos_weight", 1.0))))

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
    """Decision points (data/replay.py): wakeups of tasks that ran before, preemptions, forks."""

    task_name = "migration"
