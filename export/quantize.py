"""Calibration and power-of-two quantization of the streaming IR.

Number format (documented once, used by intref and the C generator):
  * every tensor value v is stored as the integer round(v * 2^frac) with one `frac` per tensor
    (power-of-two scale, per tensor); activations are int16 (saturated to [-32768, 32767]); the
    model output is int32 (saturated to the s32 range);
  * weights are int16 with their own per-tensor frac, chosen so the largest |w| fits (no weight
    ever saturates); biases are int64 at the accumulator's frac (weight frac + input frac);
  * products and sums accumulate exactly in int64 and are brought to the output frac by ONE
    rounding mode, round-half-up: rshr(v, s) = (v + 2^(s-1)) >> s with an arithmetic shift,
    i.e. floor(v / 2^s + 1/2): ties go towards +inf for both signs (2.5 -> 3, -2.5 -> -2);
    s == 0 is the identity and s < 0 is an exact multiplication by 2^-s;
  * every saturation is counted (by tensor) in the integer reference;
  * activation fracs come from calibration: frac = floor(log2(32767 / max|v|)) over the float
    model run on the calibration (training) windows, clamped to [FRAC_MIN, FRAC_MAX] and lowered
    where an op needs a non-negative shift;
  * LSTM: gate pre-activations are int16 at GATE_FRAC = 12, i.e. the int16 range is exactly the
    table domain [-8, 8) and clamping to it is a saturation counted apart (`gate_clamp`, expected,
    not an overflow); sigmoid and tanh come from 257-entry tables over [-8, 8] (step 1/16) in Q15
    with linear interpolation on the low 8 bits; the cell state c is int16 at a calibrated frac.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from export.ir import Graph, run_float, sigmoid

ACT_BITS = 16
OUT_BITS = 32
W_BITS = 16
FRAC_MIN, FRAC_MAX = -16, 24
OUT_FRAC_BITS_RULE = 24  # the int32 output keeps 8 bits of headroom over its calibrated range
GATE_FRAC = 12
TABLE_INTERVALS = 256  # over [-8, 8): index = top 8 bits of (z + 2^15), interpolation = low 8 bits
TABLE_SHIFT = 16 - 8
GATE_ONE = 15  # sigmoid / tanh outputs are Q15


def frac_for(r: float, bits: int = ACT_BITS) -> int:
    """Largest frac with r * 2^frac <= 2^(bits-1) - 1, clamped to [FRAC_MIN, FRAC_MAX]."""
    if not r > 0:
        return FRAC_MAX
    return int(np.clip(np.floor(np.log2((2 ** (bits - 1) - 1) / r)), FRAC_MIN, FRAC_MAX))


def qround(v: np.ndarray, frac: int) -> np.ndarray:
    """round-half-up of v * 2^frac, as int64 (the float side of the same rounding mode)."""
    return np.floor(np.asarray(v, np.float64) * 2.0**frac + 0.5).astype(np.int64)


def act_table(fn) -> np.ndarray:
    """Q15 samples of fn at -8 + i/16, i = 0..256 (int64; 32768 == 1.0 fits the C s32 table)."""
    z = -8.0 + np.arange(TABLE_INTERVALS + 1) * (16.0 / TABLE_INTERVALS)
    return qround(fn(z), GATE_ONE)


@dataclass
class QTensor:
    name: str
    width: int
    frac: int
    bits: int = ACT_BITS


@dataclass
class QOp:
    kind: str
    out: str
    ins: list[str]
    src: str
    p: dict[str, np.ndarray] = field(default_factory=dict)  # integer parameters
    a: dict = field(default_factory=dict)  # shifts, flags, shapes


@dataclass
class QModel:
    graph: Graph
    ranges: dict[str, float]
    tensors: dict[str, QTensor]
    ops: list[QOp]
    tables: dict[str, np.ndarray]
    weight_saturation: dict[str, int] = field(default_factory=dict)
    encoder: object = None  # export.encode.Encoder when the feature transforms are known

    def scales(self) -> dict:
        """Every chosen frac, in the form `quantize(..., pinned=)` accepts."""
        weights = {op.out: {k: op.a[k] for k in ("wfrac", "rfrac", "cfrac") if k in op.a} for op in self.ops}
        return {
            "tensors": {n: t.frac for n, t in self.tensors.items()},
            "weights": {k: v for k, v in weights.items() if v},
        }

    @property
    def in_frac(self) -> int:
        return self.tensors[self.graph.x].frac

    @property
    def out_frac(self) -> int:
        return self.tensors[self.graph.output].frac

    @property
    def n_in(self) -> int:
        return self.graph.n_num + (1 if self.graph.tokens else 0)

    def macs(self) -> int:
        """Multiply-accumulates per step (table lookups count as one each)."""
        n = 0
        for op in self.ops:
            if op.kind in ("dense", "conv"):
                n += op.p["w"].size
            elif op.kind == "lstm":
                n += op.p["w"].size + op.p["r"].size + 4 * op.p["r"].shape[1]
        return n

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """What the caller puts in in[0..n_num-1]: round-half-up(x * 2^in_frac), clipped to s32."""
        return np.clip(qround(x, self.in_frac), -(2**31), 2**31 - 1)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, np.float64) / 2.0**self.out_frac


def calibrate(g: Graph, batches: Iterable[tuple[np.ndarray, np.ndarray | None]]) -> dict[str, float]:
    """max |value| of every IR tensor (and LSTM cell state) over the float model on `batches`."""
    ranges: dict[str, float] = {}
    for x, tok in batches:
        for name, v in run_float(g, x, tok).items():
            if name != g.tokens:
                ranges[name] = max(ranges.get(name, 0.0), float(np.abs(v).max()) if v.size else 0.0)
    if not ranges:
        raise ValueError("calibration data is empty")
    return ranges


def quantize(g: Graph, ranges: dict[str, float], pinned: dict | None = None, headroom: int = 0) -> QModel:
    """Choose every frac and quantize every parameter (see the module docstring).

    `pinned` (a previous export's `QModel.scales()`) fixes every frac instead of deriving it, so
    new weights of the same architecture produce the same SLM_ARCH_HASH and their blob can be
    loaded into a module built with the old header; weights that no longer fit their pinned
    int16 frac saturate and are counted in `QModel.weight_saturation`. `headroom` bits are
    left above every calibrated activation range (values beyond the training maximum)."""
    calibrated, ranges = ranges, {k: v * 2.0**headroom for k, v in ranges.items()}
    pin_t = (pinned or {}).get("tensors", {})
    pin_w = (pinned or {}).get("weights", {})
    t: dict[str, QTensor] = {g.x: QTensor(g.x, g.tensors[g.x], pin_t.get(g.x, frac_for(ranges[g.x])))}
    if g.tokens:
        t[g.tokens] = QTensor(g.tokens, 1, 0)
    ops: list[QOp] = []
    tables: dict[str, np.ndarray] = {}
    wsat: dict[str, int] = {}

    def weights(name: str, key: str, w: np.ndarray, frac: int | None = None) -> tuple[np.ndarray, int]:
        f = pin_w.get(name, {}).get(key, frac if frac is not None else frac_for(float(np.abs(w).max()), W_BITS))
        qw = qround(w, f)
        n = int(np.count_nonzero((qw < -(2 ** (W_BITS - 1))) | (qw > 2 ** (W_BITS - 1) - 1)))
        if n:
            wsat[f"{name}.{key}"] = n
        return np.clip(qw, -(2 ** (W_BITS - 1)), 2 ** (W_BITS - 1) - 1), f

    for op in g.ops:
        width = g.tensors[op.out]
        is_out = op.out == g.output
        want = pin_t.get(op.out, frac_for(ranges[op.out], OUT_FRAC_BITS_RULE if is_out else ACT_BITS))
        bits = OUT_BITS if is_out else ACT_BITS
        fin = [t[i].frac for i in op.ins]
        q = QOp(op.kind, op.out, list(op.ins), op.src, a={"relu": bool(op.attrs.get("relu"))})
        if op.kind == "embed":
            q.p["table"], fo = weights(
                op.out, "wfrac", op.params["table"], frac_for(float(np.abs(op.params["table"]).max()))
            )
            q.a["wfrac"] = fo
        elif op.kind == "select":
            src_frac = {n: t[n].frac for n in op.ins}
            fo = min([want] + list(src_frac.values()))
            q.a["sources"] = [(n, c, src_frac[n] - fo) for n, c in op.attrs["sources"]]
        elif op.kind in ("window", "relu"):
            fo = fin[0]
            q.a.update(op.attrs)
        elif op.kind in ("dense", "conv"):
            q.p["w"], fw = weights(op.out, "wfrac", op.params["w"])
            facc = fw + fin[0]
            fo = min(want, facc)
            q.p["b"] = qround(op.params["b"], facc)
            q.a.update(op.attrs, wfrac=fw, shift=facc - fo)
        elif op.kind == "add":
            fo = min([want] + fin)
            q.a["shifts"] = [f - fo for f in fin]
        elif op.kind == "lstm":
            fo = _quantize_lstm(op, q, fin[0], ranges, pin_t, pin_w.get(op.out, {}), weights)
            tables = {"sigmoid": act_table(sigmoid), "tanh": act_table(np.tanh)}
        else:
            raise ValueError(f"unknown IR op {op.kind}")
        if op.kind in ("dense", "conv", "lstm") and np.abs(q.p["b"]).max(initial=0) >= 2**62:
            raise ValueError(f"bias of {op.src} does not fit int64 at its accumulator frac")
        t[op.out] = QTensor(op.out, width, fo, bits)
        ops.append(q)
    if g.producer(g.output).kind != "dense":
        raise ValueError("the model output must come from a Linear head")
    return QModel(g, calibrated, t, ops, tables, wsat)


def _quantize_lstm(op, q: QOp, fx: int, ranges, pin_t: dict, pin: dict, weights) -> int:
    """Fracs of one LSTM layer: h and c calibrated, W and R aligned to one accumulator frac."""
    w, r = op.params["w"], op.params["r"]
    fh = pin_t.get(op.out, frac_for(ranges[op.out]))
    fc = pin.get("cfrac", min(frac_for(ranges[op.out + ".c"]), 2 * GATE_ONE))
    facc = min(frac_for(float(np.abs(w).max()), W_BITS) + fx, frac_for(float(np.abs(r).max()), W_BITS) + fh)
    q.p["w"], fw = weights(op.out, "wfrac", w, facc - fx)
    q.p["r"], fr = weights(op.out, "rfrac", r, facc - fh)
    if fw + fx != fr + fh:
        raise ValueError(f"pinned LSTM fracs of {op.out} are inconsistent")
    q.p["b"] = qround(op.params["b"], fw + fx)
    q.a.update(
        wfrac=fw,
        rfrac=fr,
        zshift=fw + fx - GATE_FRAC,
        cfrac=fc,
        cshift=fc - GATE_FRAC,
        igshift=2 * GATE_ONE - fc,
        hshift=2 * GATE_ONE - fh,
        hidden=r.shape[1],
    )
    return fh
