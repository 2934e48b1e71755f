"""SYNTHETIC test fixture: a tiny dataset directory with the layout data.dataset.build writes
(plus can_migrate/<split>.parquet of bcc records, the layout CanMigrateDataModule reads).

Nothing here comes from a kernel trace. Rows are drawn from simple random rules (so that a model
has something learnable) with the exact columns and dtypes of data.dataset.replay's decision tables, so
the training stack can be tested without the shipped dataset and in a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from data.can_migrate.record import CM_MAGIC, RECORD_DTYPE, RECORD_SIZE, records_frame
from data.dataset.build import CANDIDATES, CANDIDATES_TABLE, candidates_file
from data.dataset.splits import split_runs
from data.dataset.tables import (
    BALANCER_LABEL,
    CANDIDATE_COLUMNS,
    CANDIDATE_TYPES,
    MIGRATION_COLUMNS,
    MIGRATION_FEATURES,
    MIGRATION_STATE_FEATURES,
    NEXT_TASK_COLUMNS,
    STATE_FEATURE_TYPES,
)

# run_id -> (workload, category); "unseen" is the held-out category. Splits follow data.dataset.build
# (data/dataset/splits.py): gamma -> test_unseen; alpha-r04, beta-r01 -> test_seen; the rest -> train.
# A DataModule's default validation (val_category auto = cpu, the first category after
# "unseen" in sorted cyclic order; val_runs 1) then takes beta-r00 and alpha-r03 out of train.
RUNS = {
    "alpha-r00": ("alpha", "msg"),
    "alpha-r01": ("alpha", "msg"),
    "alpha-r02": ("alpha", "msg"),
    "alpha-r03": ("alpha", "msg"),
    "alpha-r04": ("alpha", "msg"),
    "beta-r00": ("beta", "cpu"),
    "beta-r01": ("beta", "cpu"),
    "gamma-r00": ("gamma", "unseen"),
    "gamma-r01": ("gamma", "unseen"),
}
UNSEEN = ["unseen"]
# Per workload, the run values a data.shift or data.where can use (the builder's load_pct and
# topology columns), chosen so that the defaults of conf/experiment/can_migrate_load_shift.yaml
# (test 50%) and loco_can_migrate_numa.yaml (2x2x2 runs only) keep gamma as test_unseen.
LOAD_PCT = {"alpha": 100, "beta": 200, "gamma": 50}
TOPOLOGY = {"alpha": "2x2x2", "beta": "flat4", "gamma": "2x2x2"}


def _state_features(kind: np.ndarray, src_nr: np.ndarray, other_idle: np.ndarray, since: np.ndarray) -> dict:
    """MIGRATION_STATE_FEATURES of the synthetic rows (tables.STATE_FEATURE_TYPES)."""
    preempt = kind == 1
    values = {
        "waker_cpu_nr_running": np.where(preempt, -1, src_nr),
        "waker_flips": np.where(preempt, -1, src_nr * 3),
        "wakee_flips": src_nr + 1,
        "last_run_ns": since // 2,
        "idle_smt": 0,
        "idle_llc": other_idle,
        "idle_node": 0,
        "idle_remote": 0,
        "min_nr_smt": -1,
        "min_nr_llc": np.where(other_idle, 0, 1),
        "min_nr_node": -1,
        "min_nr_remote": -1,
    }
    n = len(kind)
    return {f: np.broadcast_to(values[f], n).astype(STATE_FEATURE_TYPES[f]) for f in MIGRATION_STATE_FEATURES}


def _migration_run(rng: np.random.Generator, run_id: str, n: int) -> pd.DataFrame:
    ts = np.cumsum(rng.integers(1_000, 200_000, n)).astype(np.int64)
    segment = (np.arange(n) >= int(n * 0.8)).astype(np.int32)  # a lost-events gap near the end
    tid = rng.integers(1, 12, n).astype(np.int64)
    kind = rng.choice([0, 1, 2], n, p=[0.7, 0.25, 0.05]).astype(np.int8)
    since = np.where(kind == 1, 0, rng.exponential(600_000, n)).astype(np.int64)
    src_nr = rng.integers(0, 4, n).astype(np.int16)
    other_idle = rng.random(n) < 0.4
    logit = -2.5 + 2.0 * other_idle + 1.5 * (since > 500_000) + 0.4 * src_nr
    migrated = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int8)
    src_cpu = rng.integers(0, 2, n).astype(np.int16)
    df = pd.DataFrame(
        {
            "run_id": run_id,
            "ts": ts,
            "segment": segment,
            "pid": (tid + 1000).astype(np.int32),
            "tid": tid,
            "src_cpu": src_cpu,
            "kind": kind,
            "since_last_ran_ns": since,
            "src_nr_running": src_nr,
            "min_other_nr_running": np.where(other_idle, 0, rng.integers(1, 3, n)).astype(np.int16),
            "max_other_nr_running": rng.integers(0, 5, n).astype(np.int16),
            "src_idle": (src_nr == 0).astype(np.int8),
            "other_idle": other_idle.astype(np.int8),
            "waker_same_cpu": (rng.random(n) < 0.5).astype(np.int8),
            "recent_migrations": rng.integers(0, 9, n).astype(np.int8),
            "prio": rng.choice([120, 120, 120, 100], n).astype(np.int16),
            # the replay's state reconstruction, derived from the columns above (no draws: the
            # other columns' random stream stays as it was); a 2-CPU machine in the LLC class
            **_state_features(kind, src_nr, other_idle, since),
            "migrated": migrated,
            "next_cpu": np.where(migrated == 1, 1 - src_cpu, src_cpu).astype(np.int16),
            BALANCER_LABEL: np.zeros(n, np.int8),
        }
    )
    assert tuple(df.columns) == MIGRATION_COLUMNS and set(MIGRATION_FEATURES) <= set(df.columns)
    return df


def _next_task_run(rng: np.random.Generator, run_id: str, n_per_cpu: int) -> pd.DataFrame:
    frames = []
    base_pid = int(rng.integers(2000, 30000))  # raw pids differ between runs
    for cpu in range(2):
        pool = list(range(1, 6))
        nxt = []
        cur = 0
        for _ in range(n_per_cpu):
            r = rng.random()
            if r < 0.6:  # round robin over the pool
                cur = pool[(pool.index(cur) + 1) % len(pool)] if cur in pool else pool[0]
            elif r < 0.75:
                cur = 0  # idle
            elif r < 0.85:
                cur = int(rng.integers(6, 40))  # a newcomer
            else:
                cur = int(rng.choice(pool))
            nxt.append(cur)
        next_tid = np.array(nxt, dtype=np.int64) + np.where(np.array(nxt) > 0, 100 * cpu, 0)
        prev_tid = np.concatenate([[0], next_tid[:-1]])
        pid = lambda t: np.where(t == 0, 0, t + base_pid).astype(np.int32)  # noqa: E731
        idle = next_tid == 0
        dt = rng.integers(1_000, 2_000_000, n_per_cpu).astype(np.int64)
        dt[0] = -1
        frames.append(
            pd.DataFrame(
                {
                    "run_id": run_id,
                    "cpu": np.int16(cpu),
                    "ts": np.cumsum(rng.integers(1_000, 200_000, n_per_cpu)).astype(np.int64),
                    "segment": np.int32(0),
                    "prev_pid": pid(prev_tid),
                    "prev_tid": prev_tid,
                    "prev_state": rng.choice(["R", "R+", "S", "D", "I"], n_per_cpu, p=[0.3, 0.1, 0.4, 0.1, 0.1]),
                    "next_pid": pid(next_tid),
                    "next_tid": next_tid,
                    "next_prio": np.where(idle, 120, 120).astype(np.int16),
                    "dt_prev_switch_ns": dt,
                    "next_since_wakeup_ns": np.where(
                        rng.random(n_per_cpu) < 0.2, -1, rng.integers(0, 10**6, n_per_cpu)
                    ).astype(np.int64),
                    "next_prio_class": np.where(idle, 0, 1).astype(np.int8),
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    assert tuple(df.columns) == NEXT_TASK_COLUMNS
    return df


def _can_migrate_run(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """bcc can_migrate_task records in the collector's documented binary layout (data/collect/bcc/record.py)."""
    rec = np.zeros(n, dtype=RECORD_DTYPE)
    rec["magic"], rec["size"] = CM_MAGIC, RECORD_SIZE
    rec["ts_ns"] = np.cumsum(rng.integers(10_000, 4_000_000, n))
    rec["delta_ns"] = rng.exponential(800_000, n).astype(np.int64)
    rec["src_cpu"] = rng.integers(0, 2, n)
    rec["dst_cpu"] = 1 - rec["src_cpu"]
    rec["cpu"] = rec["dst_cpu"]
    rec["numa_preferred_nid"] = -1
    rec["src_nr_running"] = rng.integers(1, 6, n)
    rec["src_nr_preferred_running"] = rec["src_nr_running"]
    rec["dst_nr_running"] = rng.integers(0, 3, n)
    rec["src_load"] = rng.integers(0, 3000, n)
    rec["dst_load"] = rng.integers(0, 3000, n)
    rec["nr_balance_failed"] = rng.integers(0, 4, n)
    rec["cache_nice_tries"] = 1
    idle = rng.integers(0, 3, n)
    rec["cpu_idle"], rec["cpu_not_idle"], rec["cpu_newly_idle"] = idle == 0, idle == 1, idle == 2
    rec["buddy_hot"] = rng.random(n) < 0.1
    rec["p_running"] = rng.random(n) < 0.05
    rec["dst_allowed"] = rng.random(n) > 0.05
    cold = rec["delta_ns"] >= 500_000
    rec["ret"] = (
        ~rec["p_running"].astype(bool)
        & rec["dst_allowed"].astype(bool)
        & (cold | (rec["nr_balance_failed"] > 1))
        & (rng.random(n) < 0.9)
    )
    return records_frame(rec)


