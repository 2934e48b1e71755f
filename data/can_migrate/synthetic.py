"""Singh's distillation as a data source: Chen's 15 features drawn from stated distributions and
labelled by the kernel's own rule (data/can_migrate/rule.py, the code of the `kernel_rule` baseline).

SYNTHETIC rows, not records: nothing here comes from a kernel. They exist to measure what
training on the rule alone buys on real records (`python train.py task=can_migrate
data=synthetic`). Distributions (all in `SyntheticSpec`, set from conf/data/synthetic.yaml):
binary flags Bernoulli(flag_p); the balancing CPU's idle type uniform over idle / not idle /
newly idle (a one-hot, as in records); src_len and dst_len Gaussian, rounded and clipped to
0..55; src_load and dst_load exponential (in Chen's units of 1000 load); delta_faults uniform
integers in faults_low..faults_high; with probability numa_p a row sits on a NUMA domain with
NUMA faults (so migrate_degrades_locality() takes part), else the rule's defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from data.can_migrate.features import CHEN_FEATURES, FORCED, LABEL
from data.can_migrate.rule import RULE_CONTEXT, kernel_verdict

FLAGS = ("src_non_pref_nr", "delta_hot", "same_node", "prefer_src", "prefer_dst", "extra_fails", "buddy_hot")
IDLE_TYPES = ("cpu_idle", "cpu_not_idle", "cpu_newly_idle")
RUN_ID = "synthetic"


@dataclass(frozen=True)
class SyntheticSpec:
    rows: int = 100_000
    seed: int = 0
    flag_p: float = 0.5
    length_mean: float = 4.0
    length_std: float = 4.0
    length_max: int = 55
    load_mean: float = 1.0
    faults_low: int = 0
    faults_high: int = 10
    numa_p: float = 0.0

    def __post_init__(self):
        if self.rows < 1:
            raise ValueError(f"synthetic.rows must be >= 1, got {self.rows}")
        for name in ("flag_p", "numa_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"synthetic.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.length_std < 0 or self.load_mean <= 0 or self.faults_high < self.faults_low:
            raise ValueError(f"synthetic: bad distribution parameters {asdict(self)}")

    def to_dict(self) -> dict:
        return asdict(self)


def synthetic_table(spec: SyntheticSpec) -> pd.DataFrame:
    """`spec.rows` rows shaped like the can_migrate table (one run `synthetic`, one dst CPU)."""
    rng = np.random.default_rng(spec.seed)
    n = spec.rows
    df = pd.DataFrame(
        {
            "run_id": RUN_ID,
            "workload": RUN_ID,
            "category": RUN_ID,
            "ts": np.arange(n, dtype=np.int64),
            "cpu": 0,
            "src_cpu": 1,
            "dst_cpu": 0,
            "pid": 0,
        }
    )
    for f in FLAGS:
        df[f] = (rng.random(n) < spec.flag_p).astype(np.float32)
    idle = rng.integers(0, len(IDLE_TYPES), n)
    for k, f in enumerate(IDLE_TYPES):
        df[f] = (idle == k).astype(np.float32)
    for f in ("src_len", "dst_len"):
        x = np.rint(rng.normal(spec.length_mean, spec.length_std, n))
        df[f] = np.clip(x, 0, spec.length_max).astype(np.float32)
    for f in ("src_load", "dst_load"):
        df[f] = rng.exponential(spec.load_mean, n).astype(np.float32)
    df["delta_faults"] = rng.integers(spec.faults_low, spec.faults_high + 1, n).astype(np.float32)
    for c, default in RULE_CONTEXT.items():
        df[c] = np.int8(default)
    numa = rng.random(n) < spec.numa_p
    df["sd_numa"] = numa.astype(np.int8)
    df["numa_faults"] = numa.astype(np.int8)
    df[LABEL], df[FORCED] = kernel_verdict(df)
    df["forced_kernel"] = df[FORCED]
    df["delta_ns"] = np.where(df["delta_hot"] != 0, 0, 10**9).astype(np.int64)
    assert all(c in df for c in CHEN_FEATURES)
    return df
