"""What is evaluated: checkpoints (one, a list, or every run under a directory) and test sets.

A checkpoint alone rebuilds its model and its DataModule (models.tasks.load_from_checkpoint /
make_datamodule); only data settings may be replaced. Test sets are the dataset's test splits,
their per-workload subsets (DataModule.workload_names) and raw files collected anywhere: ftrace
traces go through the same parse -> replay -> DataModule.make_split path as training data (so
its leakage guard applies), can_migrate record files through the builder's can_migrate_table
(no feature code here).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig

from data.can_migrate.features import can_migrate_table, migration_cost_of
from data.can_migrate.files import RECORD_FILES, is_record_file, read_meta, read_records, run_records
from data.can_migrate.record import RecordFormatError
from data.dataset import balancer
from data.dataset.build import TRACE_NAMES
from data.dataset.replay import replay
from data.dataset.splits import natural
from data.dataset.windows import SplitData
from data.parse.tracefile import TraceFormatError, parse_file
from models.tasks import load_from_checkpoint, make_datamodule

log = logging.getLogger(__name__)

DATASET_SPLITS = ("test_seen", "test_unseen")
TRACE_CATEGORY = "external"  # category column of rows that come from raw trace files


class EvaluationError(ValueError):
    """Bad evaluation input (no checkpoint, a file that is not a trace, ...); the message says which."""


# ---------------------------------------------------------------------------------- checkpoints
def best_checkpoint(ckpt_dir: Path) -> Path:
    """The run's best checkpoint: ModelCheckpoint's own record in last.ckpt, else the only
    epoch_*.ckpt (save_top_k=1), else last.ckpt."""
    last = ckpt_dir / "last.ckpt"
    if last.exists():
        state = torch.load(last, map_location="cpu", weights_only=False).get("callbacks", {})
        for key, value in state.items():
            best = value.get("best_model_path") if key.startswith("ModelCheckpoint") else None
            if best:
                best = Path(best) if Path(best).exists() else ckpt_dir / Path(best).name
                if best.exists():
                    return best
    epochs = sorted(ckpt_dir.glob("epoch_*.ckpt"))
    if len(epochs) == 1 or (epochs and not last.exists()):
        return epochs[-1]
    if last.exists():
        return last
    raise EvaluationError(f"no checkpoint in {ckpt_dir}")


def find_checkpoints(ckpt_path: str | None = None, ckpt_paths=None, runs=None) -> list[Path]:
    """Checkpoint files named by `ckpt_path`, `ckpt_paths` and `runs` (directories searched
    recursively for `checkpoints/` folders, e.g. a Hydra multirun directory), in that order."""
    paths = [Path(p) for p in ([ckpt_path] if ckpt_path else []) + list(ckpt_paths or [])]
    for root in [runs] if isinstance(runs, str) else list(runs or []):
        root = Path(root)
        if not root.is_dir():
            raise EvaluationError(f"runs={root}: not a directory")
        dirs = sorted((d for d in root.rglob("checkpoints") if d.is_dir()), key=natural)
        if not dirs:
            raise EvaluationError(f"runs={root}: no run with a checkpoints/ folder under it")
        paths += [best_checkpoint(d) for d in dirs]
    if not paths:
        raise EvaluationError("nothing to evaluate: give ckpt_path=PATH, ckpt_paths=[...] or runs=DIR")
    for p in paths:
        if not p.is_file():
            raise EvaluationError(f"checkpoint {p} not found")
    return list(dict.fromkeys(p.resolve() for p in paths))


@dataclass
class Candidate:
    """One checkpoint, rebuilt: the task module (eval mode), its saved run config, its data
    metadata and a DataModule over the (possibly replaced) dataset directory."""

    ckpt_path: Path
    module: torch.nn.Module
    cfg: DictConfig
    meta: dict
    dm: object
    label: str = ""
    extra: dict[str, SplitData] = field(default_factory=dict)  # test sets from raw traces

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def backbone(self) -> str:
        return type(self.module.net.backbone).__name__.lower()

    @property
    def run_dir(self) -> Path:
        parent = self.ckpt_path.parent
        return parent.parent if parent.name == "checkpoints" else parent

    @property
    def input_features(self) -> list[str]:
        """Model input groups: the decision-table columns the numeric inputs come from."""
        return list(dict.fromkeys(f["column"] for f in self.meta["features"]))

    def get_split(self, name: str) -> SplitData:
        """Any test set by name (duck-types the DataModule for models.baselines)."""
        return self.extra[name] if name in self.extra else self.dm.get_split(name)

    def release(self) -> None:
        """Forget this candidate's windows once it is scored (the model and config stay)."""
        self.dm.release()
        self.extra = {}

    def test_sets(self, workloads: bool = True) -> list[str]:
        """Dataset test splits and per-workload sets (the datamodule's) that are not empty, each
        split's `<split>/no_balancer` set where its rows say which a balancer moved
        (data.dataset.balancer), then traces."""
        names = list(DATASET_SPLITS)
        if workloads:
            names += [f"workload/{w}" for w in self.dm.workload_names()]
        kept = []
        for name in names:
            if not self.dm.has_split(name):
                log.warning("%s: no %s runs in %s; skipped", self.label, name, self.dm.dataset_dir)
            elif len(self.dm.get_split(name)) == 0:
                log.warning("%s: %s has no samples; skipped", self.label, name)
            else:
                kept.append(name)
        for name in [n for n in kept if n in DATASET_SPLITS]:
            keep = balancer.keep_mask(self.dm.get_split(name))
            if keep is not None and bool(keep.any()):
                kept.append(balancer.name_of(name))
        return kept + list(self.extra)

    def derived(self, names: list[str]) -> dict[str, tuple[str, torch.Tensor]]:
        """{workload set: (parent split, sample mask)} for per-workload sets that are exactly the
        samples of that workload in test_seen / test_unseen (whole runs, windows never cross runs),
        so their predictions are taken from the parent's instead of being computed twice; and
        {`<split>/no_balancer`: (split, its samples no balancer moved)} (data.dataset.balancer)."""
        out = {}
        parents = [p for p in DATASET_SPLITS if p in names]
        for name in names:
            parent = balancer.parent_of(name)
            if parent in parents:
                out[name] = (parent, balancer.keep_mask(self.get_split(parent)))
        for name in (n for n in names if n.startswith("workload/")):
            split, workload = self.get_split(name), name.split("/", 1)[1]
            for p in parents:
                parent = self.get_split(p)
                mask = torch.from_numpy((parent.rows["workload"] == workload).to_numpy(copy=True))  # writable
                if int(mask.sum()) == len(split) and torch.equal(parent.target[mask], split.target):
                    out[name] = (p, mask)
                    break
        return out