def _candidates_run(rng: np.random.Generator, next_task: pd.DataFrame) -> pd.DataFrame:
    """The runnable set at each switch to a task (data.build --runnable's columns): the chosen task
    and up to three others of the run, in tid order; the chosen one waited longest half the time."""
    rows = []
    tids = next_task["next_tid"].to_numpy()
    others = np.unique(tids[tids > 0])
    for i in np.flatnonzero(tids > 0):
        pick = [t for t in rng.choice(others, size=min(3, len(others)), replace=False) if t != tids[i]]
        members = sorted([int(tids[i]), *(int(t) for t in pick[: int(rng.integers(0, 4))])])
        wait = rng.integers(1_000, 5_000_000, len(members))
        if rng.random() < 0.5:
            wait[members.index(int(tids[i]))] = 6_000_000
        recent = rng.integers(0, 20_000_000, len(members))
        for j, t in enumerate(members):
            rows.append(
                {
                    "row": i,
                    "segment": 0,
                    "tid": t,
                    "chosen": int(t == tids[i]),
                    "prio": 120,
                    "rt": 0,
                    "weight": 1024,
                    "wait_ns": wait[j],
                    "ran_since_enqueue_ns": -1 if rng.random() < 0.1 else int(rng.integers(0, 10**6)),
                    "runtime_recent_ns": recent[j],
                    "vruntime_proxy": recent[j] - recent.min(),
                    "nr_candidates": len(members),
                }
            )
    df = pd.DataFrame(rows).astype(CANDIDATE_TYPES)
    return df.assign(run_id=next_task["run_id"].iloc[0])[list(CANDIDATE_COLUMNS)]


