"""evaluate.py end to end: tiny checkpoints trained on the SYNTHETIC fixture dataset
(tests/synthetic_dataset.py), evaluated on its splits plus a REAL raw ftrace file (one shipped in
datasets/traces/, else one collected here as root) through the CLI; report files and their schema;
refusals (non-trace file, model overrides); the feature-subset option. Latency is measured with
few calls here: the figures come from bench/bench_latency.py."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest
import torch
from hydra import compose, initialize_config_dir

from evaluation.config import check, explain
from evaluation.sources import EvaluationError, TraceTables, best_checkpoint, find_checkpoints, trace_name
from plumbing.hydra_cli import UserError
from tests.conftest import REPO, is_root, require
from tests.synthetic_dataset import write_synthetic_dataset

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = [
    "model.width=4",
    "model.depth=1",
    "data.batch_size=64",
    "extras.print_config=false",
    "debug=limit",
    "~callbacks.rich_progress_bar",
    "~callbacks.model_summary",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
]
FAST_EVAL = ["latency.calls=30", "latency.warmup=5", "importance.repeats=1", "importance.max_samples=300"]


def train_tiny(dataset: Path, out: Path, overrides: list[str]) -> Path:
    from train import train

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose(
            "train",
            overrides=[
                *TINY,
                *overrides,
                f"paths.dataset_dir={dataset}",
                f"paths.output_dir={out}",
                f"paths.log_dir={out}",
            ],
        )
    train(cfg)
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), migration_rows=200, switches_per_cpu=150)


@pytest.fixture(scope="module")
def runs(dataset, tmp_path_factory) -> Path:
    """A multirun-like directory: 0/ = migration TCN, 1/ = next_task LSTM."""
    root = tmp_path_factory.mktemp("runs")
    train_tiny(dataset, root / "0", ["task=migration", "model=tcn"])
    train_tiny(dataset, root / "1", ["task=next_task", "model=lstm"])
    return root


@pytest.fixture(scope="module")
def raw_trace(tmp_path_factory) -> Path:
    """The smallest trace shipped in datasets/traces/, else a 1 s trace collected now."""
    shipped = sorted(
        (
            p
            for p in (REPO / "datasets" / "traces").glob("*/trace.txt.*")
            if not p.parent.name.startswith(".") and (p.parent / "meta.json").exists()
        ),
        key=lambda p: p.stat().st_size,
    )
    if shipped:
        return shipped[0]
    require(is_root(), "no trace in datasets/traces/ and not root: cannot collect one")
    out = tmp_path_factory.mktemp("collected")
    subprocess.run(
        [sys.executable, "-m", "data.collect", "cpu-pool", "--seconds", "1", "--out", str(out)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    return next(out.glob("*/trace.txt.*"))


def evaluate_cli(args: list[str], out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "evaluate.py", *args, f"hydra.run.dir={out}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_report_on_runs_and_raw_trace(runs, raw_trace, tmp_path):
    # a compressed copy under a foreign name: traces are accepted from anywhere
    trace = tmp_path / f"foreign{''.join(raw_trace.suffixes)}"
    shutil.copy(raw_trace, trace)
    out = tmp_path / "eval"
    proc = evaluate_cli([f"runs={runs}", f"traces=[{trace}]", *FAST_EVAL], out)
    assert proc.returncode == 0, proc.stderr[-3000:]

    metrics = json.loads((out / "metrics.json").read_text())
    assert {"version", "created", "command", "config", "models", "winner", "files"} <= metrics.keys()
    assert [m["task"] for m in metrics["models"]] == ["migration", "next_task"]
    for m in metrics["models"]:
        assert {
            "label",
            "backbone",
            "ckpt_path",
            "window",
            "inputs",
            "n_inputs",
            "params",
            "macs",
            "primary",
            "latency",
            "splits",
            "baselines",
            "importance",
        } <= m.keys()
        assert m["params"] > 0 and m["macs"] > 0
        splits = set(m["splits"])
        assert {"test_seen", "test_unseen", "trace/foreign"} <= splits
        assert {f"workload/{w}" for w in ("alpha", "beta", "gamma")} <= splits
        assert set(m["baselines"]) == splits
        for engine in ("eager", "onnxruntime"):
            lat = m["latency"][engine]
            assert lat["calls"] == 30 and 0 < lat["p50_us"] <= lat["p99_us"]
        assert m["latency"]["onnxruntime"]["max_abs_diff"] < 1e-3
        assert m["importance"]["metric"] == m["primary"] and m["importance"]["features"]
        assert m["importance"]["split"] == "val"  # rankings are made on validation rows
        for s in m["splits"].values():
            assert "lift" in s and s["n"] > 0
    mig, nxt = metrics["models"]
    assert {"bal_acc", "f1", "ap", "mcc", "acc", "confusion"} <= mig["splits"]["test_unseen"].keys()
    (tn, fp), (fn, tp) = mig["splits"]["test_unseen"]["confusion"]
    assert tn + fp + fn + tp == mig["splits"]["test_unseen"]["n"]
    assert set(mig["baselines"]["test_unseen"]) == {"always_stay", "load_heuristic", "logreg"}
    assert {"top1", "top3", "ceiling", "not_in_list"} <= nxt["splits"]["test_unseen"].keys()
    assert set(nxt["baselines"]["test_unseen"]) == {"most_frequent", "repeat_2_back", "markov3"}

    winner = json.loads((out / "winner.json").read_text())
    assert {"rule", "metric", "split", "split_note", "budget_macs", "latency_engine", "winners"} <= winner.keys()
    assert winner["split"] == "val"  # chosen on validation rows, never on a test split
    for task in ("migration", "next_task"):
        w = winner["winners"][task]
        assert {"winner", "ckpt_path", "value", "macs", "p99_us", "reason", "candidates"} <= w.keys()
        assert w["winner"] in (None, *(g["label"] for g in metrics["groups"] if g["task"] == task))
        assert w["verdict"] == "only candidate" and w["winner"] is not None  # one setup per task here
        assert (w["winner"] is None) == bool(w["reason"])
        m = next(m for m in metrics["models"] if m["task"] == task)
        assert m["validation"]["n"] > 0 and w["candidates"][0]["value"] == m["validation"][m["primary"]]
    # a progress line per stage
    for stage in ("load 1/2", "test set test_unseen", "validation rows", "latency", "permutation importance", "plots"):
        assert stage in proc.stdout + proc.stderr, stage

    pngs = [f for f in metrics["files"] if f.endswith(".png")]
    assert {"accuracy_latency.png", "workloads_migration.png", "confusion_migration.png"} <= set(pngs)
    for name in pngs:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
        assert matplotlib.image.imread(out / name).ndim == 3
    # seed groups (one run each here: spread unknown) and the ranking on validation rows
    assert [g["n"] for g in metrics["groups"]] == [1, 1]
    assert {m["group"] for m in metrics["models"]} == {g["label"] for g in metrics["groups"]}
    ranking = json.loads((out / "ranking.json").read_text())
    assert [r["label"] for r in ranking["models"]] == [m["label"] for m in metrics["models"]]
    for r, m in zip(ranking["models"], metrics["models"], strict=False):
        assert r["split"] == "val" and r["ranking"] == [n for n in m["importance"]["features"] if n != "token"]
        assert r["command"].startswith("python train.py -m experiment=feature_count") and r["command"] in proc.stdout
    report = (out / "report.md").read_text()
    for heading in (
        "## Models",
        "## Winner",
        "## migration",
        "## next_task",
        "### test_unseen",
        "### Seeds",
        "### Per workload and raw trace",
        "trace/foreign",
        "### Permutation feature importance",
    ):
        assert heading in report


def test_checkpoint_alone_reproduces_training_test_metrics(runs, dataset, tmp_path):
    """Same model, same data path: evaluate.py scores the test splits exactly as training's test
    step, also from a moved copy of the dataset (data_dir=)."""
    from evaluation.runner import evaluate

    moved = shutil.copytree(dataset, tmp_path / "moved")
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose(
            "eval",
            overrides=[
                f"runs={runs}",
                f"data_dir={moved}",
                f"paths.output_dir={tmp_path}",
                "latency.enabled=false",
                "importance.enabled=false",
                "plots=false",
                "workloads=false",
            ],
        )
    result = evaluate(cfg)
    assert {m["dataset_dir"] for m in result["models"]} == {str(moved)}
    for m, run in zip(result["models"], ("0", "1"), strict=False):
        trained = json.loads((runs / run / "test_metrics.json").read_text())
        for split in ("test_seen", "test_unseen"):
            assert m["splits"][split][m["primary"]] == pytest.approx(trained[f"{split}/{m['primary']}"], abs=1e-6)
            for name, scores in m["baselines"][split].items():
                assert scores[m["primary"]] == pytest.approx(
                    trained[f"{split}/baseline/{name}/{m['primary']}"], abs=1e-6
                )


@pytest.mark.parametrize("run", [0, 1])
def test_workload_sets_are_slices_of_the_test_splits(runs, run):
    """Per-workload scores are taken from test_seen/test_unseen predictions: check they are the same."""
    from evaluation.metrics import predict
    from evaluation.sources import load_candidate

    cand = load_candidate(find_checkpoints(runs=str(runs))[run], {})
    names = cand.test_sets()
    derived = cand.derived(names)
    assert (
        {n for n in derived if n.startswith("workload/")}
        == {n for n in names if n.startswith("workload/")}
        == {"workload/alpha", "workload/beta", "workload/gamma"}
    )
    # migration rows say which a balancer moved: each test split again without them (data.dataset.balancer)
    no_balancer = {"test_seen/no_balancer", "test_unseen/no_balancer"} if run == 0 else set()
    assert {n for n in derived if not n.startswith("workload/")} == no_balancer <= set(names)
    for name, (parent, mask) in derived.items():
        direct = predict(cand.module.net, cand.get_split(name))
        assert torch.allclose(predict(cand.module.net, cand.get_split(parent))[mask], direct, atol=1e-6)


def test_best_checkpoint_of_each_run(runs):
    found = find_checkpoints(runs=str(runs))
    assert [p.parent.parent.name for p in found] == ["0", "1"]
    for p in found:
        state = torch.load(p.parent / "last.ckpt", map_location="cpu", weights_only=False)["callbacks"]
        best = next(v["best_model_path"] for k, v in state.items() if k.startswith("ModelCheckpoint"))
        assert p == Path(best).resolve() == best_checkpoint(p.parent).resolve()
    with pytest.raises(EvaluationError, match="nothing to evaluate"):
        find_checkpoints()


def test_non_trace_file_fails_clearly(runs, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not a trace\nat all\n")
    with pytest.raises(EvaluationError, match="not an ftrace text file"):
        TraceTables([str(text)]).table("trace/notes", "migration")
    with pytest.raises(EvaluationError, match="not found"):
        TraceTables([str(tmp_path / "missing.trace.zst")])
    proc = evaluate_cli(
        [
            f"ckpt_path={next((runs / '0' / 'checkpoints').glob('epoch_*.ckpt'))}",
            f"traces=[{text}]",
            "latency.enabled=false",
            "importance.enabled=false",
        ],
        tmp_path / "eval",
    )
    assert proc.returncode != 0
    assert "not an ftrace text file" in proc.stderr and str(text) in proc.stderr


def compose_eval(overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return compose("eval", overrides=overrides)


def test_only_data_may_be_overridden(tmp_path):
    cfg = compose_eval(
        [
            "ckpt_path=a.ckpt",
            "data_dir=/x",
            "traces=[a.zst,b.xz]",
            "data.eval_batch_size=8",
            "latency.calls=10",
            "winner.budget_macs=5000",
            "hydra.run.dir=/tmp/x",
            "paths.log_dir=/tmp/l",
        ]
    )
    assert (cfg.data.eval_batch_size, cfg.latency.calls, cfg.winner.budget_macs) == (8, 10, 5000)
    for bad in ("model.width=8", "data.window=4", "task=next_task", "+task=next_task", "data.features=[kind]"):
        with pytest.raises(Exception) as refused:  # the schema has no such key: Hydra refuses it
            compose_eval([bad])
        assert re.search(
            f"rebuilds the model from the checkpoint.*'{re.escape(bad)}' cannot be overridden",
            str(explain(refused.value, [bad])),
        )
    cfg = compose_eval(["+trainer.max_epochs=3"])  # `+` adds a key past the schema: the check refuses it
    with pytest.raises(UserError, match="rebuilds the model from the checkpoint"):
        check(cfg)
    for bad in ("model.width=8", "+trainer.max_epochs=3"):
        proc = subprocess.run(
            [sys.executable, "evaluate.py", "ckpt_path=x.ckpt", bad],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        error, advice = proc.stderr.splitlines()  # the refusal, then what may change instead
        assert proc.returncode == 1 and f"'{bad}' cannot be overridden" in error, proc.stderr
        assert advice.startswith("  What may change is the data: data_dir=DATASET, traces=[FILE,...]")


def test_a_single_path_is_a_list_of_one(runs, tmp_path):
    """traces=FILE without brackets is traces=[FILE] (it was read letter by letter: "t not
    found"); ckpt_paths= and runs= likewise."""
    ckpt = next((runs / "0" / "checkpoints").glob("epoch_*.ckpt"))
    cfg = compose_eval(["traces=run/trace.txt.zst", f"ckpt_paths={ckpt}", f"runs={runs}"])
    check(cfg)
    assert list(cfg.traces) == ["run/trace.txt.zst"]
    assert list(cfg.ckpt_paths) == [str(ckpt)] and list(cfg.runs) == [str(runs)]
    missing = tmp_path / "run" / "trace.txt.zst"
    proc = evaluate_cli([f"ckpt_path={ckpt}", f"traces={missing}"], tmp_path / "eval")
    assert proc.returncode == 1 and f"{missing} not found" in proc.stderr, proc.stderr  # the whole path


def test_trace_names():
    assert trace_name(Path("/t/hackbench-pipe-r01/trace.txt.zst")) == "trace/hackbench-pipe-r01"
    assert trace_name(Path("a.trace.zst")) == "trace/a"
    assert trace_name(Path("b.trace.xz")) == "trace/b"


def test_feature_subset_training(dataset, tmp_path):
    """data.features keeps the named inputs (a column keeps all its one-hots); evaluation follows."""
    out = train_tiny(dataset, tmp_path, ["task=migration", "model=mlp", "data.features=[since_last_ran_ns,kind]"])
    meta = torch.load(next((out / "checkpoints").glob("epoch_*.ckpt")), map_location="cpu", weights_only=False)[
        "hyper_parameters"
    ]["data_meta"]
    assert meta["feature_names"] == ["since_last_ran_ns", "kind_wakeup", "kind_preempt", "kind_new", "valid"]
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=["experiment=feature_count"], return_hydra_config=True)
    # no hand-copied ranking: the features come from evaluate.py's printed command only
    assert cfg.model._target_ == "models.network.mlp" and cfg.require_features
    assert "data.features" not in (cfg.hydra.sweeper.params or {})
    with pytest.raises(ValueError, match="unknown"):
        train_tiny(dataset, tmp_path / "bad", ["task=migration", "model=mlp", "data.features=[no_such_feature]"])


def test_feature_count_without_features_says_to_run_evaluate_first(tmp_path):
    proc = subprocess.run(
        [sys.executable, "train.py", "experiment=feature_count", f"paths.log_dir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("train.py: error:")]
    assert "needs data.features" in line and "python evaluate.py" in line and "ranking.json" in line
    assert not list(tmp_path.glob("feature_count/multiruns/*/0"))
