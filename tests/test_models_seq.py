"""Loss options of the task modules (focal loss for rare positives, label smoothing for next_task)
and their plumbing from the task configs into checkpoints. Tiny tensors and the SYNTHETIC
fixture dataset (tests/synthetic_dataset.py); a few seconds."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch import nn

from models.tasks.migration import BinaryFocalLoss, MigrationModule
from models.tasks.next_task import NextTaskModule
from tests.conftest import REPO

CONF = REPO / "conf"
BACKBONE = {"_target_": "models.network.mlp", "width": 4, "depth": 1}
OPTIMIZER = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 0.01}
MIGRATION_META = {"task": "migration", "n_features": 3, "window": 2, "n_out": 1, "n_tokens": 0, "pos_weight": 7.0}
NEXT_TASK_META = {"task": "next_task", "n_features": 3, "window": 2, "n_out": 6, "n_tokens": 7, "unknown_token": 4}


def test_focal_gamma_zero_is_weighted_bce():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, generator=g) * 3
    y = (torch.rand(64, generator=g) < 0.2).float()
    want = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(7.0))(logits, y)
    assert torch.allclose(BinaryFocalLoss(0.0, 7.0)(logits, y), want, atol=1e-6)


def test_focal_loss_down_weights_easy_examples_only():
    focal, bce = BinaryFocalLoss(2.0, 1.0), nn.BCEWithLogitsLoss()
    easy_neg = (torch.tensor([-6.0]), torch.tensor([0.0]))  # p = 0.0025: (1 - p_t)^2 ~ 6e-6
    hard_pos = (torch.tensor([-3.0]), torch.tensor([1.0]))  # p = 0.047: (1 - p_t)^2 ~ 0.91
    assert focal(*easy_neg) < 1e-4 * bce(*easy_neg)
    p = torch.sigmoid(torch.tensor(-3.0))
    assert torch.allclose(focal(*hard_pos), (1 - p) ** 2 * bce(*hard_pos), atol=1e-6)
    with pytest.raises(ValueError, match="focal_gamma"):
        BinaryFocalLoss(-1.0)


def test_binary_module_picks_its_loss_from_loss_options():
    plain = MigrationModule(BACKBONE, OPTIMIZER, MIGRATION_META)
    assert isinstance(plain.loss_fn, nn.BCEWithLogitsLoss) and float(plain.loss_fn.pos_weight) == 7.0
    focal = MigrationModule(BACKBONE, OPTIMIZER, MIGRATION_META, loss_options={"focal_gamma": 2.0})
    assert isinstance(focal.loss_fn, BinaryFocalLoss)
    assert focal.loss_fn.gamma == 2.0 and float(focal.loss_fn.pos_weight) == 7.0
    # load_from_checkpoint rebuilds the module from its hyper-parameters alone
    rebuilt = MigrationModule(**focal.hparams)
    assert isinstance(rebuilt.loss_fn, BinaryFocalLoss) and rebuilt.loss_fn.gamma == 2.0


def test_next_task_label_smoothing_option():
    assert NextTaskModule(BACKBONE, OPTIMIZER, NEXT_TASK_META, embed_dim=2).loss_fn.label_smoothing == 0.0
    smooth = NextTaskModule(BACKBONE, OPTIMIZER, NEXT_TASK_META, embed_dim=2, loss_options={"label_smoothing": 0.1})
    assert smooth.loss_fn.label_smoothing == pytest.approx(0.1)


def test_checkpoint_keeps_the_loss(tmp_path):
    """A focal-loss run's checkpoint restores the focal loss (not silently plain BCE)."""
    from tests.synthetic_dataset import write_synthetic_dataset
    from tests.test_train import run

    dataset = write_synthetic_dataset(tmp_path / "ds", migration_rows=200, switches_per_cpu=150)
    run(
        dataset,
        tmp_path / "out",
        [
            "task=migration",
            "model=mlp",
            "debug=limit",
            "trainer.max_epochs=1",
            "task.loss_options.focal_gamma=1.5",
            "test=false",
        ],
    )
    module = MigrationModule.load_from_checkpoint(
        tmp_path / "out/checkpoints/last.ckpt", map_location="cpu", weights_only=False
    )
    assert isinstance(module.loss_fn, BinaryFocalLoss) and module.loss_fn.gamma == 1.5


@pytest.mark.parametrize(
    "task,key,default",
    [("migration", "focal_gamma", 0.0), ("can_migrate", "focal_gamma", 0.0), ("next_task", "label_smoothing", 0.0)],
)
def test_task_configs_name_their_loss_options(task, key, default):
    assert compose_train([f"task={task}"]).task.loss_options[key] == default


def compose_train(overrides: list[str]):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        return compose("train", overrides=overrides)


@pytest.mark.parametrize("model,gamma", [("lstm", 2.0), ("tcn", 0.0), ("mlp", 0.0)])
def test_migration_focal_loss_is_the_lstm_default_only(model, gamma):
    """conf/task_model/migration_lstm.yaml: the focal loss helped the LSTM on validation, not the others."""
    assert compose_train(["task=migration", f"model={model}"]).task.loss_options.focal_gamma == gamma


def test_next_task_lstm_default_window_and_width():
    cfg = compose_train(["task=next_task", "model=lstm"])
    assert (cfg.data.window, cfg.model.width) == (8, 32)
    migration = compose_train(["task=migration", "model=lstm"])  # the overlay stays with its task
    assert (migration.data.window, migration.model.width) == (16, 16)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from tests.synthetic_dataset import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("ds"), migration_rows=200, switches_per_cpu=150)


@pytest.mark.parametrize("task", ["migration", "next_task", "can_migrate"])
@pytest.mark.parametrize("model", ["lstm", "tcn", "mlp"])
def test_default_models_fit_the_winner_mac_budget(synthetic, task, model):
    """Every default model x task stays eligible for the winner (conf/eval.yaml budget_macs)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from models.cost import macs_per_decision

    budget = OmegaConf.load(CONF / "eval.yaml").winner.budget_macs
    cfg = compose_train([f"task={task}", f"model={model}", f"paths.dataset_dir={synthetic}"])
    dm = instantiate(cfg.data)
    dm.setup("fit")
    module = instantiate(cfg.task, backbone=cfg.model, data_meta=dm.meta)
    assert 0 < macs_per_decision(module.net, *dm.get_split("train").last_window()) <= budget
