"""The schema of a training run (conf/train.yaml and its groups) and the checks types cannot make.

Hydra composes the yaml onto these dataclasses, so a value of the wrong type fails at composition
with a line naming its key. The groups whose options take different keys (data/*, model/*,
task/*) have one schema per option, attached first in that yaml's defaults list
(`- /schema/model/tcn@_here_`); the trainer, paths and extras, the same for every option, are
typed in TrainConfig. Fields are MISSING where the yaml gives the value; minimums and allowed
words sit beside the types (plumbing.config_schema.setting). Importing this module registers the
schemas (train.py, evaluation/config.py and the tests' conftest do); it loads no torch.

Field order is the yaml's key order (it is the order `--cfg job` prints): where options share
keys, small bases are combined so that the shared head, the option's own keys and the shared
tail come in that order.
"""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from data.dataset.splits import RUN_COLUMNS
from models.checkpoint import check_checkpoint
from plumbing.config_schema import check_values, override_key, register, setting, typed_overrides, undeclared
from plumbing.hydra_cli import UserError, type_error

# ---- data/*.yaml: the DataModules of data/dataset/datamodule.py


@dataclass
class _DataSource:
    _target_: str = MISSING
    dataset_dir: str = MISSING
    window: int = setting(min=1)


@dataclass
class Shift:
    """data.shift: train on the runs whose `by` value is in `train`, test on those in `test`
    (test_unseen); runs in neither are dropped (data.dataset.splits.split_runs). by null: no shift"""

    by: str | None = setting(None, choices=RUN_COLUMNS)
    train: list[str] | None = None  # load_pct values as whole numbers: [100, 200]
    test: list[str] | None = None


@dataclass
class Where:
    """data.where: keep only the runs whose value of each set column is listed (before splitting);
    all null: every run"""

    category: list[str] | None = None
    workload: list[str] | None = None
    load_pct: list[int] | None = None
    topology: list[str] | None = None


@dataclass
class _DataLoading:
    batch_size: int = setting(min=1)
    eval_batch_size: int = setting(min=1)
    num_workers: int = setting(min=0)
    unseen: Any = MISSING  # null (the dataset's own test_unseen), a category or a list of them
    # shift, where and train_workloads default here, so a data/*.yaml need not name them. Unset,
    # shift and where are nodes of nulls, not null: OmegaConf cannot merge an override such as
    # data.shift={by: load_pct, train: [...], test: [...]} into a null structured node.
    shift: Shift = field(default_factory=Shift)
    where: Where = field(default_factory=Where)  # e.g. {topology: [2x2x2]}
    train_workloads: list[str] | None = None  # null, or the workloads to train on (the others: test_unseen)
    val_category: str | None = MISSING  # auto, a category, or null
    val_runs: int = setting(min=0)
    test_splits: list[str] = MISSING
    features: list[str] | None = MISSING  # null: all inputs


BALANCE = ("loss", "sampler", "none")


# data.inputs of data/migration.yaml: the names of data.dataset.tables.MIGRATION_INPUT_SETS (spelt
# out, as CAN_MIGRATE_INPUTS is: tables loads pandas; tests/test_migration_state.py holds them
# equal). Its default is base, so a run config saved before the setting still fits.
MIGRATION_INPUTS = ("base", "state")


@dataclass
class _Migration:
    inputs: str = setting(MIGRATION_INPUTS[0], choices=MIGRATION_INPUTS)
    window_by: str = setting(choices=("cpu", "task"))
    balance: str = setting(choices=BALANCE)


@dataclass
class MigrationData(_DataLoading, _Migration, _DataSource):
    """data/migration.yaml"""


@dataclass
class _NextTask:
    encoding: str = setting(choices=("mtf", "pid_vocab"))
    k: int = setting(min=1)
    max_vocab: int | None = setting(min=1)


@dataclass
class NextTaskData(_DataLoading, _NextTask, _DataSource):
    """data/next_task.yaml"""


@dataclass
class _NextTaskCandidates:
    k: int = setting(min=1)
    max_candidates: int = setting(min=3)  # top-3 is reported


