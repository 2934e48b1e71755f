"""Sequence and feature backbones as plain nn.Modules.

Every backbone maps a window `x` of shape (batch, length, features) to a vector of shape
(batch, out_features) that summarises the window at its last step. Only the ops the exporter
supports are used: Linear, ReLU, causal dilated Conv1d (+ BatchNorm, folded at export), residual
add, LSTM.
"""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """Feed-forward net over the flattened window (window length 1 = the current feature vector)."""

    def __init__(self, in_features: int, window: int, hidden: list[int], dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features * window
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = h
        self.net = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.flatten(1))


class CausalConv1d(nn.Conv1d):
    """Conv1d that pads on the left only, so output t sees inputs <= t."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.left_pad = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(nn.functional.pad(x, (self.left_pad, 0)))


class TemporalBlock(nn.Module):
    """Two causal dilated convolutions with BatchNorm and ReLU, plus a residual connection."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.conv1 = CausalConv1d(c_in, c_out, kernel_size, dilation)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = CausalConv1d(c_out, c_out, kernel_size, dilation)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.downsample = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(self.relu(self.bn1(self.conv1(x))))
        y = self.drop(self.relu(self.bn2(self.conv2(y))))
        res = x if self.downsample is None else self.downsample(x)
        return self.relu(y + res)


class TCN(nn.Module):
    """Causal, dilated, residual temporal convolutional network (dilation doubles per block)."""

    def __init__(self, in_features: int, channels: list[int], kernel_size: int = 3, dropout: float = 0.0):
        super().__init__()
        blocks = []
        c_in = in_features
        for i, c_out in enumerate(channels):
            blocks.append(TemporalBlock(c_in, c_out, kernel_size, 2**i, dropout))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.kernel_size = kernel_size
        self.out_features = c_in

    @property
    def receptive_field(self) -> int:
        """Number of past steps (including the current one) that can influence the output."""
        return 1 + sum(2 * (self.kernel_size - 1) * 2**i for i in range(len(self.blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x.transpose(1, 2))[:, :, -1]


class LSTM(nn.Module):
    """Stacked LSTM; the summary is the last layer's hidden state at the last step."""

    def __init__(self, in_features: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0):
        super().__init__()
        self.lstm = nn.LSTM(
            in_features, hidden_size, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        self.out_features = hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return out[:, -1]
