"""Per-step input encodings shared by training, evaluation and export.

Numeric features: each input column is a named transform of a decision-table column
(`FeatureSpec`), standardised with statistics fitted on the training split only. The transforms
are deliberately few and kernel-friendly (identity, flag, one-hot, log1p of microseconds) so that
export can reproduce them in integer C.

Tokens (next_task): the default move-to-front (MTF) encoding is PID-agnostic. Each CPU keeps a
list of its last K distinct non-idle tasks; a task is encoded by its position in that list before
it is moved to the front (0..K-1), K means "not in list" (a prediction of K can never name a
concrete task, so it never counts as correct), K+1 is idle, K+2 pads windows. The `pid_vocab`
encoding (raw pids seen in training) exists only for comparison with earlier work.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TRANSFORMS = ("identity", "flag", "log1p_us", "onehot")


@dataclass(frozen=True)
class FeatureSpec:
    """One model input column: `name` computed from table column `column` by `transform`.

    `onehot` compares the column with `value`; `log1p_us` maps nanoseconds (negative = unknown)
    to log(1 + max(ns, 0) / 1000); `flag` is 0/1 and never standardised.
    """

    name: str
    column: str
    transform: str = "identity"
    value: object = None

    @property
    def standardised(self) -> bool:
        return self.transform in ("identity", "log1p_us")

    def to_dict(self) -> dict:
        return {"name": self.name, "column": self.column, "transform": self.transform, "value": self.value}


def apply_specs(df: pd.DataFrame, specs: list[FeatureSpec]) -> np.ndarray:
    """Raw (unstandardised) float32 matrix (rows, len(specs)) of the transformed columns."""
    out = np.empty((len(df), len(specs)), dtype=np.float32)
    for j, s in enumerate(specs):
        col = df[s.column]
        if s.transform == "identity":
            v = col.to_numpy(dtype=np.float64)
        elif s.transform == "flag":
            v = (col.to_numpy(dtype=np.float64) != 0).astype(np.float64)
        elif s.transform == "log1p_us":
            v = np.log1p(np.clip(col.to_numpy(dtype=np.float64), 0, None) / 1000.0)
        elif s.transform == "onehot":
            v = (col.astype(str) == str(s.value)).to_numpy(dtype=np.float64)
        else:
            raise ValueError(f"unknown transform {s.transform!r} for feature {s.name!r}; known: {TRANSFORMS}")
        out[:, j] = v
    return out


def fit_standardiser(raw: np.ndarray, specs: list[FeatureSpec]) -> tuple[list[float], list[float]]:
    """Mean/std per column on training rows; flags and one-hots keep mean 0, std 1."""
    mean = np.zeros(len(specs))
    std = np.ones(len(specs))
    for j, s in enumerate(specs):
        if s.standardised and len(raw):
            mean[j] = float(raw[:, j].mean())
            sd = float(raw[:, j].std())
            std[j] = sd if sd > 1e-8 else 1.0
    return mean.tolist(), std.tolist()


def standardise(raw: np.ndarray, mean: list[float], std: list[float]) -> np.ndarray:
    return ((raw - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# next_task token encodings
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenLayout:
    """Token ids: 0..n_known-1 concrete tasks, `unknown`, `idle`, `pad` (inputs only)."""

    n_known: int

    @property
    def unknown(self) -> int:
        return self.n_known

    @property
    def idle(self) -> int:
        return self.n_known + 1

    @property
    def pad(self) -> int:
        return self.n_known + 2

    @property
    def n_classes(self) -> int:
        """Prediction targets: known tasks, unknown, idle (pad is never a target)."""
        return self.n_known + 2

    @property
    def n_tokens(self) -> int:
        """Embedding size: every class plus the pad token."""
        return self.n_known + 3


def mtf_encode(tids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Move-to-front tokens for one CPU stream of incoming task ids (0 = idle).

    Returns (token, two_back): token[i] encodes tids[i] with the list as it was before step i;
    two_back[i] encodes tids[i-1] with the list as it is after step i (the "repeat-2-back"
    guess for step i+1), or `unknown` for i = 0.
    """
    lay = TokenLayout(k)
    tokens = np.empty(len(tids), dtype=np.int64)
    two_back = np.empty(len(tids), dtype=np.int64)
    mtf: list[int] = []
    prev = None
    for i, t in enumerate(tids.tolist()):
        if t == 0:
            tokens[i] = lay.idle
        else:
            try:
                pos = mtf.index(t)
                tokens[i] = pos
                del mtf[pos]
            except ValueError:
                tokens[i] = lay.unknown
                if len(mtf) == k:
                    mtf.pop()
            mtf.insert(0, t)
        if prev is None:
            two_back[i] = lay.unknown
        elif prev == 0:
            two_back[i] = lay.idle
        else:
            two_back[i] = mtf.index(prev) if prev in mtf else lay.unknown
        prev = t
    return tokens, two_back


def build_pid_vocab(pids: np.ndarray, max_size: int | None = None) -> list[int]:
    """Non-idle pids seen in training, most frequent first (ties by pid, so it is deterministic)."""
    s = pd.Series(pids[pids != 0]).value_counts()
    order = sorted(s.items(), key=lambda kv: (-kv[1], kv[0]))
    vocab = [int(p) for p, _ in order]
    return vocab[:max_size] if max_size else vocab


def vocab_encode(pids: np.ndarray, vocab: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Raw-pid tokens: index in `vocab`, unknown for unseen pids, idle for pid 0; plus two_back."""
    lay = TokenLayout(len(vocab))
    lookup = {p: i for i, p in enumerate(vocab)}
    tokens = np.fromiter(
        (lay.idle if p == 0 else lookup.get(p, lay.unknown) for p in pids.tolist()), dtype=np.int64, count=len(pids)
    )
    two_back = np.empty_like(tokens)
    if len(tokens):
        two_back[0] = lay.unknown
        two_back[1:] = tokens[:-1]
    return tokens, two_back
