"""next_task: which task does this CPU switch to next? (classification over encoded tokens)"""

from __future__ import annotations

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from models.tasks.base import DecisionModule
from models.tasks.metrics import TargetRate


class NextTaskModule(DecisionModule):
    """Cross-entropy over `n_out` tokens (known tasks, unknown, idle).

    The unknown token ("not in the MTF list" / "pid not in the training vocabulary") can never
    name a concrete task, so it is removed from the predictions before scoring: a target equal to
    it always counts as a miss. `not_in_list` is the share of such targets and `ceiling`
    (= 1 - not_in_list) the best top-1 any predictor can reach with this encoding.
    """

    task_name = "next_task"

    def make_loss(self) -> nn.Module:
        """Cross-entropy; `loss_options.label_smoothing` (default 0) spreads some target mass over
        every class, which keeps the lower ranks (top-3) from collapsing onto one guess."""
        smoothing = float((self.hparams.get("loss_options") or {}).get("label_smoothing", 0.0))
        return nn.CrossEntropyLoss(label_smoothing=smoothing)

    metric_names = ("top1", "top3", "not_in_list", "ceiling")  # display order

    def make_metrics(self) -> MetricCollection:
        n, unknown = self.meta["n_out"], self.meta["unknown_token"]
        return MetricCollection(
            {
                "top1": MulticlassAccuracy(n, top_k=1, average="micro"),
                "top3": MulticlassAccuracy(n, top_k=min(3, n), average="micro"),
                "not_in_list": TargetRate(unknown),
                "ceiling": TargetRate(unknown, complement=True),
            }
        )

    def metric_inputs(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.index_fill(-1, torch.tensor([self.meta["unknown_token"]], device=logits.device), float("-inf"))
