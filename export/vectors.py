"""Test vectors: streams of integer inputs with the integer reference's expected outputs.

A vector is one step (in[N_IN] -> out[N_OUT]); a stream is a run of steps from reset. Three
sources: held-out data (float windows quantized as the caller would), random inputs (around the
calibrated range, across the whole s16 range and beyond it) and saturation extremes (s16 and s32
limits, out-of-range tokens). The binary format is the one export/harness/harness.c reads.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from export.intref import IntRef, Stream
from export.quantize import QModel

VEC_MAGIC = 0x564D4C53  # "SLMV"
S32_MIN, S32_MAX = -(2**31), 2**31 - 1


@dataclass
class StreamSet:
    """Equal-length streams: inputs (S, T, n_in) int64, expected outputs (S, T, n_out)."""

    name: str
    inputs: np.ndarray
    expected: np.ndarray | None = None

    @property
    def steps(self) -> int:
        return self.inputs.shape[0] * self.inputs.shape[1]


def pack_inputs(q: QModel, x_int: np.ndarray, tok: np.ndarray | None) -> np.ndarray:
    """(S, T, n_num) numeric + (S, T) tokens -> (S, T, n_in) in[] rows."""
    return np.concatenate([x_int, tok[..., None]], -1) if q.graph.tokens else x_int


def expected(q: QModel, ss: StreamSet, ref: IntRef | None = None) -> StreamSet:
    """Fill in the streaming integer reference's outputs."""
    n_num = q.graph.n_num
    x, tok = ss.inputs[..., :n_num], (ss.inputs[..., n_num] if q.graph.tokens else None)
    ss.expected = Stream(ref or IntRef(q), ss.inputs.shape[0]).run(x, tok)
    return ss


def held_out(q: QModel, x: np.ndarray, tok: np.ndarray | None, name: str = "held_out") -> StreamSet:
    """Data windows (N, L, F) float, each replayed as a stream of L steps from reset."""
    return StreamSet(name, pack_inputs(q, q.quantize_input(x), None if tok is None else np.asarray(tok)))


def random_streams(q: QModel, n: int, steps: int, rng: np.random.Generator) -> StreamSet:
    """Random inputs: a third near the calibrated range, a third uniform over s16, a third
    uniform over a range 16x wider than s16 (input saturation); tokens include invalid ids."""
    shape = (n, steps, q.graph.n_num)
    r = q.ranges[q.graph.x] * 2.0**q.in_frac
    part = rng.integers(0, 3, size=(n, 1, 1))
    x = np.where(
        part == 0,
        np.round(rng.normal(0, max(r, 1.0) / 3, shape)),
        np.where(part == 1, rng.integers(-32768, 32768, shape), rng.integers(-(2**19), 2**19, shape)),
    )
    tok = rng.integers(-2, q.graph.vocab + 2, size=(n, steps)) if q.graph.tokens else None
    return StreamSet("random", pack_inputs(q, x.astype(np.int64), tok))


def extreme_streams(q: QModel, steps: int, rng: np.random.Generator) -> StreamSet:
    """Constant and alternating s16 / s32 limits, random signs at the limits, bad tokens."""
    lims = np.array([32767, -32768, S32_MAX, S32_MIN, 0, 32768, -32769])
    rows = [np.full(steps, v) for v in lims]
    rows += [np.where(np.arange(steps) % 2, a, b) for a, b in ((32767, -32768), (S32_MAX, S32_MIN))]
    base = np.stack(rows)  # (S0, steps)
    x = np.repeat(base[:, :, None], q.graph.n_num, axis=2)
    signs = rng.choice(lims[:4], size=(16, steps, q.graph.n_num))
    x = np.concatenate([x, signs])
    tok = None
    if q.graph.tokens:
        tok = rng.choice(np.array([-1, 0, q.graph.vocab - 1, q.graph.vocab, S32_MAX, S32_MIN]), size=x.shape[:2])
    return StreamSet("extremes", pack_inputs(q, x.astype(np.int64), tok))


def write_vectors(path, sets: list[StreamSet]) -> None:
    """One vector file holding every stream of `sets`, in order (harness format)."""
    lengths = [s.inputs.shape[1] for s in sets for _ in range(s.inputs.shape[0])]
    n_in = sets[0].inputs.shape[2]
    total = sum(lengths)
    with open(path, "wb") as f:
        f.write(struct.pack("<IIII", VEC_MAGIC, len(lengths), n_in, total))
        f.write(np.asarray(lengths, "<u4").tobytes())
        for s in sets:
            f.write(np.clip(s.inputs, S32_MIN, S32_MAX).astype("<i4").tobytes())


def read_vectors(path) -> np.ndarray:
    """All inputs of a vector file as (total_steps, n_in) int64."""
    raw = open(path, "rb").read()
    magic, n_streams, n_in, total = struct.unpack_from("<IIII", raw)
    if magic != VEC_MAGIC:
        raise ValueError(f"{path} is not a vector file")
    return np.frombuffer(raw, "<i4", offset=16 + 4 * n_streams).astype(np.int64).reshape(total, n_in)


def expected_outputs(sets: list[StreamSet]) -> np.ndarray:
    """(total_steps, n_out) in file order."""
    return np.concatenate([s.expected.reshape(-1, s.expected.shape[-1]) for s in sets])