@dataclass
class NextTaskCandidatesData(_DataLoading, _NextTaskCandidates, _DataSource):
    """data/next_task_candidates.yaml"""


# data.inputs: the names of data.can_migrate.features.FEATURE_SETS. The kernel computes only the
# first (Chen's 15; data.dataset.datamodule.DEFAULT_INPUTS): python -m export refuses the others.
CAN_MIGRATE_INPUTS = ("chen", "chen_level", "extended")
KERNEL_INPUTS = CAN_MIGRATE_INPUTS[0]


@dataclass
class Future:
    """data.future: label forced_future's window (data/dataset/forced_future.py): the task's
    next `calls` calls strictly after the current one, within `horizon_ms` guest milliseconds"""

    calls: int = setting(8, min=1)
    horizon_ms: float = setting(25.0, min=0.001)


@dataclass
class _CanMigrate:
    # data.can_migrate.features.LABELS, and forced_future (data.dataset.datamodule.CAN_MIGRATE_LABELS)
    label: str = setting(choices=("can_migrate", "forced", "forced_future"))
    inputs: str = setting(choices=CAN_MIGRATE_INPUTS)
    # window_by and future default here, so that a run config saved before them still fits
    window_by: str = setting("cpu", choices=("cpu", "task"))
    future: Future = field(default_factory=Future)
    balance: str = setting(choices=BALANCE)


@dataclass
class CanMigrateData(_DataLoading, _CanMigrate, _DataSource):
    """data/can_migrate.yaml"""


@dataclass
class SyntheticRows:
    """data/synthetic.yaml `synthetic:` (data.can_migrate.synthetic.SyntheticSpec checks the ranges)"""

    rows: int = setting(min=1)
    seed: int = setting(min=0)
    flag_p: float = MISSING
    length_mean: float = MISSING
    length_std: float = MISSING
    length_max: int = MISSING
    load_mean: float = MISSING
    faults_low: int = MISSING
    faults_high: int = MISSING
    numa_p: float = MISSING


@dataclass
class SyntheticData(CanMigrateData):
    """data/synthetic.yaml (can_migrate's keys, then these)"""

    source: str = setting(choices=("synthetic", "both"))
    synthetic: SyntheticRows = field(default_factory=SyntheticRows)


# ---- model/*.yaml: the backbones of models/network.py


@dataclass
class _Net:
    _target_: str = MISSING
    width: int = setting(min=1)
    depth: int = setting(min=1)


@dataclass
class _Kernel:
    kernel_size: int = setting(min=1)


@dataclass
class _Dropout:
    dropout: float = setting(min=0.0)


@dataclass
class MLPModel(_Dropout, _Net):
    """model/mlp.yaml"""


@dataclass
class LSTMModel(_Dropout, _Net):
    """model/lstm.yaml"""


@dataclass
class TCNModel(_Dropout, _Kernel, _Net):
    """model/tcn.yaml"""


# ---- task/*.yaml: the LightningModules of models/tasks/


@dataclass
class BinaryLoss:
    focal_gamma: float = setting(min=0.0)  # > 0: focal loss; 0: BCE with pos_weight


@dataclass
class NextTaskLoss:
    label_smoothing: float = setting(min=0.0)


@dataclass
class _Task:
    _target_: str = MISSING
    _recursive_: bool = MISSING
    monitor: str = MISSING
    embed_dim: int = setting(min=0)
    loss_options: Any = MISSING
    optimizer: dict[str, Any] = MISSING  # any torch optimizer (_partial_): its arguments vary
    scheduler: dict[str, Any] | None = MISSING


@dataclass
class MigrationTask(_Task):
    """task/migration.yaml `task:`"""

    loss_options: BinaryLoss = field(default_factory=BinaryLoss)


@dataclass
class CanMigrateTask(_Task):
    """task/can_migrate.yaml `task:`"""

    loss_options: BinaryLoss = field(default_factory=BinaryLoss)


@dataclass
class NextTaskTask(_Task):
    """task/next_task.yaml `task:`"""

    loss_options: NextTaskLoss = field(default_factory=NextTaskLoss)


