"""can_migrate learning: the kernel rule, the builder's can_migrate tables, labels, baselines,
the synthetic (Singh) source and raw record files in evaluation.

Records here are TEST INPUTS packed in the documented binary layout (data/can_migrate/record.py), not
kernel records; their `ret` is set by hand-written cases or by an independent transcription
of 6.1's can_migrate_task below, so the tests check the shared rule code against it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import zstandard

from data.can_migrate.features import CHEN_FEATURES, FORCED, LABEL, can_migrate_table, filter_counts
from data.can_migrate.files import read_records, write_records_parquet
from data.can_migrate.record import (
    CM_MAGIC,
    LBF_ACTIVE_LB,
    RECORD_DTYPE,
    RECORD_SIZE,
    RecordFormatError,
    records_frame,
    to_records,
)
from data.can_migrate.rule import BRANCHES, RULE_CONTEXT, SD_NUMA, SD_SHARE_CPUCAPACITY, kernel_verdict
from data.can_migrate.synthetic import SyntheticSpec, synthetic_table
from data.dataset.build import build
from data.dataset.datamodule import CanMigrateDataModule, SyntheticCanMigrateDataModule


def kernel_6_1(r) -> tuple[int, int]:
    """6.1's can_migrate_task on one record (a dict), written out branch by branch from
    kernel/sched/fair.c; returns (ret, p->sched_task_hot)."""
    if r["throttled"] or not r["dst_allowed"] or r["p_running"]:
        return 0, 0
    if r["env_flags"] & LBF_ACTIVE_LB:
        return 1, 0
    hot = -1  # migrate_degrades_locality
    faults = [r[f"numa_faults_{k}"] for k in range(4)]
    if r["total_numa_faults"] and r["sd_flags"] & SD_NUMA and r["src_node"] != r["dst_node"]:
        if r["src_node"] == r["numa_preferred_nid"]:
            hot = 1 if r["src_nr_running"] > r["src_nr_preferred_running"] else -1
        elif r["dst_node"] == r["numa_preferred_nid"]:
            hot = 0
        elif r["cpu_idle"]:
            hot = -1
        else:
            hot = int(faults[r["dst_node"]] < faults[r["src_node"]])
    if hot == -1:  # task_hot
        if r["policy"] not in (0, 3, 5) or r["policy"] == 5 or r["sd_flags"] & SD_SHARE_CPUCAPACITY:
            hot = 0
        elif r["buddy_hot"]:
            hot = 1
        else:
            hot = int(r["delta_ns"] < 500_000)
    if hot <= 0 or r["nr_balance_failed"] > r["cache_nice_tries"]:
        return 1, int(hot == 1)
    return 0, 0


def random_records(n: int, seed: int = 0, numa: bool = True) -> pd.DataFrame:
    """Records with every field the rule reads varied, labelled by kernel_6_1."""
    rng = np.random.default_rng(seed)
    rec = np.zeros(n, dtype=RECORD_DTYPE)
    rec["magic"], rec["size"] = CM_MAGIC, RECORD_SIZE
    rec["ts_ns"] = np.cumsum(rng.integers(1_000, 100_000, n))
    rec["delta_ns"] = rng.integers(-1000, 2_000_000, n)
    rec["src_cpu"] = rng.integers(0, 4, n)
    rec["dst_cpu"] = (rec["src_cpu"] + rng.integers(1, 4, n)) % 4
    rec["cpu"] = rec["dst_cpu"]
    rec["pid"] = rng.integers(1, 500, n)
    nodes = 2 if numa else 1
    rec["src_node"] = rec["src_cpu"] % nodes
    rec["dst_node"] = rec["dst_cpu"] % nodes
    rec["numa_preferred_nid"] = rng.integers(-1, nodes, n)
    rec["numa_faults"][:, :2] = rng.integers(0, 50, (n, 2)) if numa else 0
    rec["total_numa_faults"] = rec["numa_faults"].sum(axis=1)
    rec["src_nr_running"] = rng.integers(1, 8, n)
    rec["src_nr_preferred_running"] = rng.integers(0, 8, n)
    rec["dst_nr_running"] = rng.integers(0, 4, n)
    rec["src_load"], rec["dst_load"] = rng.integers(0, 4000, n), rng.integers(0, 4000, n)
    rec["nr_balance_failed"] = rng.integers(0, 4, n)
    rec["cache_nice_tries"] = rng.integers(0, 2, n)
    rec["env_flags"] = np.where(rng.random(n) < 0.05, LBF_ACTIVE_LB, 0) | rng.integers(0, 2, n) * 0x08
    rec["sd_flags"] = (np.where(rng.random(n) < 0.5, SD_NUMA, 0) if numa else 0) | np.where(
        rng.random(n) < 0.05, SD_SHARE_CPUCAPACITY, 0
    )
    idle = rng.integers(0, 3, n)
    rec["idle"] = idle
    rec["cpu_idle"], rec["cpu_not_idle"], rec["cpu_newly_idle"] = idle == 0, idle == 1, idle == 2
    rec["buddy_hot"] = (rng.random(n) < 0.1) & (rec["dst_nr_running"] > 0)
    rec["p_running"] = rng.random(n) < 0.05
    rec["throttled"] = rng.random(n) < 0.02
    rec["dst_allowed"] = rng.random(n) > 0.05
    rec["policy"] = rng.choice([0, 0, 0, 3, 5, 1], n)
    for i in range(n):
        r = {k: rec[k][i] for k in rec.dtype.names if k != "numa_faults"}
        r.update({f"numa_faults_{k}": rec["numa_faults"][i, k] for k in range(4)})
        rec["ret"][i], rec["task_hot_after"][i] = kernel_6_1(r)
    return records_frame(rec)


@pytest.fixture(scope="module")
def records():
    return random_records(3000)


# ------------------------------------------------------------------------------------ the rule
def test_rule_equals_the_kernel_transcription_on_every_passing_record(records):
    table = can_migrate_table(records)
    assert len(table) == filter_counts(records)["kept"] < len(records)
    allow, forced = kernel_verdict(table)
    assert (allow == table[LABEL]).all() and (forced == table[FORCED]).all()
    # every branch was taken: allowed and refused, forced, active balance, NUMA locality
    assert 0 < table[LABEL].mean() < 1 and table[FORCED].sum() > 0
    assert table["active_lb"].sum() > 0 and ((table["sd_numa"] != 0) & (table["numa_faults"] != 0)).sum() > 0


@pytest.mark.parametrize(
    "row,allow,forced",
    [
        (dict(delta_hot=0), 1, 0),  # cache cold
        (dict(delta_hot=1), 0, 0),  # hot: refused
        (dict(delta_hot=1, extra_fails=1), 1, 1),  # hot but balancing failed too often: forced
        (dict(buddy_hot=1), 0, 0),  # a buddy is hot even when delta says cold
        (dict(delta_hot=1, active_lb=1), 1, 0),  # active balance: allowed, hot never computed
        (dict(delta_hot=1, idle_policy=1), 1, 0),  # SCHED_IDLE is never hot
        (dict(delta_hot=1, fair_class=0), 1, 0),  # not a CFS task: task_hot() = 0
        (dict(delta_hot=1, sd_share_cpucapacity=1), 1, 0),  # SMT siblings share cache
        # NUMA: migrate_degrades_locality decides before task_hot
        (dict(delta_hot=1, sd_numa=1, numa_faults=1, prefer_dst=1), 1, 0),  # to the preferred node
        (dict(sd_numa=1, numa_faults=1, prefer_src=1, src_non_pref_nr=1), 0, 0),  # away from it
        (dict(delta_hot=1, sd_numa=1, numa_faults=1, prefer_src=1), 0, 0),  # -1: task_hot -> hot
        (dict(sd_numa=1, numa_faults=1, delta_faults=-0.5), 0, 0),  # dst has fewer faults
        (dict(sd_numa=1, numa_faults=1, delta_faults=-0.5, cpu_idle=1), 1, 0),  # idle: task_hot
        (dict(delta_hot=1, sd_numa=1, numa_faults=1, same_node=1, prefer_dst=1), 0, 0),  # same node
    ],
)
def test_rule_cases(row, allow, forced):
    base = {f: 0.0 for f in CHEN_FEATURES} | dict(RULE_CONTEXT)
    got = kernel_verdict(pd.DataFrame([base | row]))
    assert (int(got[0][0]), int(got[1][0])) == (allow, forced)


def test_rule_names_a_missing_column():
    with pytest.raises(KeyError, match="delta_hot"):
        kernel_verdict(pd.DataFrame({"buddy_hot": [0]}))


def test_filter_counts_add_up(records):
    c = filter_counts(records)
    assert c["records"] == len(records)
    assert c["kept"] + sum(v for k, v in c.items() if k.startswith("dropped_")) == len(records)
    assert c["dropped_throttled"] > 0 and c["dropped_running"] > 0 and c["dropped_dst_not_allowed"] > 0


# ------------------------------------------------------------------------------------ synthetic
def test_synthetic_distributions_and_labels():
    spec = SyntheticSpec(rows=20_000, seed=3, flag_p=0.3, length_mean=10, length_std=30, numa_p=0.5)
    df = synthetic_table(spec)
    assert len(df) == 20_000 and all(c in df for c in CHEN_FEATURES)
    assert df[["src_len", "dst_len"]].min().min() == 0 and df[["src_len", "dst_len"]].max().max() == 55
    assert (df["src_len"] == df["src_len"].round()).all()
    assert abs(df["delta_hot"].mean() - 0.3) < 0.02 and abs(df["buddy_hot"].mean() - 0.3) < 0.02
    assert (df[["cpu_idle", "cpu_not_idle", "cpu_newly_idle"]].sum(axis=1) == 1).all()
    assert set(np.unique(df["delta_faults"])) == set(range(11))
    assert abs(df["src_load"].mean() - 1.0) < 0.05 and (df["src_load"] >= 0).all()
    allow, forced = kernel_verdict(df)
    assert (df[LABEL] == allow).all() and (df[FORCED] == forced).all()
    assert df.equals(synthetic_table(spec))  # seeded
    with pytest.raises(ValueError, match="flag_p"):
        SyntheticSpec(flag_p=2)


# ------------------------------------------------------------------------------------ builder
def write_run(root, run_id, workload, category, records: pd.DataFrame | None, raw: bool = False):
    d = root / run_id
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps({"workload": workload, "category": category}))
    if records is not None and raw:
        (d / "records.bin.zst").write_bytes(zstandard.compress(to_bytes(records)))
    elif records is not None:
        records.to_parquet(d / "can_migrate.parquet")
    return d


def to_bytes(records: pd.DataFrame) -> bytes:
    return to_records(records).tobytes()


def test_records_parquet_is_lossless_and_split_by_byte(tmp_path):
    """write_records_parquet (every collector's one writer): the loader's bytes come back from
    the file, and the numeric columns are BYTE_STREAM_SPLIT (what makes the shipped runs fit)."""
    import pyarrow.parquet as pq

    records = random_records(300, seed=3, numa=True)
    path = write_records_parquet(records, tmp_path / "can_migrate.parquet", level=3)
    assert to_bytes(read_records(path)) == to_bytes(records)
    col = pq.ParquetFile(path).metadata.row_group(0)
    encodings = {col.column(i).path_in_schema: col.column(i).encodings for i in range(col.num_columns)}
    assert "BYTE_STREAM_SPLIT" in encodings["ts_ns"] and "BYTE_STREAM_SPLIT" in encodings["vruntime"]
    assert [p.name for p in tmp_path.iterdir()] == ["can_migrate.parquet"]  # no temporary left


RUNS = [
    ("a-r01", "a", "cpu"),
    ("a-r02", "a", "cpu"),
    ("a-r03", "a", "cpu"),
    ("b-r01", "b", "msg"),
    ("b-r02", "b", "msg"),
    ("c-r01", "c", "io"),
    ("c-r02", "c", "io"),
]


@pytest.fixture(scope="module")
def cm_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for i, (run_id, w, c) in enumerate(RUNS):
        write_run(root, run_id, w, c, random_records(400, seed=10 + i, numa=False), raw=i % 2 == 1)
    out = tmp_path_factory.mktemp("ds") / "dataset"
    card = build([root], out, ["io"])
    return out, card


def test_builder_writes_can_migrate_tables(cm_dataset):
    out, card = cm_dataset
    assert card["tasks"] == ["can_migrate"]  # record-only runs: no trace, no ftrace tasks
    assert not (out / "migration").exists()
    by_split = {s: pd.read_parquet(out / "can_migrate" / f"{s}.parquet") for s in ("train", "test_seen", "test_unseen")}
    assert set(by_split["train"].run_id) == {"a-r01", "a-r02", "b-r01"}
    assert set(by_split["test_seen"].run_id) == {"a-r03", "b-r02"}
    assert set(by_split["test_unseen"].run_id) == {"c-r01", "c-r02"}
    for s, df in by_split.items():
        assert all(c in df for c in (*CHEN_FEATURES, LABEL, FORCED, *RULE_CONTEXT, "ts", "dst_cpu"))
        assert card["counts"]["can_migrate"][s]["rows"] == len(df)
        assert card["counts"]["can_migrate"][s]["forced_positives"] == int(df[FORCED].sum())
        allow, forced = kernel_verdict(df)
        assert (allow == df[LABEL]).all() and (forced == df[FORCED]).all()
    assert not (out / "can_migrate" / "workload").exists()  # per-workload sets: rows of the test tables
    f = card["can_migrate_filter"]
    assert f["records"] == 400 * len(RUNS) and f["kept"] == sum(len(d) for d in by_split.values())
    assert all("records_sha256" in s and s["can_migrate_filter"]["records"] == 400 for s in card["sources"])
    rates = card["can_migrate_rates"]  # per topology, load level and workload
    assert [r["workload"] for r in rates] == ["a", "b", "c"] and sum(r["runs"] for r in rates) == len(RUNS)
    assert sum(r["kept"] for r in rates) == f["kept"]
    assert sum(r[FORCED] for r in rates) == sum(int(d[FORCED].sum()) for d in by_split.values())
    assert all(r["forced_rate"] == r[FORCED] / r["kept"] for r in rates)


def test_builder_mixes_trace_runs_and_record_runs(tmp_path):
    """A run with a trace only keeps giving migration/next_task; one with both gives all three."""
    import shutil

    from tests.conftest import REPO

    root = tmp_path / "runs"
    for run_id, (records, trace) in {
        "x-r01": (True, True),
        "x-r02": (True, True),
        "y-r01": (False, True),
        "y-r02": (False, True),
    }.items():
        d = write_run(root, run_id, run_id[0], "cpu", random_records(200, 1, numa=False) if records else None)
        if trace:
            shutil.copy(REPO / "datasets/traces/cpu-pool-r01/trace.txt.zst", d / "trace.txt.zst")
    card = build([root], tmp_path / "ds", [], events=False)
    assert card["tasks"] == ["migration", "next_task", "can_migrate"]
    assert not (tmp_path / "ds" / "events").exists()
    cm = pd.read_parquet(tmp_path / "ds" / "can_migrate" / "train.parquet")
    assert set(cm.run_id) == {"x-r01"}
    assert set(pd.read_parquet(tmp_path / "ds" / "migration" / "train.parquet").run_id) == {"x-r01", "y-r01"}
    assert card["splits"]["workload"]["y"] == ["y-r02"] and not (tmp_path / "ds" / "can_migrate" / "workload").exists()


def test_damaged_record_stream_names_the_file(tmp_path):
    from data.dataset.build import BuildError

    d = write_run(tmp_path / "runs", "z-r01", "z", "cpu", None)
    (d / "records.bin").write_bytes(to_bytes(random_records(3, numa=False))[:-5])
    with pytest.raises(BuildError, match=r"records\.bin: truncated record"):
        build([tmp_path / "runs"], tmp_path / "ds", [])
    with pytest.raises(RecordFormatError, match="not a can_migrate record table"):
        pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "bad.parquet")
        read_records(tmp_path / "bad.parquet")


# ------------------------------------------------------------------------------------ training data
@pytest.mark.parametrize("label", ["can_migrate", "forced"])
def test_datamodule_reads_tables_with_either_label(cm_dataset, label):
    out, _ = cm_dataset
    dm = CanMigrateDataModule(str(out), window=4, label=label)
    dm.setup("fit")
    assert dm.meta["feature_names"] == [*CHEN_FEATURES, "valid"] and dm.meta["label"] == label
    split = dm.get_split("test_unseen")
    table = pd.read_parquet(out / "can_migrate" / "test_unseen.parquet")
    assert len(split) == len(table)
    assert split.target.sum().item() == table[label].sum()


def test_baselines_rule_is_exact_on_rule_consistent_records(cm_dataset):
    from models.baselines import evaluate_baselines
    from models.tasks import CanMigrateModule

    out, _ = cm_dataset
    for label in ("can_migrate", "forced"):
        dm = CanMigrateDataModule(str(out), window=1, label=label)
        dm.setup("fit")
        module = CanMigrateModule(
            backbone={"_target_": "models.network.mlp", "width": 4, "depth": 1},
            optimizer={"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.1},
            data_meta=dm.meta,
        )
        m = evaluate_baselines(module, dm, ["test_seen", "test_unseen"])
        assert m["test_unseen/baseline/kernel_rule/acc"] == 1.0 and m["test_seen/baseline/kernel_rule/bal_acc"] == 1.0
        rate = float(dm.get_split("train").target.mean())
        majority = 1.0 if rate >= 0.5 else 0.0
        y = dm.get_split("test_unseen").target
        assert m["test_unseen/baseline/majority/acc"] == pytest.approx(float((y == majority).float().mean()))
        assert 0.0 <= m["test_unseen/baseline/logreg/bal_acc"] <= 1.0


@pytest.mark.parametrize("source", ["synthetic", "both"])
def test_synthetic_source_trains_on_rule_rows_and_tests_on_records(cm_dataset, source):
    out, _ = cm_dataset
    spec = {"rows": 5000, "seed": 1}
    dm = SyntheticCanMigrateDataModule(str(out), window=1, source=source, synthetic=spec)
    dm.setup("fit")
    train = dm.get_split("train").rows
    assert (train.run_id == "synthetic").sum() == 5000  # validation: the dataset's real val runs
    assert set(dm.get_split("val").rows.run_id) == {"a-r02", "b-r01"}
    assert (train.run_id != "synthetic").any() == (source == "both")
    assert dm.meta["source"] == source and dm.meta["synthetic"]["rows"] == 5000
    test = dm.get_split("test_unseen").rows
    assert set(test.run_id) == {"c-r01", "c-r02"}
    again = SyntheticCanMigrateDataModule(str(out), data_meta=dm.meta)  # rebuilt from a checkpoint's meta
    assert again.source == source and torch.equal(again.get_split("val").target, dm.get_split("val").target)


# ------------------------------------------------------------------------------------ evaluation
def test_evaluation_reads_raw_record_files(cm_dataset, tmp_path):
    from evaluation.sources import EvaluationError, TraceTables, trace_name

    recs = random_records(300, seed=5, numa=False)
    (tmp_path / "run-r01").mkdir()
    (tmp_path / "run-r01" / "records.bin").write_bytes(to_bytes(recs))
    (tmp_path / "s.bin.zst").write_bytes(zstandard.compress(to_bytes(recs)))
    recs.to_parquet(tmp_path / "run-r01" / "can_migrate.parquet")
    files = [tmp_path / "run-r01", tmp_path / "s.bin.zst", tmp_path / "run-r01" / "records.bin"]
    tables = TraceTables([str(f) for f in files])
    assert list(tables.files) == ["trace/run-r01", "trace/s", "trace/run-r01_2"]
    assert trace_name(tmp_path / "run-r01" / "can_migrate.parquet") == "trace/run-r01"
    frames = [tables.table(n, "can_migrate") for n in tables.files]
    for df in frames:
        assert len(df) == filter_counts(recs)["kept"] and (df.category == "external").all()
        assert (df[LABEL].to_numpy() == frames[0][LABEL].to_numpy()).all()
    with pytest.raises(EvaluationError, match="not a migration table"):
        tables.table("trace/s", "migration")
    out, _ = cm_dataset
    dm = CanMigrateDataModule(str(out), window=2)
    dm.setup("fit")
    split = dm.make_split(frames[1], "trace/s")
    assert len(split) == len(frames[1])


def test_rule_report_locates_disagreements(records, tmp_path, capsys):
    from data.can_migrate.agreement import disagreements, main

    table = can_migrate_table(records)
    flip = table.index[table["active_lb"] == 1][:3]
    table.loc[flip, LABEL] = 1 - table.loc[flip, LABEL]
    d = disagreements(table)
    assert d["can_migrate_wrong"] == 3 and d["forced_wrong"] == 0
    assert d["branches"]["active_lb"]["can_migrate_wrong"] == 3  # the branch that decided them
    (tmp_path / "r.bin").write_bytes(to_bytes(records))
    assert main([str(tmp_path / "r.bin")]) == 0
    assert f"| unknown | – | 1 | {len(table)} | 1.0000 | 0 | 1.0000 | 0 |" in capsys.readouterr().out
    assert main([str(tmp_path / "missing.txt")]) == 2


def test_truncated_compressed_records_fail(tmp_path):
    data = zstandard.compress(to_bytes(random_records(500, numa=False)))
    (tmp_path / "r.bin.zst").write_bytes(data[:-7])
    with pytest.raises(RecordFormatError, match=r"r\.bin\.zst: truncated zstd stream"):
        read_records(tmp_path / "r.bin.zst")
    (tmp_path / "ok.bin.zst").write_bytes(data + data)  # two frames
    assert len(read_records(tmp_path / "ok.bin.zst")) == 1000


def test_evaluate_cli_scores_a_can_migrate_checkpoint_on_raw_records(cm_dataset, tmp_path):
    """train (tiny, experiment=can_migrate_chen) -> evaluate.py with a raw .bin.zst record file
    and a run directory as extra test sets; an ftrace file is skipped for this model."""
    import os
    import subprocess
    import sys

    from hydra import compose, initialize_config_dir

    from tests.conftest import REPO
    from train import train

    out, _ = cm_dataset
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose(
            "train",
            overrides=[
                "experiment=can_migrate_chen",
                "debug=limit",
                "extras.print_config=false",
                "~callbacks.rich_progress_bar",
                "~callbacks.model_summary",
                "+trainer.enable_progress_bar=false",
                f"paths.dataset_dir={out}",
                f"paths.output_dir={tmp_path / 'run'}",
                f"paths.log_dir={tmp_path}",
            ],
        )
    train(cfg)
    ckpt = next((tmp_path / "run" / "checkpoints").glob("epoch_*.ckpt"))
    recs = random_records(400, seed=99, numa=False)
    (tmp_path / "extra.bin.zst").write_bytes(zstandard.compress(to_bytes(recs)))
    run_dir = write_run(tmp_path / "runs", "x-r01", "x", "cpu", recs)
    trace = REPO / "datasets/traces/cpu-pool-r01/trace.txt.zst"
    proc = subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            f"ckpt_path={ckpt}",
            f"traces=[{tmp_path / 'extra.bin.zst'},{run_dir},{trace}]",
            "latency.enabled=false",
            "importance.enabled=false",
            "plots=false",
            f"hydra.run.dir={tmp_path / 'eval'}",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    sets = json.dumps(result["models"][0])
    for name in ("trace/extra", "trace/x-r01", "test_unseen"):
        assert name in sets
    assert "trace/cpu-pool-r01" not in sets and "holds no can_migrate data" in proc.stdout + proc.stderr
    # per branch of the kernel's rule: the branches partition each test set, and the
    # sample-weighted branch accuracies give back the set's accuracy
    model = result["models"][0]
    assert "branch of the kernel's rule (test_unseen)" in (tmp_path / "eval" / "report.md").read_text()
    for name in ("trace/extra", "test_unseen"):
        branches = model["branches"][name]
        assert set(branches) <= set(BRANCHES) and branches
        assert sum(b["n"] for b in branches.values()) == model["splits"][name]["n"]
        acc = sum(b["n"] * b["acc"] for b in branches.values()) / model["splits"][name]["n"]
        assert acc == pytest.approx(model["splits"][name]["acc"], abs=1e-6)
