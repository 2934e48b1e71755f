"""train.py as a command: its typed config (models/config.py: every group option on its schema,
a wrong type or value refused naming its key, old checkpoints' run configs accepted), printing
the config, a model sweep, a resumable Optuna study and (slow) real DistributedDataParallel with
two CPU processes. SYNTHETIC fixture dataset."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from models import config
from plumbing.hydra_cli import UserError, one_line
from tests.conftest import REPO
from tests.synthetic_dataset import write_synthetic_dataset

QUIET = [
    "extras.print_config=false",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "hydra.job_logging.root.level=INFO",
]
TINY = ["model.width=4", "model.depth=1"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), migration_rows=150, switches_per_cpu=100)


def train_py(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "train.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def compose_train(overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        return compose("train", overrides=overrides)


@pytest.mark.parametrize("group,schemas", [("data", config.DATA), ("model", config.MODELS), ("task", config.TASKS)])
def test_every_group_option_composes_onto_its_schema(group, schemas):
    """Each data/, model/ and task/ yaml attaches its schema: typed by it, whatever the task."""
    task_of = {"can_migrate": "can_migrate", "synthetic": "can_migrate"}
    for path in sorted((REPO / "conf" / group).glob("*.yaml")):
        task = task_of.get(path.stem, path.stem) if group != "model" else "migration"
        cfg = compose_train([f"task={task}", f"{group}={path.stem}"])
        node = cfg[group]
        assert OmegaConf.get_type(node) is schemas[str(node._target_).rsplit(".", 1)[-1]], path
    for experiment in sorted((REPO / "conf" / "experiment").glob("*.yaml")):
        cfg = compose_train([f"experiment={experiment.stem}"])
        assert OmegaConf.get_type(cfg) is config.TrainConfig and OmegaConf.get_type(cfg.trainer) is config.TrainerConfig
        assert OmegaConf.get_type(cfg[group]) in schemas.values(), experiment.stem


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["data.window=abc"], "data.window='abc': expected an integer"),
        (["task.loss_options.focal_gamma=x"], "task.loss_options.focal_gamma='x': expected a number"),
        (["trainer.limit_train_batches=all"], "trainer.limit_train_batches='all': expected a number"),
        (["trainer.fast_dev_run=maybe"], "trainer.fast_dev_run='maybe': expected an integer, true or false"),
        (["data.features=kind"], "data.features='kind': expected a list"),
        (["model=mlp", "model.kernel_size=3"], "Could not override 'model.kernel_size'"),
    ],
)
def test_a_wrong_type_fails_at_composition_naming_its_key(overrides, message):
    with pytest.raises(Exception) as e:
        compose_train(overrides)
    assert one_line(e.value).startswith(message)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["data.window=0"], "data.window=0: must be >= 1"),
        (["trainer.max_epochs=-2"], "trainer.max_epochs=-2: must be >= -1"),
        (["data.window_by=pid"], "data.window_by='pid': expected cpu or task"),
        (["monitor_mode=maximum"], "monitor_mode='maximum': expected max or min"),
        (["+model.bias=false"], "model.bias: no such setting"),
        (["data.dataset_dir=/nonexistent"], "data.dataset_dir=/nonexistent: no such directory"),
    ],
)
def test_values_types_cannot_express_are_checked_before_training(overrides, message):
    with pytest.raises(UserError, match=re.escape(message)):
        config.check(compose_train(overrides))
    config.check(compose_train(["+trainer.enable_progress_bar=false"]))  # any other Lightning argument: as before


def test_checkpoint_run_configs_of_the_old_layout_fit_the_schemas():
    """A run config saved before the restructure (old DataModule module, datasets under data/,
    a key this version dropped) is not refused; a wrong type in a known key is, naming it."""
    old = {
        "data": {
            "_target_": "data.datamodule.MigrationDataModule",
            "dataset_dir": "data/sample",
            "window": 16,
            "window_by": "cpu",
            "val_fraction": 0.1,  # retired: the DataModule says so itself when it is rebuilt
        },
        "model": {"_target_": "models.network.tcn", "width": 14, "depth": 3, "kernel_size": 2, "dropout": 0.1},
        "task": {"_target_": "models.tasks.MigrationModule", "embed_dim": 0, "loss_options": {"focal_gamma": 0.0}},
    }
    assert config.run_config_error(old) is None and config.run_config_error(None) is None
    old["model"]["width"] = "wide"
    assert config.run_config_error(old) == "model.width='wide': expected an integer"


def test_cfg_job_prints_the_composed_config():
    out = train_py("--cfg", "job", "task=next_task", "model=lstm").stdout
    assert "_target_: data.dataset.datamodule.NextTaskDataModule" in out and "_target_: models.network.lstm" in out
    assert "monitor: val/top1" in out


def test_multirun_over_models_saves_config_and_metrics(dataset, tmp_path):
    train_py(
        "-m",
        "model=lstm,tcn,mlp",
        "task=migration",
        "debug=fdr",
        f"paths.dataset_dir={dataset}",
        f"paths.log_dir={tmp_path}",
        *QUIET,
        *TINY,
    )
    runs = sorted(tmp_path.glob("debug/multiruns/*/*/test_metrics.json"))
    assert len(runs) == 3
    for path in runs:
        saved = (path.parent / ".hydra" / "config.yaml").read_text()
        assert "_target_: models.network." in saved
        assert "test_unseen/baseline/logreg/bal_acc" in json.loads(path.read_text())


def test_optuna_study_persists_and_resumes(dataset, tmp_path):
    import optuna

    args = [
        "-m",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=1",
        "debug=fdr",
        "model=mlp",
        f"paths.dataset_dir={dataset}",
        f"paths.log_dir={tmp_path}",
        *QUIET,
    ]
    train_py(*args)
    train_py(*args, "hydra.sweeper.sampler.seed=2")  # resume the same study
    study = optuna.load_study(study_name="migration-mlp", storage=f"sqlite:///{tmp_path}/optuna/studies.db")
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 2 and all(0.0 <= t.value <= 1.0 for t in done)
    assert {"model.width", "model.depth", "data.window", "task.optimizer.lr"} <= set(done[0].params)


@pytest.mark.slow
def test_ddp_two_cpu_processes(dataset, tmp_path):
    proc = train_py(
        "trainer=ddp",
        "debug=fdr",
        "trainer.devices=2",
        f"paths.dataset_dir={dataset}",
        f"paths.log_dir={tmp_path}",
        *QUIET,
        *TINY,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in out and "GLOBAL_RANK: 1, MEMBER: 2/2" in out
    assert "distributed_backend=gloo" in out
    assert len(list(tmp_path.glob("debug/runs/*/test_metrics.json"))) == 1  # written by rank 0 only


def evaluate_py(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "evaluate.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize("task", ["migration", "next_task", "can_migrate"])
def test_loco_experiment_one_fold(dataset, tmp_path, task):
    """experiment=loco_<task> on one fold and seed (the sweep's keys replaced from the command
    line), then evaluate.py on the multirun directory writes the per-category table."""
    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("train", overrides=[f"experiment=loco_{task}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    assert params["seed"] == "1,2,3" and params["model"] == "mlp,lstm,tcn" and cfg.hydra.mode.name == "MULTIRUN"
    assert params["data.unseen"].count("[") == 7 and list(cfg.data.test_splits) == ["test_unseen"]
    train_py(
        f"experiment=loco_{task}",
        "data.unseen=[unseen]",
        "seed=1,2",
        "model=mlp",
        "debug=limit",
        f"paths.dataset_dir={dataset}",
        f"paths.log_dir={tmp_path}",
        *QUIET,
        *TINY,
    )
    (sweep,) = tmp_path.glob("debug/multiruns/*")
    results = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/results.json"))]
    assert [r["seed"] for r in results] == [1, 2] and all(r["stopped_by"] == "max_epochs" for r in results)
    for r in results:
        assert any(k.startswith("test_unseen/") for k in r["metrics"])
        assert not any(k.startswith("test_seen/") for k in r["metrics"])  # only the held-out category is tested
    evaluate_py(f"runs={sweep}", "loco=true", f"hydra.run.dir={tmp_path / 'eval'}")
    report = (tmp_path / "eval" / "report.md").read_text()
    assert f"Leave-one-category-out: {task}" in report and "mean over categories" in report
    loco = json.loads((tmp_path / "eval" / "metrics.json").read_text())["loco"]
    assert loco[0]["folds"] == ["unseen"] and loco[0]["cells"][loco[0]["metrics"][0]]["unseen"]["mlp"]["n"] == 2