@dataclass
class NextTaskCandidatesTask(_Task):
    """task/next_task_candidates.yaml `task:`"""

    loss_options: NextTaskLoss = field(default_factory=NextTaskLoss)


# ---- the top: trainer/*, paths/*, extras/* and conf/train.yaml itself


@dataclass
class TrainerConfig:
    """trainer/*.yaml: the pytorch_lightning.Trainer arguments these configs set (those not in
    trainer/default.yaml at Lightning's own default) and the numeric ones that need a type check
    (a string there ends in a bare error deep in the fit loop). Any other Trainer argument may be
    added with +trainer.NAME=VALUE, as Lightning takes it."""

    OPEN: ClassVar[bool] = True  # plumbing.config_schema.undeclared: + keys are Trainer arguments

    _target_: str = MISSING
    default_root_dir: str | None = MISSING
    min_epochs: int | None = setting(min=-1)
    max_epochs: int | None = setting(min=-1)
    max_time: Any = MISSING  # DD:HH:MM:SS, a dict of units, or null
    accelerator: str = MISSING
    devices: Any = MISSING  # a count, a list of indices, or auto
    check_val_every_n_epoch: int | None = setting(min=-1)
    log_every_n_steps: int | None = setting(min=-1)
    gradient_clip_val: int | float | None = setting(min=0)
    deterministic: Any = MISSING  # true, false or warn
    strategy: Any = "auto"  # a name or a _target_ config (trainer/ddp.yaml)
    num_nodes: int = setting(1, min=-1)
    sync_batchnorm: bool = False
    detect_anomaly: bool = False
    fast_dev_run: int | bool = False
    limit_train_batches: int | float | None = setting(None, min=0)
    limit_val_batches: int | float | None = setting(None, min=0)
    limit_test_batches: int | float | None = setting(None, min=0)
    limit_predict_batches: int | float | None = setting(None, min=0)
    max_steps: int = setting(-1, min=-1)
    min_steps: int | None = setting(None, min=-1)
    val_check_interval: int | float | None = setting(None, min=0)
    overfit_batches: int | float = setting(0.0, min=0)
    accumulate_grad_batches: int = setting(1, min=-1)
    num_sanity_val_steps: int | None = setting(None, min=-1)


@dataclass
class PathsConfig:
    """paths/default.yaml"""

    root_dir: str = MISSING
    data_dir: str = MISSING
    dataset_dir: str = MISSING
    log_dir: str = MISSING
    output_dir: str | None = MISSING  # the run folder Hydra makes (none in `--cfg job --resolve`)


@dataclass
class ExtrasConfig:
    """extras/default.yaml"""

    ignore_warnings: bool = MISSING
    print_config: bool = MISSING


@dataclass
class TrainConfig:
    """conf/train.yaml"""

    monitor: str = MISSING
    monitor_mode: str = setting(choices=("max", "min"))
    task_name: str = MISSING
    tags: list[str] = MISSING
    train: bool = MISSING
    test: bool = MISSING
    ckpt_path: str | None = MISSING
    seed: int | None = setting(min=0)
    threads: int | None = setting(min=0)
    data: Any = MISSING  # one of the data schemas above, attached by the data/*.yaml chosen
    default_dataset: str = MISSING
    task: Any = MISSING
    model: Any = MISSING
    callbacks: dict[str, Any] = field(default_factory=dict)  # name -> a Lightning callback config, or null
    logger: dict[str, Any] = field(default_factory=dict)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    extras: ExtrasConfig = field(default_factory=ExtrasConfig)
    require_features: bool = MISSING
    optimized_metric: str | None = MISSING


# the schemas of a group's options, by the class name their `_target_` ends in (also the old
# module paths of checkpoints written before the restructure: docs/paths.md)
DATA = {
    "MigrationDataModule": MigrationData,
    "NextTaskDataModule": NextTaskData,
    "NextTaskCandidatesDataModule": NextTaskCandidatesData,
    "CanMigrateDataModule": CanMigrateData,
    "SyntheticCanMigrateDataModule": SyntheticData,
}
MODELS = {"mlp": MLPModel, "lstm": LSTMModel, "tcn": TCNModel}
TASKS = {
    "MigrationModule": MigrationTask,
    "NextTaskModule": NextTaskTask,
    "CanMigrateModule": CanMigrateTask,
    "NextTaskCandidatesModule": NextTaskCandidatesTask,
}