def load_candidate(path: Path, data_overrides: dict) -> Candidate:
    """Rebuild a checkpoint's model and DataModule; `data_overrides` replace data settings only."""
    module, cfg, meta = load_from_checkpoint(str(path))
    if "data" not in cfg:
        raise EvaluationError(f"{path}: no saved run config in the checkpoint (hyper_parameters.run_config)")
    dm = make_datamodule(cfg, meta, **{k: v for k, v in data_overrides.items() if v is not None})
    return Candidate(Path(path), module, cfg, meta, dm)


def assign_labels(cands: list[Candidate]) -> None:
    """Short unique names per task: the backbone, then its input count, then its run directory."""
    for c in cands:
        c.label = c.backbone
    for disambiguate in (
        lambda c: f"{len(c.input_features)}f",
        lambda c: c.run_dir.name,
        lambda c: str(cands.index(c)),
    ):
        groups: dict[tuple, list[Candidate]] = {}
        for c in cands:
            groups.setdefault((c.task, c.label), []).append(c)
        for group in groups.values():
            if len(group) > 1 and len({disambiguate(c) for c in group}) > 1:
                for c in group:
                    c.label = f"{c.label}-{disambiguate(c)}"


# ---------------------------------------------------------------------------------- raw traces
CAN_MIGRATE = "can_migrate"  # the table raw can_migrate record files give
RUNNABLE = "candidates"  # the replay's runnable set (replay(..., runnable=True)), for next_task_candidates


def trace_file(path: Path) -> Path:
    """The file itself (an ftrace trace or a can_migrate record file), or a collected run
    directory (which holds a trace, records, or both; the model's task picks one)."""
    if path.is_dir():
        if not any((path / n).is_file() for n in TRACE_NAMES) and run_records(path) is None:
            raise EvaluationError(f"traces: {path} is a directory without {' / '.join(TRACE_NAMES + RECORD_FILES)}")
        return path
    if not path.is_file():
        raise EvaluationError(f"traces: {path} not found")
    return path


