"""train.py through Hydra's compose API: every model x task pair and every experiment config gets a
fast_dev_run smoke test, a resume-from-checkpoint test and a determinism test. Runs on the
SYNTHETIC fixture dataset (tests/synthetic_dataset.py) with tiny widths."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tests.conftest import REPO
from tests.synthetic_dataset import write_synthetic_dataset
from train import train

CONF = REPO / "conf"
TASKS = ["migration", "next_task", "can_migrate"]
MODELS = ["mlp", "tcn", "lstm"]
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))
PRIMARY = {"migration": "bal_acc", "next_task": "top1", "can_migrate": "bal_acc"}

SETUPS = [pytest.param([f"task={t}", f"model={m}"], id=f"{t}-{m}") for t in TASKS for m in MODELS] + [
    pytest.param([f"experiment={e}"], id=e) for e in EXPERIMENTS
]

# tiny and quiet: the point is the plumbing, not the fit
FAST = [
    "model.width=4",
    "model.depth=1",
    "data.batch_size=64",
    "extras.print_config=false",
    "~callbacks.rich_progress_bar",
    "~callbacks.model_summary",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), migration_rows=200, switches_per_cpu=150)


def compose_cfg(dataset: Path, out: Path, overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose(
            "train",
            overrides=[
                *FAST,
                *overrides,
                f"paths.dataset_dir={dataset}",
                f"paths.output_dir={out}",
                f"paths.log_dir={out}",
            ],
        )


def run(dataset: Path, out: Path, overrides: list[str]) -> dict[str, float]:
    return train(compose_cfg(dataset, out, overrides))


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


@pytest.mark.parametrize("overrides", SETUPS)
def test_smoke_fast_dev_run(dataset, tmp_path, overrides):
    cfg = compose_cfg(dataset, tmp_path, [*overrides, "debug=fdr"])
    metrics = train(cfg)
    primary = cfg.monitor.split("/", 1)[1]
    for split in cfg.data.test_splits:  # LOCO experiments test test_unseen only
        assert 0.0 <= metrics[f"{split}/{primary}"] <= 1.0
        assert any(k.startswith(f"{split}/baseline/") and k.endswith(f"/{primary}") for k in metrics)
    assert (tmp_path / "test_metrics.json").exists()


@pytest.mark.parametrize("overrides", SETUPS)
def test_resume_from_checkpoint(dataset, tmp_path, overrides):
    run(dataset, tmp_path / "first", [*overrides, "debug=limit", "trainer.max_epochs=1"])
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    first = torch.load(last, map_location="cpu", weights_only=False)
    assert first["epoch"] == 0 and first["global_step"] > 0
    run(dataset, tmp_path / "resumed", [*overrides, "debug=limit", "trainer.max_epochs=2", f"ckpt_path={last}"])
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert resumed["epoch"] == 1 and resumed["global_step"] == 2 * first["global_step"]
    assert resumed["hyper_parameters"]["data_meta"] == first["hyper_parameters"]["data_meta"]


def results(out: Path) -> dict:
    import json

    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("overrides", SETUPS)
def test_same_seed_same_weights_and_metrics(dataset, tmp_path, overrides):
    a = run(dataset, tmp_path / "a", [*overrides, "debug=limit"])
    b = run(dataset, tmp_path / "b", [*overrides, "debug=limit"])
    assert a == b
    wa, wb = weights(tmp_path / "a/checkpoints/last.ckpt"), weights(tmp_path / "b/checkpoints/last.ckpt")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    ra, rb = results(tmp_path / "a"), results(tmp_path / "b")
    assert ra["metrics"] == rb["metrics"] == a and ra["stopped_by"] == rb["stopped_by"] == "max_epochs"
    assert ra["reproducible"] and ra["epochs"] == rb["epochs"] == 2 and ra["macs"] == rb["macs"] > 0


def test_training_is_bounded_by_epochs_not_wall_clock():
    """The default trainer stops by epochs and early stopping; max_time is an hour-long safety net."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose("train")
    days, hours, minutes, seconds = (int(v) for v in str(cfg.trainer.max_time).split(":"))
    assert cfg.trainer.max_epochs >= 5 and (days, hours) >= (0, 1)
    assert cfg.callbacks.early_stopping.monitor == cfg.monitor and cfg.callbacks.early_stopping.patience >= 2


def test_max_time_firing_warns_and_is_recorded(dataset, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="models.tasks.stop_reason"):
        run(
            dataset,
            tmp_path,
            ["task=migration", "model=mlp", "debug=limit", "trainer.max_epochs=5", "trainer.max_time=00:00:00:00"],
        )
    r = results(tmp_path)
    assert r["stopped_by"] == "max_time" and r["reproducible"] is False and r["epochs"] < 5
    assert any("NOT reproducible" in rec.getMessage() for rec in caplog.records)


