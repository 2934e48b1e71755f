"""Streaming intermediate representation (IR) of an exported model, and its float evaluator.

The ONNX graph describes one evaluation of a whole window; the kernel runs one step per event.
The IR is the bridge: every tensor is a per-step vector (``width`` channels) and every op says
how the current step's value is computed, possibly from earlier steps (causal convolution, LSTM
state, flattened window). `onnx_graph.lower` builds it by walking the ONNX nodes; quantize,
the integer reference and the C generator all consume it, so there is one description of the
model only.

Op kinds (``Op.kind``), all per step:
  embed   out = table[token]                                   (nn.Embedding)
  select  out[r] = ins[k_r][c_r]                               (concat / channel permutation)
  window  out = concat(in[t-L+1], ..., in[t]), zeros before t=0 (flatten over the window, MLP)
  dense   out = W in + b                                       (Linear / Gemm / MatMul / 1x1 Conv)
  conv    out = b + sum_j W[:, :, j] in[t - (k-1-j) d]         (causal dilated Conv1d, BN folded)
  add     out = a + b                                          (residual)
  relu    out = max(in, 0)                                     (only when it cannot be fused)
  lstm    ONNX LSTM cell, gate order i, o, f, c; h and c carried between steps
dense, conv and add carry ``attrs["relu"]`` when a following ReLU was fused into them.

`run_float` evaluates the IR over whole sequences (the "full" form): inputs (N, T, F) and
(N, T) tokens, every tensor returned as (N, T, width). Output step t equals the model applied to
the sequence prefix 0..t, which is what streaming computes; with T == window the last step is
exactly the ONNX model's output, which `parity` checks against onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

OP_KINDS = ("embed", "select", "window", "dense", "conv", "add", "relu", "lstm")


@dataclass
class Op:
    kind: str
    out: str
    ins: list[str]
    src: str  # module path the op came from (for comments and errors)
    params: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)


@dataclass
class Graph:
    """A lowered model. ``tensors`` maps name -> width; ``x`` and ``tokens`` are the inputs."""

    n_num: int  # numeric features per step
    window: int  # L, the sequence length the model was exported with
    vocab: int  # token vocabulary size, 0 when the model takes no tokens
    x: str
    tokens: str | None
    output: str
    tensors: dict[str, int]
    ops: list[Op]

    @property
    def n_out(self) -> int:
        return self.tensors[self.output]

    def producer(self, name: str) -> Op | None:
        return next((op for op in self.ops if op.out == name), None)

    def is_sequence_model(self) -> bool:
        """True when the output depends on earlier steps (state that streaming must carry)."""
        return any(op.kind in ("conv", "lstm") or (op.kind == "window" and op.attrs["length"] > 1) for op in self.ops)

    def receptive_field(self) -> int | None:
        """Steps that can influence an output (None: unbounded, i.e. an LSTM)."""
        if any(op.kind == "lstm" for op in self.ops):
            return None
        rf: dict[str, int] = {self.x: 1}
        if self.tokens:
            rf[self.tokens] = 1
        for op in self.ops:
            r = max(rf[i] for i in op.ins)
            if op.kind == "conv":
                r += (op.params["w"].shape[2] - 1) * op.attrs["dilation"]
            elif op.kind == "window":
                r += op.attrs["length"] - 1
            rf[op.out] = r
        return rf[self.output]


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


def causal_shift(a: np.ndarray, lag: int) -> np.ndarray:
    """a[:, t - lag] along axis 1, zeros where t - lag < 0 (causal zero padding)."""
    if lag == 0:
        return a
    out = np.zeros_like(a)
    if lag < a.shape[1]:
        out[:, lag:] = a[:, :-lag]
    return out


def run_float(g: Graph, x: np.ndarray, tokens: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Evaluate the IR in float64 over whole sequences; LSTM cell states come back as '<out>.c'."""
    x = np.asarray(x, np.float64)
    v: dict[str, np.ndarray] = {g.x: x}
    if g.tokens:
        v[g.tokens] = np.asarray(tokens, np.int64)
    for op in g.ops:
        a = [v[i] for i in op.ins]
        p = op.params
        if op.kind == "embed":
            y = p["table"].astype(np.float64)[a[0]]
        elif op.kind == "select":
            y = np.stack([v[n][..., c] for n, c in op.attrs["sources"]], axis=-1)
        elif op.kind == "window":
            n = op.attrs["length"]
            y = np.concatenate([causal_shift(a[0], n - 1 - j) for j in range(n)], axis=-1)
        elif op.kind == "dense":
            y = a[0] @ p["w"].T.astype(np.float64) + p["b"]
        elif op.kind == "conv":
            w, d = p["w"].astype(np.float64), op.attrs["dilation"]
            k = w.shape[2]
            y = sum(causal_shift(a[0], (k - 1 - j) * d) @ w[:, :, j].T for j in range(k)) + p["b"]
        elif op.kind == "add":
            y = a[0] + a[1]
        elif op.kind == "relu":
            y = a[0]
        elif op.kind == "lstm":
            y, v[op.out + ".c"] = _lstm_float(op, a[0])
        else:
            raise ValueError(f"unknown IR op {op.kind}")
        if op.kind == "relu" or op.attrs.get("relu"):
            y = np.maximum(y, 0.0)
        v[op.out] = y
    return v


def _lstm_float(op: Op, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w, r, b = (op.params[k].astype(np.float64) for k in ("w", "r", "b"))
    hid = r.shape[1]
    n, t_len, _ = xs.shape
    h, c = np.zeros((n, hid)), np.zeros((n, hid))
    hs, cs = np.zeros((n, t_len, hid)), np.zeros((n, t_len, hid))
    zx = xs @ w.T + b
    for t in range(t_len):
        z = zx[:, t] + h @ r.T
        i, o, f, gg = (z[:, k * hid : (k + 1) * hid] for k in range(4))
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(gg)
        h = sigmoid(o) * np.tanh(c)
        hs[:, t], cs[:, t] = h, c
    return hs, cs
