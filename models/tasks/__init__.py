"""Task LightningModules and the checkpoint API used by evaluate.py and export/.

module, cfg, meta = load_from_checkpoint("logs/train/runs/.../checkpoints/best.ckpt")
net = module.net                      # forward(x (B, L, F) float, tokens (B, L) int64 | None)
dm = make_datamodule(cfg, meta)       # same features/normalisation/encoding/window as training
dm = make_datamodule(cfg, meta, dataset_dir="other/dataset", test_splits=["workload/hackbench"])
split = dm.make_split(frame, "extra") # windows of any decision table (e.g. from data.dataset.replay)
"""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from models.tasks.base import DecisionModule
from models.tasks.can_migrate import CanMigrateModule
from models.tasks.migration import MigrationModule
from models.tasks.next_task import NextTaskModule
from models.tasks.next_task_candidates import NextTaskCandidatesModule

TASKS: dict[str, type[DecisionModule]] = {
    "migration": MigrationModule,
    "next_task": NextTaskModule,
    "can_migrate": CanMigrateModule,
    "next_task_candidates": NextTaskCandidatesModule,
}

__all__ = [
    "TASKS",
    "DecisionModule",
    "MigrationModule",
    "NextTaskModule",
    "NextTaskCandidatesModule",
    "CanMigrateModule",
    "checkpoint_hparams",
    "load_from_checkpoint",
    "make_datamodule",
]


def checkpoint_hparams(path: str, map_location: str = "cpu") -> dict:
    """A checkpoint's saved hyper-parameters: `data_meta` and `run_config` (the resolved config)."""
    return torch.load(path, map_location=map_location, weights_only=False)["hyper_parameters"]


def load_from_checkpoint(path: str, map_location: str = "cpu") -> tuple[DecisionModule, DictConfig, dict]:
    """(module in eval mode, the run's resolved config, the data metadata) from a checkpoint alone."""
    hparams = checkpoint_hparams(path, map_location)
    meta = hparams["data_meta"]
    module = TASKS[meta["task"]].load_from_checkpoint(path, map_location=map_location, weights_only=False)
    return module.eval(), OmegaConf.create(hparams.get("run_config") or {}), meta


# Checkpoints written before the tree was restructured (docs/paths.md) name the DataModule and
# the shipped datasets by their old places.
MOVED_TARGETS = {"data.datamodule.": "data.dataset.datamodule."}
MOVED_DATASETS = {f"data/{name}": f"datasets/{name}" for name in ("sample", "sample_guest", "traces", "guest_runs")}


def _current_places(data_cfg: DictConfig) -> DictConfig:
    data_cfg = data_cfg.copy()
    for old, new in MOVED_TARGETS.items():
        if str(data_cfg.get("_target_", "")).startswith(old):
            data_cfg._target_ = new + data_cfg._target_[len(old) :]
    dataset_dir = str(data_cfg.get("dataset_dir", "")).rstrip("/")
    for old, new in MOVED_DATASETS.items():
        if dataset_dir == old or dataset_dir.endswith("/" + old):
            data_cfg.dataset_dir = dataset_dir[: len(dataset_dir) - len(old)] + new
    return data_cfg


def make_datamodule(cfg: DictConfig, data_meta: dict, **overrides):
    """The run's DataModule with its fitted metadata frozen; `overrides` replace data config keys
    (dataset_dir, test_splits, batch sizes...). Window, encoding and statistics come from the meta."""
    return instantiate(_current_places(cfg.data), data_meta=data_meta, **overrides)
