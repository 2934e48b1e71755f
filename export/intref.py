"""Exact integer reference of a quantized model (numpy int64): the ground truth for the C code.

Two forms of the same arithmetic:
  * `IntRef.run_full` evaluates whole sequences at once (convolutions as shifted matrix
    products over the zero-padded sequence, the window as shifted copies, the LSTM scanned over
    time), like the torch model evaluates a window;
  * `Stream` steps one event at a time with the same state the C code keeps (ring buffers with
    a power-of-two mask, the doubled window buffer, LSTM h and c), like `slm_step`.
Every saturation is counted in `counts` (tensor name -> elements clipped); LSTM table-domain
clamps (`<lstm>.gate_clamp`, `<lstm>.tanh_clamp`) and token clamps (`<tok>`) are counted too.

Integer matrix products run through float64 BLAS: |w|, |x| <= 2^15, so every partial sum of K
products is an integer below K * 2^30 < 2^53 (checked), which float64 represents exactly; the
result is therefore exact whatever the summation order.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from export.ir import causal_shift
from export.quantize import ACT_BITS, GATE_ONE, TABLE_SHIFT, QModel, QOp

S16 = (-(1 << 15), (1 << 15) - 1)
S32 = (-(1 << 31), (1 << 31) - 1)


def rshr(v, s: int):
    """Round-half-up arithmetic right shift (s > 0), identity (0), exact left shift (s < 0)."""
    if s > 0:
        return (v + (1 << (s - 1))) >> s
    return v if s == 0 else v * (1 << -s)


def imatmul(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Exact x @ w.T for int16-range operands (see the module docstring)."""
    if x.shape[-1] * (1 << 30) >= (1 << 53):
        raise ValueError("inner dimension too large for exact float64 accumulation")
    return (x.astype(np.float64) @ w.T.astype(np.float64)).astype(np.int64)