def trace_name(path: Path) -> str:
    """`trace/<name>`: the run directory's name for <run>/trace.txt.* or <run>/records.bin...,
    else the file name without its trace/record/compression suffixes."""
    if path.is_dir():
        return f"trace/{path.name}"
    stem = path.name
    while True:
        new = re.sub(r"\.(zst|xz|gz|txt|trace|dat|bin|parquet)$", "", stem)
        if new == stem:
            break
        stem = new
    if stem in ("trace", "records", CAN_MIGRATE, "") and path.parent.name:
        stem = path.parent.name
    return f"trace/{stem}"


class TraceTables:
    """Decision tables of raw files, read once and shared by all models: ftrace traces (parse ->
    replay -> migration / next_task tables) and can_migrate record files (the loader's stream
    .bin / .bin.zst or can_migrate.parquet -> the builder's can_migrate table). A run directory
    gives whichever its files hold."""

    def __init__(self, paths: list[str]):
        self.files: dict[str, Path] = {}
        for p in paths or []:
            f = trace_file(Path(p))
            name, i = trace_name(f), 2
            while name in self.files:
                name, i = f"{trace_name(f)}_{i}", i + 1
            self.files[name] = f
        self._replayed: dict[str, object] = {}
        self._records: dict[str, pd.DataFrame] = {}

    def source(self, name: str, table: str) -> Path | None:
        """The file of `name` that gives `table`, or None when it gives no such table."""
        path = self.files[name]
        if path.is_dir():
            if table == CAN_MIGRATE:
                return run_records(path)
            return next((path / n for n in TRACE_NAMES if (path / n).is_file()), None)
        return path if is_record_file(path) == (table == CAN_MIGRATE) else None

    def table(self, name: str, table: str) -> pd.DataFrame:
        path = self.source(name, table)
        if path is None:
            gives = "can_migrate records" if table != CAN_MIGRATE else "migration and next_task tables"
            raise EvaluationError(f"traces: {self.files[name]} gives {gives}, not a {table} table")
        df = self._can_migrate(name, path) if table == CAN_MIGRATE else self._trace(name, path, table)
        return df.assign(workload=name, category=TRACE_CATEGORY)

    def _trace(self, name: str, path: Path, table: str) -> pd.DataFrame:
        runnable = table == RUNNABLE  # the runnable set: replay(..., runnable=True)
        if name not in self._replayed or (runnable and self._replayed[name].candidates is None):
            try:
                events, stats = parse_file(path)
            except TraceFormatError as e:
                raise EvaluationError(f"traces: {e}") from e
            except OSError as e:
                raise EvaluationError(f"traces: cannot read {path}: {e}") from e
            result = replay(events, name.split("/", 1)[1], runnable=runnable)
            log.info(
                "%s: %s -> %d events, %d migration rows, %d next_task rows",
                name,
                path,
                stats.events,
                len(result.migration),
                len(result.next_task),
            )
            self._replayed[name] = result
        return getattr(self._replayed[name], table)

    def _can_migrate(self, name: str, path: Path) -> pd.DataFrame:
        if name not in self._records:
            try:
                records = read_records(path)
                meta = read_meta(path.parent / "meta.json")  # the run's task_hot window, if it has one
            except RecordFormatError as e:
                raise EvaluationError(f"traces: {e}") from e
            except OSError as e:
                raise EvaluationError(f"traces: cannot read {path}: {e}") from e
            table = can_migrate_table(records.assign(run_id=name.split("/", 1)[1]), migration_cost_of(meta))
            log.info("%s: %s -> %d records, %d pass the hard conditions", name, path, len(records), len(table))
            self._records[name] = table
        return self._records[name]

    def attach(self, cand: Candidate) -> None:
        """Windows of every file that gives this model's table (its own window, features and
        statistics); files of the other kind are skipped with a warning."""
        for name in self.files:
            if self.source(name, cand.dm.table) is None:
                log.warning(
                    "%s: %s holds no %s data; skipped for this model", cand.label, self.files[name], cand.dm.table
                )
                continue
            # replay outputs the DataModule needs beside its table (next_task_candidates: the runnable set)
            path = self.source(name, cand.dm.table)
            extra = {t: self._trace(name, path, t) for t in getattr(cand.dm, "replay_tables", ())}
            split = cand.dm.make_split(self.table(name, cand.dm.table), name, **extra)
            if len(split) == 0:
                log.warning("%s: no %s decisions in %s; skipped", cand.label, cand.task, self.files[name])
                continue
            cand.extra[name] = split
