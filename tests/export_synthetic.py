"""SYNTHETIC models and data for the export tests (no kernel trace involved; a test helper).

A learnable rule over random standardised steps: the label of the window ending at t depends on
the current step, on steps 1 and 3 back and (with tokens) on the token's parity, so MLP windows,
TCN and LSTM all have something to fit. `trained_source` trains a small SchedNet for a few
hundred Adam steps (a second or two on one core) and wraps it as an export Source.
"""

from __future__ import annotations

import numpy as np
import torch

from export.source import Source, Split
from models.network import SchedNet, lstm, mlp, tcn

FACTORIES = {"mlp": mlp, "tcn": tcn, "lstm": lstm}


def sequences(
    n: int, t: int, f: int, vocab: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(n, t, f) steps, (n, t) tokens, (n, t) labels of the rule at every step."""
    x = rng.standard_normal((n, t, f)).astype(np.float32)
    x[..., -1] = 1.0  # like the DataModule's `valid` channel
    tok = rng.integers(0, vocab, (n, t)) if vocab else None
    lag = lambda a, k: np.concatenate([np.zeros_like(a[:, :k]), a[:, :-k]], axis=1)  # noqa: E731
    score = x[..., 0] + 0.8 * lag(x[..., 1], 1) - 0.6 * lag(x[..., 2], 3)
    if tok is not None:
        score = score + np.where(tok % 2 == 0, 0.7, -0.7)
    return x, tok, (score > 0.2).astype(np.int64)


def windows(x: np.ndarray, tok: np.ndarray | None, y: np.ndarray, window: int, name: str) -> Split:
    """Every full window of the sequences, plus the step rows (one stream per sequence)."""
    n, t, f = x.shape
    ends = np.arange(window - 1, t)
    idx = ends[:, None] - np.arange(window - 1, -1, -1)[None, :]
    xw = x[:, idx].reshape(-1, window, f)
    tw = None if tok is None else tok[:, idx].reshape(-1, window)
    start = np.zeros((n, t), bool)
    start[:, 0] = True
    row = (np.arange(n)[:, None] * t + ends[None, :]).reshape(-1)
    return Split(
        name,
        xw,
        tw,
        y[:, ends].reshape(-1),
        x.reshape(n * t, f),
        None if tok is None else tok.reshape(-1),
        row,
        start.reshape(-1) if window > 1 else None,
    )


def make_net(kind: str, n_features: int, window: int, vocab: int = 0, embed: int = 0, **kw) -> SchedNet:
    return SchedNet(FACTORIES[kind](n_features + (embed if vocab else 0), window, **kw), 1, vocab, embed)


def trained_source(
    kind: str,
    window: int = 8,
    n_features: int = 5,
    vocab: int = 0,
    embed: int = 3,
    steps: int = 300,
    seed: int = 0,
    **kw,
) -> Source:
    """A SchedNet fitted to the synthetic rule; calibration = its training windows."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    net = make_net(kind, n_features, window, vocab, embed if vocab else 0, **kw)
    train = windows(*sequences(200, 48, n_features, vocab, rng), window, "train")
    test = windows(*sequences(60, 48, n_features, vocab, rng), window, "test_unseen")
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    xs, ys = torch.as_tensor(train.x), torch.as_tensor(train.y, dtype=torch.float32)
    ts = None if train.tok is None else torch.as_tensor(train.tok)
    net.train()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: more threads only contend on a shared machine
    try:
        for _ in range(steps):
            i = torch.as_tensor(rng.integers(0, len(xs), 256))
            out = net(xs[i], None if ts is None else ts[i])[:, 0]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out, ys[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return Source(net.eval(), window, n_features, vocab, train, [test], describe=f"synthetic {kind} {kw}")