register("train", TrainConfig)
for _name, _schema in {
    "migration": MigrationData,
    "next_task": NextTaskData,
    "next_task_candidates": NextTaskCandidatesData,
    "can_migrate": CanMigrateData,
    "synthetic": SyntheticData,
}.items():
    register(_name, _schema, "data")
for _name, _schema in MODELS.items():
    register(_name, _schema, "model")
for _name, _schema in {
    "migration": MigrationTask,
    "next_task": NextTaskTask,
    "can_migrate": CanMigrateTask,
    "next_task_candidates": NextTaskCandidatesTask,
}.items():
    register(_name, _schema, "task")


def features_given(cfg: DictConfig) -> bool:
    """data.features was set on the command line (null, "all inputs", counts as given)."""
    typed = typed_overrides()
    if typed is None:  # composed outside a Hydra run (tests): only a value counts
        return cfg.data.get("features") is not None
    return any(override_key(o) == "data.features" for o in typed)


def check(cfg: DictConfig) -> None:
    """What types cannot say, checked before anything runs: minimums and allowed words, keys no
    schema knows, the dataset folder, the checkpoint to resume, experiment=feature_count's
    data.features."""
    if cfg.get("require_features") and not features_given(cfg):
        raise UserError(
            "experiment=feature_count needs data.features: run `python evaluate.py ckpt_path=<best ckpt>` "
            "first and paste the train.py command it prints (also in its ranking.json)"
        )
    check_values(cfg)
    unknown = undeclared(cfg)
    if unknown:
        raise UserError(f"{', '.join(unknown)}: no such setting (python train.py --cfg job lists them)")
    if cfg.get("ckpt_path"):
        check_trained(cfg.ckpt_path)
    dataset = cfg.data.get("dataset_dir")
    if dataset and not Path(dataset).is_dir():
        raise UserError(
            f"data.dataset_dir={dataset}: no such directory (build one with "
            f"`python -m data.build --traces DIR --out DATASET`)"
        )
    if dataset and not any(Path(dataset).glob("*/train.parquet")):
        raise UserError(
            f"data.dataset_dir={dataset}: not a dataset (no <task>/train.parquet; build one "
            f"with `python -m data.build --traces DIR --out DATASET`)"
        )


def run_config_error(run_config: dict | None) -> str | None:
    """Why a checkpoint's saved run config does not fit the schemas of its data, model and task
    (what evaluate.py and the export rebuild from it), or None. Only declared keys are checked:
    a key an older version wrote and this one dropped is left to the code that reads it (the
    DataModule explains data.val_fraction), so older checkpoints are not refused for it."""
    for group, schemas in (("data", DATA), ("model", MODELS), ("task", TASKS)):
        node = (run_config or {}).get(group)
        schema = (
            schemas.get(str((node or {}).get("_target_", "")).rsplit(".", 1)[-1]) if isinstance(node, dict) else None
        )
        if schema is None:
            continue
        fields = {f.name for f in dataclasses.fields(schema)}
        try:
            OmegaConf.merge(
                OmegaConf.create({group: OmegaConf.structured(schema)}),
                {group: {k: v for k, v in node.items() if k in fields}},
            )
        except OmegaConfBaseException as e:
            return type_error(e) or f"{group}: {str(e).splitlines()[0]}"
    return None


def check_trained(path, key: str = "ckpt_path") -> dict:
    """UserError naming `key` unless `path` is a training checkpoint whose saved config fits;
    returns its saved hyper-parameters (models.checkpoint.check_checkpoint: data_meta, run_config)."""
    hparams = check_checkpoint(path, key)
    why = run_config_error(hparams.get("run_config"))
    if why:
        raise UserError(f"{key}={path}: its saved config does not fit this version ({why})")
    return hparams
