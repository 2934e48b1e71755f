"""Sliding windows over decision tables without materialising them.

A split is stored once as a step matrix (rows, features) plus one extra all-zero pad row; each
sample is a row of `index` (samples, L) naming the steps of its window, oldest first, with the
pad row where the stream has fewer than L earlier steps. Streams are contiguous groups (same
run_id, segment and CPU or task), so a window never crosses a run or a lost-events gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, default_collate


def stream_order(df: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Row order that makes every stream contiguous and time-ordered (stable on file order)."""
    return np.lexsort([np.arange(len(df))] + [df["ts"].to_numpy()] + [df[k].to_numpy() for k in reversed(keys)])


def stream_starts(df: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Boolean mask of rows that begin a new stream; `df` must already be in `stream_order`."""
    start = np.zeros(len(df), dtype=bool)
    if len(df):
        start[0] = True
        for k in keys:
            v = df[k].to_numpy()
            start[1:] |= v[1:] != v[:-1]
    return start


def window_index(starts: np.ndarray, window: int) -> np.ndarray:
    """(rows, window) indices of each row's last `window` steps in its stream; pad = rows."""
    n = len(starts)
    pos = np.arange(n) - np.maximum.accumulate(np.where(starts, np.arange(n), 0))
    offs = np.arange(window - 1, -1, -1)  # oldest first
    idx = np.arange(n)[:, None] - offs[None, :]
    return np.where(offs[None, :] <= pos[:, None], idx, n).astype(np.int64)


@dataclass
class SplitData:
    """Everything a split contributes: model inputs, targets and the decision rows for baselines."""

    name: str
    steps: torch.Tensor  # float32 (rows + 1, F); last row is the pad row
    index: torch.Tensor  # int64 (samples, L) into steps
    target: torch.Tensor  # float32 (samples,) for binary tasks, int64 for next_task
    tokens: torch.Tensor | None = None  # int64 (rows + 1,); last = pad token
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)  # one decision row per sample

    def __len__(self) -> int:
        return len(self.index)

    def last_window(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The split's last sample as a batch-1 model input (steps, tokens): a real, usually full
        window, for counting MACs and timing one decision."""
        idx = self.index[-1:]
        return self.steps[idx].contiguous(), None if self.tokens is None else self.tokens[idx].contiguous()


class WindowDataset(Dataset):
    """Map-style dataset of windows; `__getitems__` gathers a whole batch with one index op."""

    def __init__(self, split: SplitData):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        s = self.split
        idx = s.index[torch.as_tensor(indices, dtype=torch.long)]
        batch = {"x": s.steps[idx], "y": s.target[indices]}
        if s.tokens is not None:
            batch["tokens"] = s.tokens[idx]
        return batch

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([i]).items()}


def collate_batch(batch):
    """Batches from `WindowDataset.__getitems__` arrive already stacked."""
    return batch if isinstance(batch, dict) else default_collate(batch)
