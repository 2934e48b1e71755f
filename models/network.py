"""The exported network: optional token embedding + backbone + linear head.

Backbone configs (conf/model/*.yaml) name one of the factories below, which give every backbone
the same knobs (`width`, `depth`) so one hyper-parameter search space fits all three; the
DataModule's metadata supplies the input size, window length and output size.
"""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from torch import nn

from models.backbones import LSTM, MLP, TCN


def mlp(in_features: int, window: int, width: int = 64, depth: int = 2, dropout: float = 0.0) -> MLP:
    """`depth` hidden layers of `width` over the flattened window."""
    return MLP(in_features, window, [width] * depth, dropout)


def tcn(
    in_features: int, window: int, width: int = 32, depth: int = 3, kernel_size: int = 3, dropout: float = 0.0
) -> TCN:
    """`depth` residual blocks of `width` channels; dilation doubles per block."""
    return TCN(in_features, [width] * depth, kernel_size, dropout)


def lstm(in_features: int, window: int, width: int = 32, depth: int = 1, dropout: float = 0.0) -> LSTM:
    """`depth` stacked LSTM layers of hidden size `width`."""
    return LSTM(in_features, width, depth, dropout)


class SchedNet(nn.Module):
    """forward(x float (B, L, F), tokens int64 (B, L) | None) -> logits (B, n_out)."""

    def __init__(self, backbone: nn.Module, n_out: int, n_tokens: int = 0, embed_dim: int = 0):
        super().__init__()
        self.embedding = nn.Embedding(n_tokens, embed_dim) if n_tokens and embed_dim else None
        self.backbone = backbone
        self.head = nn.Linear(backbone.out_features, n_out)

    @property
    def receptive_field(self) -> int | None:
        """Steps that can influence the output (TCN only; the others see the whole window)."""
        return getattr(self.backbone, "receptive_field", None)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        if self.embedding is not None:
            if tokens is None:
                raise ValueError("this network embeds tokens: pass tokens (B, L)")
            x = torch.cat([x, self.embedding(tokens)], dim=-1)
        return self.head(self.backbone(x))


def build_net(backbone: dict, data_meta: dict, embed_dim: int = 0) -> SchedNet:
    """Instantiate a backbone config (`_target_` = a factory above) sized by the data metadata."""
    embed_dim = embed_dim if data_meta.get("n_tokens") else 0
    body = instantiate(backbone, in_features=data_meta["n_features"] + embed_dim, window=data_meta["window"])
    return SchedNet(body, data_meta["n_out"], data_meta.get("n_tokens", 0), embed_dim)
