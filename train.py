"""Train a model on a scheduler-decision task, then test it on seen and unseen workloads.

    python train.py                          # migration, TCN, on datasets/sample
    python train.py model=lstm task=next_task
    python train.py -m model=lstm,tcn,mlp    # multirun
    python train.py --help                   # config groups (conf/)

Everything is composed by Hydra from conf/train.yaml onto the typed schemas of models/config.py
(a wrong type or value is one line naming its key) and built through `_target_`s; the run
directory (logs/<task_name>/runs/<time>/) holds the saved config (.hydra/), checkpoints, logs,
test_metrics.json (every final metric) and results.json (the same metrics with what
`evaluate.py runs=DIR` needs without loading the model: why training stopped, the seed, the
resolved config and data split, the best checkpoint and its validation score, params and MACs).

Training is bounded by trainer.max_epochs and early stopping on the monitored validation metric,
so the same command gives the same weights on any machine; trainer.max_time is a safety net that
warns (and records stopped_by: max_time) when it fires.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from models import config  # noqa: E402 - registers the schemas conf/train.yaml is composed onto
from plumbing.hydra_cli import entry_point, run  # noqa: E402

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and test as configured; returns every final metric (plus `<monitor>_best`)."""
    # deferred on purpose: torch and Lightning take seconds to load, and `--help`, `--cfg job`
    # and a bad setting (config.check) are answered before they do
    import pytorch_lightning as pl
    import torch

    from models.tasks import checkpoint_hparams
    from models.tasks.hydra_utils import instantiate_group
    from models.tasks.results import print_results, run_results, write_results
    from models.tasks.stop_reason import StopReason

    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True, verbose=False)  # the seed is in the saved config
    if cfg.get("threads"):
        torch.set_num_threads(cfg.threads)

    # Resuming keeps the checkpoint's data metadata (normalisation, encodings, window).
    data_meta = None
    if cfg.get("ckpt_path"):
        data_meta = checkpoint_hparams(cfg.ckpt_path)["data_meta"]
    log.info("Instantiating datamodule <%s>", cfg.data._target_)
    datamodule = hydra.utils.instantiate(cfg.data, data_meta=data_meta)
    datamodule.prepare_data()
    datamodule.setup("fit")

    log.info("Instantiating task <%s> with backbone <%s>", cfg.task._target_, cfg.model._target_)
    module = hydra.utils.instantiate(
        cfg.task, backbone=cfg.model, data_meta=datamodule.meta, run_config=OmegaConf.to_container(cfg, resolve=True)
    )
    stop = StopReason()  # always on: results.json says whether the run can be reproduced
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=[*instantiate_group(cfg.get("callbacks")), stop],
        logger=instantiate_group(cfg.get("logger")) or False,
    )

    metrics: dict[str, float] = {}
    if cfg.get("train"):
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_score if checkpoint is not None else None
    best_path = checkpoint.best_model_path if checkpoint is not None else ""
    # test only (train=false): the weights to test are the given checkpoint's
    test_path = best_path or (None if cfg.get("train") else cfg.get("ckpt_path"))

    if cfg.get("test") and not datamodule.test_split_names:
        log.warning("No non-empty test split among %s: skipping the test", list(cfg.data.test_splits))
    elif cfg.get("test"):
        if not test_path:
            log.warning("No best checkpoint (fast_dev_run or no validation): testing the current weights")
        trainer.test(module, datamodule=datamodule, ckpt_path=test_path or None, verbose=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    metrics[f"{cfg.monitor}_best"] = float(best) if best is not None else metrics.get(cfg.monitor, float("nan"))
    if trainer.is_global_zero:
        name = f"{cfg.task._target_.rsplit('.', 1)[-1]} / {cfg.model._target_.rsplit('.', 1)[-1]}"
        print_results(metrics, f"{name}: test metrics (model and baselines)", order=list(module.metric_names))
        if best_path:
            log.info("Best checkpoint: %s", best_path)
        write_results(metrics, Path(trainer.default_root_dir) / "test_metrics.json")
        results = run_results(cfg, trainer, module, datamodule, metrics, stop.stopped_by, best, best_path)
        write_results(results, Path(trainer.default_root_dir) / "results.json")
    return metrics


@hydra.main(version_base="1.3", config_path="conf", config_name="train.yaml")
@entry_point("train.py")
def main(cfg: DictConfig) -> float | None:
    config.check(cfg)
    from models.tasks.hydra_utils import extras  # deferred with torch (models.tasks loads it), see train()

    extras(cfg)
    metrics = train(cfg)
    # the value an Optuna sweep optimises (hparams_search sets optimized_metric)
    return metrics.get(cfg.get("optimized_metric")) if cfg.get("optimized_metric") else None


if __name__ == "__main__":
    run(main, "train.py")  # a bad setting or input is one line and exit 1; Ctrl-C exit 130