def write_synthetic_dataset(root: Path, migration_rows: int = 300, switches_per_cpu: int = 200, seed: int = 0) -> Path:
    """Write a synthetic dataset directory under `root` and return its path."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    tables = {"migration": {}, "next_task": {}, "can_migrate": {}, CANDIDATES: {}}
    for run_id, (workload, category) in RUNS.items():
        extra = {"workload": workload, "category": category}
        values = {"load_pct": np.int16(LOAD_PCT[workload]), "topology": TOPOLOGY[workload]}
        tables["migration"][run_id] = _migration_run(rng, run_id, migration_rows).assign(**extra, **values)
        tables["next_task"][run_id] = _next_task_run(rng, run_id, switches_per_cpu).assign(**extra, **values)
        tables["can_migrate"][run_id] = _can_migrate_run(rng, migration_rows).assign(run_id=run_id, **extra, **values)
        tables[CANDIDATES][run_id] = _candidates_run(rng, tables["next_task"][run_id])
    runs = [(r, w, c, LOAD_PCT[w], TOPOLOGY[w]) for r, (w, c) in RUNS.items()]
    splits = split_runs(runs, UNSEEN)["runs"]  # the builder's rule: no val (it is in train)
    splits = {s: splits[s] + (splits["val"] if s == "train" else []) for s in ("train", "test_seen", "test_unseen")}
    splits["workload"] = {
        w: [r for r in RUNS if RUNS[r][0] == w and r not in splits["train"]]
        for w in sorted({w for w, _ in RUNS.values()})
    }
    counts = {}
    for task, per_run in tables.items():
        folder = root / (CANDIDATES_TABLE if task == CANDIDATES else task)
        folder.mkdir(parents=True, exist_ok=True)
        counts[task] = {}
        for name in ("train", "test_seen", "test_unseen"):
            df = pd.concat([per_run[i] for i in splits[name]], ignore_index=True)
            df.to_parquet(folder / (candidates_file(name) if task == CANDIDATES else f"{name}.parquet"), index=False)
            counts[task][name] = {"rows": len(df)}
    card = {
        "version": 1,
        "synthetic": True,
        CANDIDATES: True,  # next_task/candidates_<split>.parquet, as data.build --runnable writes
        "unseen_categories": UNSEEN,
        "splits": splits,
        "counts": counts,
        "features": {"migration": list(MIGRATION_FEATURES), "next_task": list(NEXT_TASK_COLUMNS)},
        "sources": [
            {
                "run_id": r,
                "workload": v[0],
                "category": v[1],
                "load_pct": LOAD_PCT[v[0]],
                "topology": TOPOLOGY[v[0]],
                "path": "SYNTHETIC",
                "replay": {"wakeup_event": "sched_waking"},
            }
            for r, v in RUNS.items()
        ],
    }
    (root / "meta.json").write_text(json.dumps(card, indent=1))
    return root
