"""Chen et al.'s 15 can_migrate features in the kernel's integer arithmetic (the Build floor).

Python mirror of data/collect/bcc/cm_features.h, the one contract between what can_migrate_task() has at
hand and what the can_migrate model was trained on: `FIELDS` is `struct cm_fields` field by
field, `FEATURES` is `enum cm_feature` with each feature's divisor (trained value = raw /
divisor), and `raw_features` computes the same integers as `cm_features_raw()` (tests compile
the header and compare offsets, order and values). `data/can_migrate/features.py` is the float form the
model trains on; `raw_features(...) / divisor` equals it up to float32 rounding (delta_faults:
up to 2^-16).
"""

from __future__ import annotations

import numpy as np

from data.can_migrate.features import CHEN_FEATURES
from data.can_migrate.record import CM_MAX_NODES, MIGRATION_COST_NS

LOAD_DIV = 1000
FAULTS_SHIFT = 16

# struct cm_fields, in order: (name, numpy type)
FIELDS: tuple[tuple[str, str], ...] = (
    ("delta_ns", "<i8"),
    ("src_load", "<u8"),
    ("dst_load", "<u8"),
    ("total_numa_faults", "<u8"),
    ("src_faults", "<u8"),
    ("dst_faults", "<u8"),
    ("src_node", "<i4"),
    ("dst_node", "<i4"),
    ("numa_preferred_nid", "<i4"),
    ("src_nr_running", "<u4"),
    ("dst_nr_running", "<u4"),
    ("src_nr_preferred_running", "<u4"),
    ("nr_balance_failed", "<u4"),
    ("cache_nice_tries", "<u4"),
    ("cpu_idle", "u1"),
    ("cpu_not_idle", "u1"),
    ("cpu_newly_idle", "u1"),
    ("buddy_hot", "u1"),
    ("_pad", "<u4"),
)
FIELDS_DTYPE = np.dtype(list(FIELDS))

# enum cm_feature: (name, divisor); names and order are CHEN_FEATURES
DIVISOR = {"src_load": LOAD_DIV, "dst_load": LOAD_DIV, "delta_faults": 1 << FAULTS_SHIFT}
FEATURES: tuple[tuple[str, int], ...] = tuple((n, DIVISOR.get(n, 1)) for n in CHEN_FEATURES)


def contract_divisors(columns: list[str]) -> list[int] | None:
    """Divisor of each input column if every column (bar the constant `valid`) is a Chen
    feature, i.e. the model reads the can_migrate contract; None for any other input set."""
    known = dict(FEATURES)
    cols = [c for c in columns if c != "valid"]
    if not cols or any(c not in known for c in cols):
        return None
    return [known.get(c, 1) for c in columns]


def fields_from_records(df) -> np.ndarray:
    """Decoded records (`cm_record.records_frame`) -> struct cm_fields array, as
    cm_fields_from_record() fills it (a node outside 0..CM_MAX_NODES-1 has no faults)."""
    out = np.zeros(len(df), FIELDS_DTYPE)
    for name, _ in FIELDS:
        if name in df and name != "_pad":
            out[name] = df[name].to_numpy()
    for side in ("src", "dst"):
        node = df[f"{side}_node"].to_numpy()
        faults = np.zeros(len(df), np.uint64)
        for k in range(CM_MAX_NODES):
            col = f"numa_faults_{k}"
            if col in df:
                faults = np.where(node == k, df[col].to_numpy(np.uint64), faults)
        out[f"{side}_faults"] = faults
    return out


def _delta_faults_q16(f: np.ndarray) -> np.ndarray:
    """cm_delta_faults_q16(): |dst - src| capped at 2^46, shifted, divided toward zero."""
    src, dst = f["src_faults"].astype(np.uint64), f["dst_faults"].astype(np.uint64)
    total = f["total_numa_faults"].astype(np.uint64)
    total = np.where(total == 0, np.uint64(1), total)
    hi = np.minimum(np.where(dst > src, dst - src, src - dst), np.uint64(1 << 46))
    q = ((hi << np.uint64(FAULTS_SHIFT)) // total).astype(np.int64)
    return np.where(dst > src, q, -q)


def raw_features(f: np.ndarray) -> np.ndarray:
    """cm_features_raw() over a struct cm_fields array -> int64 (N, 15), CHEN_FEATURES order."""

    def s64(name):  # every field fits s64
        return f[name].astype(np.int64)

    cols = {
        "src_non_pref_nr": s64("src_nr_running") > s64("src_nr_preferred_running"),
        "delta_hot": f["delta_ns"] < MIGRATION_COST_NS,
        "cpu_idle": s64("cpu_idle"),
        "cpu_not_idle": s64("cpu_not_idle"),
        "cpu_newly_idle": s64("cpu_newly_idle"),
        "same_node": f["src_node"] == f["dst_node"],
        "prefer_src": f["numa_preferred_nid"] == f["src_node"],
        "prefer_dst": f["numa_preferred_nid"] == f["dst_node"],
        "src_len": s64("src_nr_running") - 2,
        "src_load": f["src_load"].view(np.int64),
        "dst_load": f["dst_load"].view(np.int64),
        "dst_len": s64("dst_nr_running"),
        "delta_faults": _delta_faults_q16(f),
        "extra_fails": f["nr_balance_failed"] > f["cache_nice_tries"],
        "buddy_hot": s64("buddy_hot"),
    }
    return np.stack([np.asarray(cols[n]).astype(np.int64) for n, _ in FEATURES], axis=1)
