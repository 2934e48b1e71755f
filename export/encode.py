"""Integer feature encoder: raw kernel values -> the model's fixed-point inputs (`<p>_encode`).

Training feeds the net standardised transforms of decision-table columns (data/dataset/encoding.py:
identity, flag, onehot, log1p_us; then (v - mean) / std; plus the constant `valid` channel).
The kernel has raw integers, so the export also generates their integer version:

    <p>_encode(p, raw, in): raw[j] (s64) is the raw value of the column input j reads (each
    one-hot input gets the same column value; the `valid` input ignores raw); raw[TOKEN_INDEX]
    is passed through. The result in[] is ready for <p>_step().

Per input j, with F = SLM_IN_FRAC_BITS, ENC_SHIFT = 16 and a_j, b_j s64 in struct <p>_params
(they come from the training statistics, so a reloaded blob carries its own):
  identity  v = clamp(raw, +-2^24);            in = sat32(rshr(v * a - b, 16))
            a = round(2^(F+16) / (std * d)), b = round(mean * 2^(F+16) / std)
            d = 1, except for the can_migrate contract (data/can_migrate/int_features.py): the kernel
            computes loads and delta_faults as integers that are d times the trained value
  log1p_us  L = log2(clamp(raw, 0, 2^62) + 1000) in Q16 (exponent + 257-entry table of
            log2(1 + i/256) with linear interpolation on the next 8 mantissa bits);
            in = sat32(rshr(L * a - b, 32)), a = round(ln2 / std * 2^(F+16)),
            b = round((ln 1000 + mean) / std * 2^(F+32))      [ln(1 + ns/1000) = ln(ns+1000) - ln 1000]
  flag      in = raw != 0 ? a : b              (a, b = the standardised 1 and 0)
  onehot    in = raw == value ? a : b          (a non-integer value: raw != 0, the caller compares)
  valid     in = a = 2^F                       (a real step; window padding is all zeros)
`encode_ref` is the exact numpy reference; `encode_float` the training transform, for the error.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field

import numpy as np

from data.can_migrate.int_features import contract_divisors
from export.intref import rshr
from export.quantize import qround

ENC_SHIFT = 16
LOG_SHIFT = 32  # L is Q16, so a carries 16 more bits: a coarser a costs ~20 LSB at L ~ 40
IDENTITY_CLAMP = 1 << 24
NS_CLAMP = 1 << 62
LOG_TABLE = qround(np.log2(1.0 + np.arange(257) / 256.0), 16)  # Q16
S32 = (-(1 << 31), (1 << 31) - 1)


@dataclass
class Encoder:
    kinds: list[str]  # per numeric input: identity | log1p_us | flag | onehot | valid
    values: list[int | None]  # onehot comparison value (None: raw is the comparison result)
    a: np.ndarray  # s64 per input
    b: np.ndarray
    names: list[str]
    columns: list[str] = field(default_factory=list)  # the table column each input reads ("valid")
    divisors: list[int] = field(default_factory=list)  # trained value = raw / divisor (identity)

    def divisor(self, j: int) -> int:
        return self.divisors[j] if self.divisors else 1

    @property
    def layout_hash(self) -> int:
        """zlib crc32 of the input names joined by "," (model.h's <P>_IN_LAYOUT_HASH)."""
        return layout_hash(self.names)

    def describe(self) -> list:
        """The architectural part (what the generated code hard-codes), for the arch hash. The
        input names are part of it: a blob trained on other features must not validate."""
        return [[n, k, v] for n, k, v in zip(self.names, self.kinds, self.values, strict=False)]


def _int_value(v) -> int | None:
    try:
        return int(v) if float(v) == int(v) else None
    except (TypeError, ValueError):
        return None


def column_divisors(columns: list[str], contract: bool) -> list[int]:
    """Trained value = raw / divisor per column. Every column a Chen feature: the contract's
    divisors. `contract` (a can_migrate model): Chen columns keep theirs beside other columns
    (per-task inputs, extended ones), which have no divisor (1)."""
    whole = contract_divisors(columns)
    if whole is not None or not contract:
        return whole or [1] * len(columns)
    return [(contract_divisors([c]) or [1])[0] for c in columns]


def unencodable(features: dict, contract: bool) -> list[str]:
    """Inputs the integer encoder cannot compute exactly from a raw kernel integer, each as
    "name: why" (empty: <p>_encode is exact up to its rounding). With `contract` (the
    can_migrate table, whose other columns hold scaled floats: util_avg / 1024, vruntime_lag in
    ms, ratios) an `identity` input must be a Chen column of the integer contract
    (data/can_migrate/int_features.py); flags, one-hots and log1p_us of ns read any integer."""
    out = []
    for s in features["specs"]:
        t = s["transform"]
        if t not in ("identity", "log1p_us", "flag", "onehot"):
            out.append(f"{s['name']}: transform {t!r} has no integer encoder")
        elif t == "identity" and contract and contract_divisors([s["column"]]) is None:
            out.append(f"{s['name']}: identity of column {s['column']}, which has no integer contract")
    return out


def make_encoder(features: dict, in_frac: int, n_num: int, contract: bool = False) -> Encoder:
    """From checkpoint metadata: {"specs": FeatureSpec dicts, "mean", "std", "names"};
    `contract`: a can_migrate model (column_divisors). Call unencodable() first: an input it
    names would be encoded from a number the kernel does not have."""
    specs, mean, std = features["specs"], features["mean"], features["std"]
    kinds, values, a, b = [], [], [], []
    scale = 2.0**in_frac
    divisors = column_divisors([s["column"] for s in specs], contract)
    for s, m, sd, d in zip(specs, mean, std, divisors, strict=False):
        t = s["transform"]
        if t == "identity":
            a.append(qround(2.0 ** (in_frac + ENC_SHIFT) / (sd * d), 0))
            b.append(qround(m * 2.0 ** (in_frac + ENC_SHIFT) / sd, 0))
        elif t == "log1p_us":
            a.append(qround(math.log(2.0) / sd * 2.0 ** (in_frac + LOG_SHIFT - 16), 0))
            b.append(qround((math.log(1000.0) + m) / sd * 2.0 ** (in_frac + LOG_SHIFT), 0))
        elif t in ("flag", "onehot"):
            a.append(qround((1.0 - m) / sd * scale, 0))
            b.append(qround((0.0 - m) / sd * scale, 0))
        else:
            raise ValueError(f"feature {s['name']}: transform {t!r} has no integer encoder")
        kinds.append(t)
        values.append(_int_value(s.get("value")) if t == "onehot" else None)
    names = list(features["names"])
    for name in names[len(specs) : n_num]:
        if name != "valid":
            raise ValueError(f"input {name!r} has no feature spec")
        kinds.append("valid")
        values.append(None)
        a.append(qround(scale, 0))
        b.append(0)
    if len(kinds) != n_num:
        raise ValueError(f"{len(kinds)} encoded inputs for a model with {n_num}")
    a, b = np.array(a, np.int64), np.array(b, np.int64)
    # |v| <= 2^24 (identity) or L < 2^22 (log): products stay below 2^61 with these bounds
    if np.abs(a).max() >= 1 << 37 or np.abs(b).max() >= 1 << 61:
        raise ValueError("feature statistics too extreme for the integer encoder (std too small?)")
    columns = [s["column"] for s in specs] + ["valid"] * (n_num - len(specs))
    return Encoder(kinds, values, a, b, names[:n_num], columns, divisors + [1] * (n_num - len(specs)))


def layout_hash(names: list[str]) -> int:
    """The input layout's identity: zlib crc32 of the names joined by ","."""
    return zlib.crc32(",".join(names).encode())


def log2_q16(n: np.ndarray) -> np.ndarray:
    """log2(n) in Q16 for int64 n >= 1: exponent by binary search, mantissa by table."""
    n = np.asarray(n, np.int64)
    k = np.zeros_like(n)
    v = n.copy()
    for step in (32, 16, 8, 4, 2, 1):
        big = (v >> step) != 0
        v = np.where(big, v >> step, v)
        k = k + np.where(big, step, 0)
    m = np.where(k >= 16, n >> np.maximum(k - 16, 0), n << np.maximum(16 - k, 0))  # [2^16, 2^17)
    i, fr = (m >> 8) & 255, m & 255
    return (k << 16) + LOG_TABLE[i] + rshr((LOG_TABLE[i + 1] - LOG_TABLE[i]) * fr, 8)


def encode_ref(enc: Encoder, raw: np.ndarray, has_token: bool) -> np.ndarray:
    """Exact integer encoding of raw (N, n_in) int64 -> in[] (N, n_in)."""
    raw = np.asarray(raw, np.int64)
    out = np.zeros_like(raw)
    for j, (kind, val) in enumerate(zip(enc.kinds, enc.values, strict=False)):
        r = raw[:, j]
        if kind == "identity":
            v = rshr(np.clip(r, -IDENTITY_CLAMP, IDENTITY_CLAMP) * enc.a[j] - enc.b[j], ENC_SHIFT)
        elif kind == "log1p_us":
            v = rshr(log2_q16(np.clip(r, 0, NS_CLAMP) + 1000) * enc.a[j] - enc.b[j], LOG_SHIFT)
        elif kind == "valid":
            v = np.full_like(r, enc.a[j])
        else:
            cond = (r != 0) if val is None else (r == val)
            v = np.where(cond, enc.a[j], enc.b[j])
        out[:, j] = np.clip(v, *S32)
    if has_token:
        out[:, -1] = np.clip(raw[:, -1], *S32)
    return out


def encode_float(enc: Encoder, features: dict, raw: np.ndarray) -> np.ndarray:
    """The training transform + standardisation in float64 (numeric inputs only)."""
    raw = np.asarray(raw, np.float64)
    out = np.zeros((len(raw), len(enc.kinds)))
    for j, (kind, val) in enumerate(zip(enc.kinds, enc.values, strict=False)):
        r = raw[:, j]
        if kind == "valid":
            out[:, j] = 1.0
            continue
        v = {
            "identity": r / enc.divisor(j),
            "log1p_us": np.log1p(np.clip(r, 0, None) / 1000.0),
            "flag": (r != 0) * 1.0,
            "onehot": ((r != 0) if val is None else (r == val)) * 1.0,
        }[kind]
        out[:, j] = (v - features["mean"][j]) / features["std"][j]
    return out


def random_raw(enc: Encoder, n: int, rng: np.random.Generator, vocab: int = 0, wild: float = 0.5) -> np.ndarray:
    """Raw inputs for the checks: plausible kernel values, and a `wild` share of any s64 value."""
    cols = []
    for j, (kind, val) in enumerate(zip(enc.kinds, enc.values, strict=False)):
        if kind == "log1p_us":
            c = np.exp(rng.uniform(0, np.log(1e12), n)).astype(np.int64)
        elif kind == "identity":
            c = np.clip(rng.integers(-1, 300, n) * enc.divisor(j), -IDENTITY_CLAMP, IDENTITY_CLAMP)
        else:
            c = rng.integers(0, 3 if val is None else val + 2, n)
        cols.append(np.where(rng.random(n) < wild, rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64), c))
    if vocab:
        cols.append(rng.integers(-2, vocab + 2, n))
    return np.stack(cols, axis=1)


def check(
    enc: Encoder, features: dict, in_frac: int, rng: np.random.Generator, vocab: int = 0, n: int = 20000
) -> tuple[np.ndarray, dict]:
    """Raw rows for the C comparison, and the integer encoder's error against the float transform
    on plausible rows (in LSB of in[] and in standardised units)."""
    plausible = random_raw(enc, n, rng, vocab, wild=0.0)
    err = np.abs(
        encode_ref(enc, plausible, bool(vocab))[:, : len(enc.kinds)]
        - encode_float(enc, features, plausible) * 2.0**in_frac
    )
    return np.concatenate([plausible, random_raw(enc, n, rng, vocab)]), {
        "max_error_lsb": float(err.max()),
        "max_error": float(err.max() / 2.0**in_frac),
    }
