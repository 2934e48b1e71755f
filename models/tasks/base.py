"""The LightningModule shared by every task: it owns `self.net`, the loss and the metrics.

Everything needed to rebuild the module is saved as hyper-parameters: the backbone, optimizer
and scheduler configs, the DataModule's metadata (features, normalisation, encodings, window)
and the full resolved run config, so `<Module>.load_from_checkpoint(path)` (or the generic
`models.tasks.load_from_checkpoint`) needs nothing but the checkpoint file.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities import rank_zero_info
from torch import nn
from torchmetrics import MetricCollection

from models.network import build_net


def plain(cfg):
    """DictConfig -> plain containers (checkpoints must not depend on OmegaConf objects)."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


class DecisionModule(pl.LightningModule):
    """Subclasses define `make_loss`, `make_metrics` and `metric_inputs` for their decision."""

    task_name: str = ""  # the DataModule task whose metadata this module accepts
    metric_names: tuple[str, ...] = ()  # display order of make_metrics()' keys

    def __init__(
        self,
        backbone: dict,
        optimizer: dict,
        data_meta: dict,
        scheduler: dict | None = None,
        embed_dim: int = 0,
        monitor: str | None = None,
        run_config: dict | None = None,
        loss_options: dict | None = None,
    ):
        super().__init__()
        self.save_hyperparameters(
            {
                "backbone": plain(backbone),
                "optimizer": plain(optimizer),
                "data_meta": plain(data_meta),
                "scheduler": plain(scheduler),
                "embed_dim": embed_dim,
                "monitor": monitor,
                "run_config": plain(run_config),
                "loss_options": plain(loss_options) or {},
            }
        )
        self.meta = self.hparams.data_meta
        if self.meta.get("task") != self.task_name:
            raise ValueError(f"{type(self).__name__} got data for task {self.meta.get('task')!r}")
        self.net = build_net(self.hparams.backbone, self.meta, embed_dim)
        self.loss_fn = self.make_loss()
        self.val_metrics = self.make_metrics().clone(prefix="val/")
        self.test_metrics = nn.ModuleDict()
        self.test_names: list[str] = []

    # ---------------------------------------------------------------- task interface
    def make_loss(self) -> nn.Module:
        """The task's loss, shaped by `self.hparams.loss_options` (the task config's `loss_options`)."""
        raise NotImplementedError

    def make_metrics(self) -> MetricCollection:
        """A fresh metric collection; baselines are scored with the same one."""
        raise NotImplementedError

    def metric_inputs(self, logits: torch.Tensor) -> torch.Tensor:
        """What the metrics receive as `preds` for these logits."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(logits, y)

    # ---------------------------------------------------------------- lightning hooks
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(batch["x"], batch.get("tokens"))

    def setup(self, stage: str) -> None:
        if stage == "test":
            dm = self.trainer.datamodule if self.trainer else None
            self.test_names = (
                list(dm.test_split_names) if dm is not None and hasattr(dm, "test_split_names") else ["test"]
            )
            self.test_metrics = nn.ModuleDict(
                {n.replace("/", "__"): self.make_metrics().clone(prefix=f"{n}/") for n in self.test_names}
            )

    def on_train_start(self) -> None:
        n_params = sum(p.numel() for p in self.net.parameters())
        info = {"model/params": float(n_params)}
        rf = self.net.receptive_field
        if rf is not None:
            info["model/receptive_field"] = float(rf)
            rank_zero_info(f"TCN receptive field: {rf} steps (window {self.meta['window']})")
        self.log_dict(info, sync_dist=True)

    def _step(self, batch):
        logits = self(batch)
        return logits, self.loss(logits, batch["y"])

    def training_step(self, batch, batch_idx):
        _, loss = self._step(batch)
        self.log(
            "train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch["y"]), sync_dist=True
        )
        return loss

    def validation_step(self, batch, batch_idx):
        logits, loss = self._step(batch)
        self.log("val/loss", loss, on_epoch=True, batch_size=len(batch["y"]), sync_dist=True)
        self.val_metrics.update(self.metric_inputs(logits), batch["y"].long())
        self.log_dict(self.val_metrics, on_epoch=True, prog_bar=True)

    def test_step(self, batch, batch_idx, dataloader_idx: int = 0):
        name = self.test_names[dataloader_idx] if self.test_names else "test"
        logits, loss = self._step(batch)
        metrics = self.test_metrics[name.replace("/", "__")]
        metrics.update(self.metric_inputs(logits), batch["y"].long())
        self.log(f"{name}/loss", loss, batch_size=len(batch["y"]), add_dataloader_idx=False, sync_dist=True)
        self.log_dict(metrics, on_epoch=True, add_dataloader_idx=False)

    def configure_optimizers(self):
        optimizer = instantiate(self.hparams.optimizer)(params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        scheduler = instantiate(self.hparams.scheduler)(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": self.hparams.monitor}}