def test_early_stopping_is_recorded(dataset, tmp_path):
    # min_delta=1 on a metric in [0, 1]: no epoch ever counts as an improvement
    run(
        dataset,
        tmp_path,
        [
            "task=migration",
            "model=mlp",
            "debug=limit",
            "trainer.max_epochs=6",
            "callbacks.early_stopping.patience=1",
            "callbacks.early_stopping.min_delta=1.0",
        ],
    )
    r = results(tmp_path)
    assert r["stopped_by"] == "early_stopping" and r["epochs"] < 6 and r["reproducible"]
    assert r["validation"]["bal_acc"] is not None and r["config"]["seed"] == r["seed"] == 12345


@pytest.mark.parametrize("task,model", [("migration", "tcn"), ("next_task", "lstm")])
def test_checkpoint_alone_rebuilds_model_and_data(dataset, tmp_path, task, model):
    from models.tasks import load_from_checkpoint, make_datamodule

    metrics = run(dataset, tmp_path, [f"task={task}", f"model={model}", "debug=limit"])
    best = next((tmp_path / "checkpoints").glob("epoch_*.ckpt"))
    module, cfg, meta = load_from_checkpoint(str(best))
    assert cfg.model._target_ == f"models.network.{model}" and meta["task"] == task
    dm = make_datamodule(cfg, meta, dataset_dir=str(dataset))
    split = dm.get_split("test_unseen")
    with torch.no_grad():
        logits = module.net(split.steps[split.index], split.tokens[split.index] if split.tokens is not None else None)
    scores = module.make_metrics()(module.metric_inputs(logits), split.target.long())
    key = PRIMARY[task]
    assert float(scores[key]) == pytest.approx(metrics[f"test_unseen/{key}"], abs=1e-6)
    if model == "tcn":
        k, depth = cfg.model.kernel_size, cfg.model.depth
        assert module.net.receptive_field == 1 + 2 * (k - 1) * (2**depth - 1)


def test_test_only_scores_the_given_checkpoint(dataset, tmp_path):
    fit = run(dataset, tmp_path / "fit", ["task=migration", "model=mlp", "debug=limit"])
    best = next((tmp_path / "fit" / "checkpoints").glob("epoch_*.ckpt"))
    tested = run(
        dataset, tmp_path / "test", ["task=migration", "model=mlp", "debug=limit", "train=false", f"ckpt_path={best}"]
    )
    for key in ("test_unseen/loss", "test_unseen/bal_acc"):
        assert tested[key] == pytest.approx(fit[key], abs=1e-6)


def test_tcn_receptive_field_is_logged(dataset, tmp_path):
    metrics = run(
        dataset, tmp_path, ["model=tcn", "model.depth=2", "model.kernel_size=3", "debug=limit", "trainer.max_epochs=1"]
    )
    assert metrics["model/receptive_field"] == 1 + 2 * 2 * (2**2 - 1)


@pytest.mark.parametrize("name", [p.stem for p in (CONF / "debug").glob("*.yaml")])
def test_debug_overlays_compose(dataset, tmp_path, name):
    cfg = compose_cfg(dataset, tmp_path, [f"debug={name}"])
    assert cfg.trainer.max_epochs >= 1 and cfg.task_name == "debug"


@pytest.mark.parametrize("trainer", ["cpu", "gpu", "ddp"])
def test_trainer_configs_compose(dataset, tmp_path, trainer):
    cfg = compose_cfg(dataset, tmp_path, [f"trainer={trainer}"])
    assert cfg.trainer.deterministic in (True, "warn")


def test_monitor_is_named_once():
    for task in ("migration", "next_task", "can_migrate"):
        with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
            cfg = compose("train", overrides=[f"task={task}", "hparams_search=optuna"], return_hydra_config=True)
        monitor = cfg.monitor
        assert cfg.callbacks.model_checkpoint.monitor == monitor
        assert cfg.callbacks.early_stopping.monitor == monitor
        assert cfg.task.monitor == monitor and cfg.optimized_metric == f"{monitor}_best"
        assert OmegaConf.to_container(cfg.hydra.sweeper, resolve=False)["direction"] == "${monitor_mode}imize"


@pytest.mark.parametrize("task", ["migration", "next_task"])
def test_smoke_on_the_shipped_sample_dataset(tmp_path, task):
    from tests.conftest import require

    sample = REPO / "datasets" / "sample"
    require((sample / task / "train.parquet").exists(), "the shipped dataset datasets/sample (python -m data.build)")
    metrics = run(sample, tmp_path, [f"task={task}", "debug=fdr"])
    assert any(k.startswith("test_unseen/baseline/") for k in metrics)