def lut(tab: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Table lookup with linear interpolation; z is int16 at GATE_FRAC (domain [-8, 8))."""
    u = z + (1 << 15)
    i = u >> TABLE_SHIFT
    fr = u & ((1 << TABLE_SHIFT) - 1)
    return tab[i] + rshr((tab[i + 1] - tab[i]) * fr, TABLE_SHIFT)


class IntRef:
    """Integer evaluator; one instance accumulates saturation counts over its calls."""

    def __init__(self, q: QModel):
        self.q = q
        self.counts: Counter = Counter()
        self.ops = {op.out: op for op in q.ops}

    def sat(self, v: np.ndarray, name: str, bits: int = ACT_BITS) -> np.ndarray:
        lo, hi = S16 if bits == ACT_BITS else S32
        n = int(np.count_nonzero((v < lo) | (v > hi)))
        if n:
            self.counts[name] += n
        return np.clip(v, lo, hi)

    def inputs(self, x: np.ndarray, tok: np.ndarray | None) -> dict[str, np.ndarray]:
        """The first thing slm_step does: saturate numeric inputs to int16, clamp tokens."""
        g = self.q.graph
        v = {g.x: self.sat(np.asarray(x, np.int64), g.x)}
        if g.tokens:
            tok = np.asarray(tok, np.int64)
            n = int(np.count_nonzero((tok < 0) | (tok >= g.vocab)))
            if n:
                self.counts[g.tokens] += n
            v[g.tokens] = np.clip(tok, 0, g.vocab - 1)
        return v

    def finish(self, op: QOp, acc: np.ndarray, shift: int) -> np.ndarray:
        """Requantize an accumulator to the op's output: rshr, saturate, fused ReLU."""
        y = self.sat(rshr(acc, shift), op.out, self.q.tensors[op.out].bits)
        return np.maximum(y, 0) if op.a.get("relu") else y

    def pointwise(self, op: QOp, a: list[np.ndarray]) -> np.ndarray:
        """Ops without state: identical in both forms (they act on the last axis only)."""
        if op.kind == "embed":
            return op.p["table"][a[0][..., 0]]
        if op.kind == "select":
            vals = {n: x for n, x in zip(op.ins, a, strict=False)}
            return np.stack([self.sat(rshr(vals[n][..., c], s), op.out) for n, c, s in op.a["sources"]], axis=-1)
        if op.kind == "dense":
            return self.finish(op, imatmul(a[0], op.p["w"]) + op.p["b"], op.a["shift"])
        if op.kind == "add":
            sa, sb = op.a["shifts"]
            return self.finish(op, rshr(a[0], sa) + rshr(a[1], sb), 0)
        if op.kind == "relu":
            return np.maximum(a[0], 0)
        raise ValueError(op.kind)

    def lstm_cell(self, op: QOp, x: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One LSTM step on int16 x, h, c; returns the new (h, c)."""
        a, tabs = op.a, self.q.tables
        hid = a["hidden"]
        acc = imatmul(x, op.p["w"]) + imatmul(h, op.p["r"]) + op.p["b"]
        z = self.sat(rshr(acc, a["zshift"]), op.out + ".gate_clamp")
        i, o, f = (lut(tabs["sigmoid"], z[:, k * hid : (k + 1) * hid]) for k in range(3))
        g = lut(tabs["tanh"], z[:, 3 * hid :])
        c = self.sat(rshr(f * c, GATE_ONE) + rshr(i * g, a["igshift"]), op.out + ".c")
        zc = self.sat(rshr(c, a["cshift"]), op.out + ".tanh_clamp")
        h = self.sat(rshr(o * lut(tabs["tanh"], zc), a["hshift"]), op.out)
        return h, c

    def run_full(self, x: np.ndarray, tok: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """All tensors over whole sequences: x (N, T, n_num) int, tok (N, T) -> name: (N, T, W)."""
        v = self.inputs(x, tok)
        if self.q.graph.tokens:
            v[self.q.graph.tokens] = v[self.q.graph.tokens][..., None]
        for op in self.q.ops:
            a = [v[i] for i in op.ins]
            if op.kind == "window":
                n = op.a["length"]
                y = np.concatenate([causal_shift(a[0], n - 1 - j) for j in range(n)], axis=-1)
            elif op.kind == "conv":
                w, d = op.p["w"], op.a["dilation"]
                k = w.shape[2]
                acc = sum(imatmul(causal_shift(a[0], (k - 1 - j) * d), w[:, :, j]) for j in range(k)) + op.p["b"]
                y = self.finish(op, acc, op.a["shift"])
            elif op.kind == "lstm":
                n, t_len, _ = a[0].shape
                hid = op.a["hidden"]
                h = c = np.zeros((n, hid), np.int64)
                y = np.zeros((n, t_len, hid), np.int64)
                for t in range(t_len):
                    h, c = self.lstm_cell(op, a[0][:, t], h, c)
                    y[:, t] = h
            else:
                y = self.pointwise(op, a)
            v[op.out] = y
        return v

    def outputs_full(self, x: np.ndarray, tok: np.ndarray | None = None) -> np.ndarray:
        return self.run_full(x, tok)[self.q.graph.output]


def ring_sizes(q: QModel) -> dict[str, int]:
    """Tensor -> ring length (power of two >= the oldest lag + 1) for tensors convs read."""
    sizes: dict[str, int] = {}
    for op in q.ops:
        if op.kind == "conv":
            span = (op.p["w"].shape[2] - 1) * op.a["dilation"] + 1
            sizes[op.ins[0]] = max(sizes.get(op.ins[0], 1), 1 << (span - 1).bit_length())
    return sizes


class Stream:
    """Streaming evaluation of N independent streams, one step per call (mirrors slm_step)."""

    def __init__(self, ref: IntRef, n: int):
        self.ref, self.q, self.n = ref, ref.q, n
        self.rings = {
            name: np.zeros((n, size, self.q.tensors[name].width), np.int64) for name, size in ring_sizes(self.q).items()
        }
        self.t = 0
        self.win = {
            op.out: np.zeros((n, 2 * op.a["length"], self.q.tensors[op.ins[0]].width), np.int64)
            for op in self.q.ops
            if op.kind == "window"
        }
        self.wpos = {name: 0 for name in self.win}
        self.h = {op.out: np.zeros((n, op.a["hidden"]), np.int64) for op in self.q.ops if op.kind == "lstm"}
        self.c = {name: np.zeros_like(h) for name, h in self.h.items()}

    def step(self, x: np.ndarray, tok: np.ndarray | None = None) -> np.ndarray:
        """x (N, n_num) int, tok (N,) -> output (N, n_out) for this step."""
        v = self.ref.inputs(x, tok)
        if self.q.graph.tokens:
            v[self.q.graph.tokens] = v[self.q.graph.tokens][:, None]
        self.push(self.q.graph.x, v[self.q.graph.x])
        for op in self.q.ops:
            a = [v[i] for i in op.ins]
            if op.kind == "window":
                n, pos, buf = op.a["length"], self.wpos[op.out], self.win[op.out]
                buf[:, pos] = buf[:, pos + n] = a[0]
                y = buf[:, pos + 1 : pos + n + 1].reshape(self.n, -1)
                self.wpos[op.out] = 0 if pos + 1 == n else pos + 1
            elif op.kind == "conv":
                ring, w, d = self.rings[op.ins[0]], op.p["w"], op.a["dilation"]
                k, mask = w.shape[2], ring.shape[1] - 1
                acc = op.p["b"] + sum(imatmul(ring[:, (self.t - (k - 1 - j) * d) & mask], w[:, :, j]) for j in range(k))
                y = self.ref.finish(op, acc, op.a["shift"])
            elif op.kind == "lstm":
                self.h[op.out], self.c[op.out] = self.ref.lstm_cell(op, a[0], self.h[op.out], self.c[op.out])
                y = self.h[op.out]
            else:
                y = self.ref.pointwise(op, a)
            v[op.out] = y
            self.push(op.out, y)
        self.t += 1
        return v[self.q.graph.output]

    def push(self, name: str, y: np.ndarray) -> None:
        if name in self.rings:
            ring = self.rings[name]
            ring[:, self.t & (ring.shape[1] - 1)] = y

    def run(self, x: np.ndarray, tok: np.ndarray | None = None) -> np.ndarray:
        """Step through (N, T, n_num) from the current state; returns (N, T, n_out)."""
        return np.stack([self.step(x[:, t], None if tok is None else tok[:, t]) for t in range(x.shape[1])], axis=1)
