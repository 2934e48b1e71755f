"""Metrics torchmetrics lacks or defines differently, built on its states so they sync under DDP."""

from __future__ import annotations

import torch
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryMatthewsCorrCoef, BinaryStatScores


class BinaryBalancedAccuracy(BinaryStatScores):
    """Mean of the recalls of the classes present in the targets (sklearn's balanced accuracy)."""

    def compute(self) -> torch.Tensor:
        tp, fp, tn, fn = (s.sum() for s in self._final_state()[:4])
        recalls = [tp / (tp + fn) if tp + fn > 0 else None, tn / (tn + fp) if tn + fp > 0 else None]
        present = [r.float() for r in recalls if r is not None]
        return torch.stack(present).mean() if present else torch.tensor(0.0)


class TargetRate(MeanMetric):
    """Fraction of targets equal to `token` (with `complement`, not equal), e.g. "not in list"."""

    def __init__(self, token: int, complement: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.token = token
        self.complement = complement

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        hit = (target == self.token).float()
        super().update(1.0 - hit if self.complement else hit)


class BinaryMCC(BinaryMatthewsCorrCoef):
    """MCC that is 0 when undefined (a constant prediction or a single class), as in sklearn.

    torchmetrics substitutes an epsilon there, which gives "always stay" a small positive MCC.
    """

    def compute(self) -> torch.Tensor:
        tn, fp, fn, tp = self.confmat.reshape(-1)
        if min(tp + fp, tp + fn, tn + fp, tn + fn) == 0:
            return torch.tensor(0.0, device=self.confmat.device)
        return super().compute()
