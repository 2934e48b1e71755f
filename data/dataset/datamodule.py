"""LightningDataModules: one per task, all reading the dataset directory written by data.dataset.build.

The DataModule owns everything between the decision tables and tensors: the split of whole runs
into train / val / test_seen / test_unseen (data/dataset/splits.py), feature transforms, normalisation
statistics (fitted on the training rows only), token encodings and windows. All of that is
summarised in `meta` (a JSON-able dict) which the task module stores in its checkpoint; a
DataModule built with `data_meta=` reuses it verbatim instead of fitting (the split included:
`meta["split"]` lists the runs of every split), so evaluation and export see exactly the inputs
and the runs the model was trained and selected on.

Validation is whole held-out runs, never a test split: per training workload its last
`val_runs` training runs, plus one whole "unseen-like" training category (`val_category`). The
dataset's tables are pooled and re-split by run_id, so `unseen=[io]` is a leave-one-category-out
fold of any dataset, `shift={by: load_pct, train: [100, 200], test: [50]}` (or by topology,
workload, category) trains on some values of a run column and tests on the others,
`train_workloads=[w]` trains on one benchmark and tests on the rest, and `where={topology: [2x2x2]}`
keeps only some runs; the rule is data.dataset.splits.split_runs. Per-workload test sets
(`workload/<name>`) are the rows of that workload in the test splits.

Before training (setup "fit") the run names and row counts of train and validation are logged,
with a warning when validation holds more rows than training that names the data.val_category
/ data.val_runs override that would turn it round (data.dataset.splits.rebalance); a split left
without rows is a one-line error that says why (data.dataset.splits.why_no_val).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DataLoader, WeightedRandomSampler

from data.can_migrate.features import (
    FEATURE_SETS,
    FLAG_FEATURES,
    LABELS,
    can_migrate_table,
    is_table,
    missing_inputs,
)
from data.can_migrate.synthetic import SyntheticSpec, synthetic_table
from data.dataset import balancer
from data.dataset import splits as run_splits
from data.dataset.encoding import (
    FeatureSpec,
    TokenLayout,
    apply_specs,
    build_pid_vocab,
    fit_standardiser,
    mtf_encode,
    standardise,
    vocab_encode,
)
from data.dataset.forced_future import (
    DEFAULT_CALLS,
    DEFAULT_HORIZON_MS,
    DT_PREV,
    FORCED_FUTURE,
    HAS_PREV,
    with_forced_future,
)
from data.dataset.tables import MIGRATION_FEATURES, MIGRATION_INPUT_SETS, NEEDS_WAKING
from data.dataset.windows import SplitData, WindowDataset, collate_batch, stream_order, stream_starts, window_index

log = logging.getLogger(__name__)

META_VERSION = 2  # 2: meta["split"] (whole-run validation); 1 had a val_fraction time tail
VALID = "valid"  # extra input channel: 1 for a real step, 0 for window padding
TABLE_FILES = ("train", "test_seen", "test_unseen")  # what data.dataset.build writes per task
TEST_SPLITS = ("test_seen", "test_unseen")
WORKLOAD = "workload/"
# split settings: a ValueError from data.dataset.splits that starts with one is prefixed "data."
SPLIT_SETTINGS = ("unseen", "val_", "shift", "where", "train_workloads")


def _runs(n: int) -> str:
    return f"{n} run{'s' * (n != 1)}"


def _plain(value):
    """Hydra's DictConfig / ListConfig as plain dicts and lists (they go into meta), recursively."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Iterable) and not isinstance(value, (str, bytes)):
        return [_plain(v) for v in value]
    return value


class DecisionDataModule(pl.LightningDataModule):
    """Shared machinery: splits, loaders, meta. Subclasses define features, streams and targets."""

    task: ClassVar[str]
    table: ClassVar[str]

    def __init__(
        self,
        dataset_dir: str,
        window: int = 16,
        batch_size: int = 256,
        eval_batch_size: int = 2048,
        num_workers: int = 0,
        unseen: list[str] | str | None = None,
        shift: dict | None = None,
        where: dict | None = None,
        train_workloads: list[str] | None = None,
        val_category: str | None = run_splits.DEFAULT_VAL_CATEGORY,
        val_runs: int = run_splits.DEFAULT_VAL_RUNS,
        test_splits: tuple[str, ...] = TEST_SPLITS,
        data_meta: dict | None = None,
        features: list[str] | None = None,
        val_fraction: float | None = None,
    ):
        super().__init__()
        if val_fraction is not None:  # a run config (checkpoint) from before whole-run validation
            raise ValueError(
                "data.val_fraction is gone: validation is whole held-out runs now (data.val_runs, "
                "data.val_category); a checkpoint trained with it predates that split: retrain it"
            )
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if isinstance(val_runs, bool) or not isinstance(val_runs, int) or val_runs < 0:
            raise ValueError(f"data.val_runs must be an integer >= 0, got {val_runs!r}")
        self.dataset_dir = Path(dataset_dir)
        self.window = window
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.unseen = [unseen] if isinstance(unseen, str) else (None if unseen is None else [str(u) for u in unseen])
        try:  # the config's unset nodes ({by: null, ...}) are None here
            self.shift = run_splits.normal_shift(_plain(shift))
            self.where = run_splits.normal_where(_plain(where))
        except ValueError as e:
            raise ValueError(f"data.{e}") from None
        self.train_workloads = (
            _plain([train_workloads] if isinstance(train_workloads, str) else train_workloads) or None
        )
        self.val_category = None if val_category in (None, "null", "none") else str(val_category)
        self.val_runs = val_runs
        self.test_splits = tuple(test_splits)
        self.features = list(features) if features else None
        self.meta: dict | None = dict(data_meta) if data_meta else None
        if self.meta:
            self._check_meta(self.meta)
            self.window = int(self.meta["window"])
        self._splits: dict[str, SplitData] = {}
        self._split: dict | None = None
        self._card: dict | None = None
        self._files: dict[str, pd.DataFrame] = {}
        self._frames: dict[str, pd.DataFrame] = {}
        self._workloads: dict[str, str] = {}
        self._test_names: list[str] | None = None
        self._described = False

    # ---------------------------------------------------------------- subclass interface
    def fit_meta(self, train: pd.DataFrame) -> dict:
        """Task-specific metadata fitted on training rows (features, stats, encodings)."""
        raise NotImplementedError

    def make_split(self, df: pd.DataFrame, name: str) -> SplitData:
        """Windows, targets and decision rows of any decision table, using the fitted `meta`."""
        raise NotImplementedError

    # ---------------------------------------------------------------- public API
    def table_path(self, split: str) -> Path:
        return self.dataset_dir / self.table / f"{split}.parquet"

    def prepare_data(self) -> None:
        if not self.table_path("train").exists() and self.meta is None:
            raise FileNotFoundError(
                f"no training table at {self.table_path('train')}: build a dataset with "
                f"`python -m data.build --traces DIR --out DATASET` and set paths.dataset_dir=DATASET"
            )

    def setup(self, stage: str | None = None) -> None:
        if self.meta is None:
            train = self.split_frame("train")
            meta = self.fit_meta(train)
            meta.update(
                task=self.task,
                table=self.table,
                window=self.window,
                version=META_VERSION,
                dataset=self._dataset_card(),
                split=self.split,
            )
            self.meta = meta
        if stage in (None, "fit", "validate"):
            self.get_split("train")
            self.get_split("val")
        if stage in (None, "fit") and not self._described:
            self._described = True
            self.describe_split()

    def describe_split(self) -> None:
        """Log the runs and rows of train and validation; warn when validation outweighs
        training, naming the override that helps (or saying that none does)."""
        if rank_zero_only.rank != 0:
            return
        split = self.split
        rows = {name: len(self.split_frame(name)) for name in ("train", "val")}
        for name in ("train", "val"):
            runs = split["runs"][name]
            log.info("%s %s: %s, %s rows: %s", self.table, name, _runs(len(runs)), f"{rows[name]:,}", ", ".join(runs))
        if rows["val"] <= rows["train"]:
            return
        real = self._rows_of(split["runs"]["train"] + split["runs"]["val"])  # synthetic rows move nowhere
        per_run = {str(k): int(v) for k, v in real["run_id"].value_counts().items()}
        fix = run_splits.rebalance_advice(self.dataset_runs(), split, per_run)
        log.warning(
            "%s: validation outweighs training: %s validation rows (%s) vs %s training rows (%s) with %s; %s",
            self.table,
            f"{rows['val']:,}",
            _runs(len(split["runs"]["val"])),
            f"{rows['train']:,}",
            _runs(len(split["runs"]["train"])),
            run_splits.describe(split),
            fix,
        )

    @property
    def split(self) -> dict:
        """The resolved split (data.dataset.splits.split_runs' dict): the checkpoint's own when `data_meta`
        holds one for this dataset's runs, else computed from unseen / shift / where / train_workloads /
        val_category / val_runs. unseen null: the dataset's own unseen categories, but none with a
        shift or train_workloads (they define test_unseen themselves)."""
        if self._split is None:
            runs = self.dataset_runs()
            ids = {r.run_id for r in runs}
            saved = (self.meta or {}).get("split")
            if saved and {r for rs in (*saved["runs"].values(), saved.get("dropped", [])) for r in rs} == ids:
                self._split = saved
            else:
                if saved:  # another dataset (e.g. evaluate.py data.dataset_dir=...): same settings
                    cats = {r.category for r in runs}
                    kwargs = run_splits.settings(saved)
                    if not set(kwargs["unseen"]) <= cats:
                        kwargs["unseen"] = self._card_unseen()
                    category = kwargs["val_category"]
                    if category is not None and (category not in cats or category in kwargs["unseen"]):
                        kwargs["val_category"] = run_splits.AUTO
                    log.warning(
                        "%s: the checkpoint's split names other runs than %s holds; re-split it (%s)",
                        self.table,
                        self.dataset_dir,
                        ", ".join(f"{k}={v}" for k, v in kwargs.items() if v is not None),
                    )
                else:
                    kwargs = {
                        "unseen": self.unseen,
                        "val_category": self.val_category,
                        "val_runs": self.val_runs,
                        "shift": self.shift,
                        "train_workloads": self.train_workloads,
                        "where": self.where,
                    }
                if kwargs["unseen"] is None:  # the dataset's own test_unseen, unless the split defines its own
                    kwargs["unseen"] = [] if kwargs["shift"] or kwargs["train_workloads"] else self._card_unseen()
                try:
                    self._split = run_splits.split_runs(runs, **kwargs)
                except ValueError as e:
                    raise ValueError(f"data.{e}" if str(e).startswith(SPLIT_SETTINGS) else str(e)) from None
                for note in self._split["notes"]:
                    log.info("%s split: %s", self.table, note)
        return self._split

    def dataset_runs(self) -> list[run_splits.RunInfo]:
        """Every run of the dataset with the values a split can use (data.dataset.splits.RunInfo:
        run_id, workload, category, load_pct, topology): the card's sources, else the distinct
        values of the tables' run columns. A dataset built before a column has none: load_pct
        then comes from the run id (else 100) and topology is None."""
        card = self._dataset_meta()
        names = ("run_id", "workload", "category")
        sources = [s for s in card.get("sources", []) if all(k in s for k in names)]
        if not sources:
            frames = []
            for f in TABLE_FILES:
                if self.table_path(f).exists():
                    df = self.read_table(f)
                    frames.append(df[[c for c in (*names, *run_splits.RUN_VALUES) if c in df]].drop_duplicates())
            if not frames:
                raise FileNotFoundError(f"no tables under {self.dataset_dir / self.table}")
            table = pd.concat(frames).astype(object).drop_duplicates()
            sources = [{k: None if pd.isna(v) else v for k, v in rec.items()} for rec in table.to_dict("records")]
        runs = run_splits.run_infos(sources)
        self._workloads = {r.run_id: r.workload for r in runs}
        return runs

    def workload_names(self) -> list[str]:
        """Workloads with a run in a test split: the `workload/<name>` test sets."""
        runs = self.split["runs"]
        return sorted({self._workloads[r] for s in TEST_SPLITS for r in runs[s] if r in self._workloads})

    def has_split(self, name: str) -> bool:
        """Whether `name` (a split, `workload/<w>`, `<split>/no_balancer` or a table file's name)
        names any runs."""
        parent = balancer.parent_of(name)
        if parent is not None:
            return self.has_split(parent) and balancer.keep_mask(self.get_split(parent)) is not None
        if name in run_splits.SPLITS:
            return bool(self.split["runs"][name])
        if name.startswith(WORKLOAD):
            return name[len(WORKLOAD) :] in self.workload_names()
        return self.table_path(name).exists()

    def split_frame(self, name: str) -> pd.DataFrame:
        """Decision-table rows of a split (its runs' rows), of `workload/<w>` (that workload's rows
        in the test splits) or of any table file under DATASET/<table>/."""
        if name not in self._frames:
            if name in run_splits.SPLITS:
                df = self._rows_of(self.split["runs"][name])
                if name in ("train", "val") and df.empty:
                    split = self.split
                    runs = split["runs"][name]
                    if name == "val" and not runs:  # say why: the usual newcomer's case (few runs)
                        why = run_splits.why_no_val(self.dataset_runs(), split)
                        raise ValueError(
                            f"{self.table}: the val split has no rows ({run_splits.describe(split)}): {why}"
                        )
                    raise ValueError(
                        f"{self.table}: the {name} split has no rows ({run_splits.describe(split)}; "
                        f"{name} runs: {', '.join(runs) or 'none'}; dataset {self.dataset_dir}): "
                        f"change data.unseen, data.shift, data.train_workloads, data.val_category or data.val_runs"
                    )
            elif name.startswith(WORKLOAD):
                test = pd.concat([self.split_frame(s) for s in TEST_SPLITS], ignore_index=True)
                df = test[test["workload"] == name[len(WORKLOAD) :]].reset_index(drop=True)
            else:
                df = self.read_table(name)
            self._frames[name] = df
        return self._frames[name]

    def get_split(self, name: str) -> SplitData:
        """Windows of a named split ("train", "val", "test_seen", "workload/<w>", ...), cached;
        `<split>/no_balancer` is the split's samples no load balancer moved (data.dataset.balancer)."""
        if name not in self._splits:
            if self.meta is None:
                self.setup("test")
            parent = balancer.parent_of(name)
            if parent is not None:
                split = self.get_split(parent)
                self._splits[name] = balancer.without_balancer(split, balancer.keep_mask(split))
            else:
                self._splits[name] = self.make_split(self.split_frame(name), name)
            log.info("%s/%s: %d samples", self.table, name, len(self._splits[name]))
        return self._splits[name]

    def release(self) -> None:
        """Drop the cached splits and tables (the fitted meta stays): evaluate.py scores many
        checkpoints one after another and needs each one's windows only while scoring it."""
        self._splits.clear()
        self._frames.clear()
        self._files.clear()

    def read_table(self, split: str) -> pd.DataFrame:
        path = self.table_path(split)
        if not path.exists():
            raise FileNotFoundError(f"missing split table {path}")
        return pd.read_parquet(path)

    @property
    def test_split_names(self) -> list[str]:
        """Configured test splits that exist and hold at least one sample (others are skipped)."""
        if self._test_names is not None:
            return self._test_names
        names = []
        for name in self.test_splits:
            if not self.has_split(name):
                log.warning("test split %s has no runs in %s; skipped", name, self.dataset_dir)
            elif len(self.get_split(name)) == 0:
                log.warning("test split %s is empty; skipped", name)
            else:
                names.append(name)
        self._test_names = names
        return names

    def dataset_of(self, split: SplitData):
        """The torch Dataset a loader serves the split's samples from."""
        return WindowDataset(split)

    def loader(self, split: SplitData, shuffle: bool = False, sampler=None) -> DataLoader:
        return DataLoader(
            self.dataset_of(split),
            batch_size=self.batch_size if (shuffle or sampler is not None) else self.eval_batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=collate_batch,
            persistent_workers=self.num_workers > 0,
        )

    def train_sampler(self, split: SplitData):
        return None

    def train_dataloader(self) -> DataLoader:
        split = self.get_split("train")
        return self.loader(split, shuffle=True, sampler=self.train_sampler(split))

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.get_split("val"))

    def test_dataloader(self) -> list[DataLoader]:
        return [self.loader(self.get_split(n)) for n in self.test_split_names]

    # ---------------------------------------------------------------- helpers
    def _rows_of(self, run_ids: list[str]) -> pd.DataFrame:
        """The rows of `run_ids`, read from the table files the card says hold them."""
        want = set(run_ids)
        placed = self._dataset_meta().get("splits", {})
        frames = []
        for f in TABLE_FILES:
            if f in placed and not want & set(placed[f]):
                continue
            if f not in self._files:
                if not self.table_path(f).exists():
                    continue
                self._files[f] = self.read_table(f)
            df = self._files[f]
            frames.append(df[df["run_id"].isin(want)])
        if not frames:  # no file holds these runs: an empty frame with the table's columns
            if not self.table_path("train").exists():
                raise FileNotFoundError(f"no tables under {self.dataset_dir / self.table}")
            self._files.setdefault("train", self.read_table("train"))
            frames = [self._files["train"].iloc[:0]]
        return pd.concat(frames, ignore_index=True)

    def _dataset_meta(self) -> dict:
        if self._card is None:
            path = self.dataset_dir / "meta.json"
            self._card = json.loads(path.read_text()) if path.exists() else {}
        return self._card

    def _card_unseen(self) -> list[str]:
        return list(self._dataset_meta().get("unseen_categories") or [])

    def _dataset_card(self) -> dict:
        card = self._dataset_meta()
        train = set(self.split["runs"]["train"])
        return {
            "dir": str(self.dataset_dir),
            "version": card.get("version"),
            "train_runs": self.split["runs"]["train"],
            # whose state the inputs describe: a model trained on CFS's (ftrace/bcc/guest) runs
            # means something else under scx_schedlearn (kernel/scx/README.md)
            "collectors": sorted(
                {s.get("collector") or "unknown" for s in card.get("sources", []) if s.get("run_id") in train}
            ),
        }

    def _check_meta(self, meta: dict) -> None:
        if meta.get("task") != self.task:
            raise ValueError(f"{type(self).__name__} got data_meta for task {meta.get('task')!r}")

    def _steps(self, raw: np.ndarray) -> torch.Tensor:
        """Standardised steps + the `valid` channel, with the all-zero pad row appended."""
        specs = self.meta["features"]
        x = standardise(raw, self.meta["mean"], self.meta["std"])
        steps = np.zeros((len(x) + 1, len(specs) + 1), dtype=np.float32)
        steps[:-1, :-1] = x
        steps[:-1, -1] = 1.0
        return torch.from_numpy(steps)

    def select_features(self, specs: list[FeatureSpec]) -> list[FeatureSpec]:
        """The inputs named in `features` (an input's name or its table column, e.g. `kind` for
        the kind_* one-hots), all when None: the feature-count experiment (evaluate.py importance)."""
        if not self.features:
            return specs
        known = {s.name for s in specs} | {s.column for s in specs}
        unknown = [f for f in self.features if f not in known]
        if unknown:
            raise ValueError(f"data.features: unknown {unknown}; known: {sorted(known)}")
        return [s for s in specs if s.name in self.features or s.column in self.features]

    def _fit_features(self, train: pd.DataFrame, specs: list[FeatureSpec]) -> dict:
        specs = self.select_features(specs)
        mean, std = fit_standardiser(apply_specs(train, specs), specs)
        names = [s.name for s in specs] + [VALID]
        return {
            "features": [s.to_dict() for s in specs],
            "feature_names": names,
            "n_features": len(names),
            "mean": mean,
            "std": std,
        }

    @staticmethod
    def _specs(meta: dict) -> list[FeatureSpec]:
        return [FeatureSpec(**d) for d in meta["features"]]


class BinaryDecisionDataModule(DecisionDataModule):
    """Binary decision tables (migration, can_migrate): class balance by loss weight or sampler;
    windows over the decisions of one CPU or of one task (`window_by`, each table's stream_keys)."""

    def __init__(self, *args, balance: str = "loss", window_by: str = "cpu", **kwargs):
        if balance not in ("loss", "sampler", "none"):
            raise ValueError(f"balance must be loss | sampler | none, got {balance!r}")
        if window_by not in ("cpu", "task"):
            raise ValueError(f"window_by must be cpu | task, got {window_by!r}")
        super().__init__(*args, **kwargs)
        self.balance = self.meta.get("balance", balance) if self.meta else balance
        # a checkpoint's meta without window_by predates it: windows by CPU
        self.window_by = self.meta.get("window_by", "cpu") if self.meta else window_by

    def class_meta(self, y: np.ndarray) -> dict:
        pos = float(y.sum())
        neg = float(len(y) - pos)
        return {
            "n_out": 1,
            "n_tokens": 0,
            "balance": self.balance,
            "window_by": self.window_by,
            "train_positive_rate": pos / max(len(y), 1),
            # BCE weight for positives: n_neg / n_pos makes both classes weigh the same.
            "pos_weight": (neg / pos if pos > 0 else 1.0) if self.balance == "loss" else 1.0,
        }

    def stream_keys(self) -> list[str]:
        """Columns whose values identify one stream (windows never cross streams)."""
        raise NotImplementedError

    def make_split(self, df: pd.DataFrame, name: str) -> SplitData:
        keys = self.stream_keys()
        df = df.iloc[stream_order(df, keys)].reset_index(drop=True)
        steps = self._steps(apply_specs(df, self._specs(self.meta)))
        index = torch.from_numpy(window_index(stream_starts(df, keys), self.window))
        target = torch.tensor(df[self.meta["label"]].to_numpy(), dtype=torch.float32)
        return SplitData(name, steps, index, target, rows=df)

    def train_sampler(self, split: SplitData):
        if self.balance != "sampler":
            return None
        y = split.target.numpy()
        pos = max(y.sum(), 1.0)
        weights = np.where(y > 0.5, 1.0 / pos, 1.0 / max(len(y) - pos, 1.0))
        return WeightedRandomSampler(torch.as_tensor(weights, dtype=torch.double), num_samples=len(y), replacement=True)


# Transforms of MIGRATION_FEATURES (data/dataset/replay.py) that are not plain standardised numbers.
WAKER = "waker_same_cpu"  # data.dataset.replay.WAKER_UNKNOWN (-1) where the trace had no sched_waking
MIGRATION_TRANSFORMS = {"src_idle": "flag", "other_idle": "flag", WAKER: "flag"}
MIGRATION_KINDS = {0: "wakeup", 1: "preempt", 2: "new"}
# data.inputs: a name in data.dataset.tables.MIGRATION_INPUT_SETS; base is the default
DEFAULT_MIGRATION_INPUTS = "base"
# The -1 sentinels of the state set (tables.MIGRATION_STATE_FEATURES). last_run_ns (-1: not
# observed) and min_nr_* (-1: no CPU in that class) get an indicator input beside the value
# (onehot of -1, which export encodes in integers): log1p_us clips -1 to 0, which reads as a very
# short run, and a standardised -1 reads as a class less loaded than an idle CPU. The waker
# columns are -1 only on preemptions once check_waker has passed (no waker; kind_preempt says
# so) and stay plain standardised counts, like the flips and the idle_* counts.
ABSENT_INPUTS = {
    "last_run_ns": "last_run_unknown",
    "min_nr_smt": "no_smt",
    "min_nr_llc": "no_llc",
    "min_nr_node": "no_node",
    "min_nr_remote": "no_remote",
}
ABSENT = -1


def migration_feature_columns(inputs: str = DEFAULT_MIGRATION_INPUTS) -> list[str]:
    """The decision-table columns input set `inputs` reads (tables.MIGRATION_INPUT_SETS)."""
    return list(MIGRATION_INPUT_SETS[inputs])


def _migration_spec(column: str) -> FeatureSpec:
    return FeatureSpec(
        column, column, MIGRATION_TRANSFORMS.get(column, "log1p_us" if column.endswith("_ns") else "identity")
    )


class MigrationDataModule(BinaryDecisionDataModule):
    """Migration decision points; windows are the last L decisions on the same CPU or of the same task.

    `inputs`: the input set (data.dataset.tables.MIGRATION_INPUT_SETS): base (MIGRATION_FEATURES,
    the default) or state (+ the replay's state reconstruction, MIGRATION_STATE_FEATURES);
    `features` narrows it further. A checkpoint's meta without "inputs" is base."""

    task = "migration"
    table = "migration"
    label = "migrated"

    def __init__(self, *args, inputs: str = DEFAULT_MIGRATION_INPUTS, **kwargs):
        super().__init__(*args, **kwargs)
        # a checkpoint's meta without "inputs" predates data.inputs: base
        self.inputs = self.meta.get("inputs", DEFAULT_MIGRATION_INPUTS) if self.meta else inputs
        if self.inputs not in MIGRATION_INPUT_SETS:
            raise ValueError(
                f"data.inputs={self.inputs}: no such migration input set (known: {', '.join(MIGRATION_INPUT_SETS)})"
            )

    def stream_keys(self) -> list[str]:
        return ["run_id", "segment", "src_cpu" if self.window_by == "cpu" else "tid"]

    @staticmethod
    def all_specs(inputs: str = DEFAULT_MIGRATION_INPUTS) -> list[FeatureSpec]:
        """Every input of the set `inputs`: base's columns and the kind one-hots first (base's
        order, unchanged), then the set's other columns, each with its ABSENT_INPUTS indicator."""
        columns = migration_feature_columns(inputs)
        specs = [_migration_spec(c) for c in columns if c in MIGRATION_FEATURES]
        specs += [FeatureSpec(f"kind_{n}", "kind", "onehot", k) for k, n in MIGRATION_KINDS.items()]
        for c in columns:
            if c not in MIGRATION_FEATURES:
                specs.append(_migration_spec(c))
                if c in ABSENT_INPUTS:
                    specs.append(FeatureSpec(ABSENT_INPUTS[c], c, "onehot", ABSENT))
        return specs

    def input_specs(self) -> list[FeatureSpec]:
        """The model's inputs: the checkpoint's, else the set `inputs` narrowed by `features`."""
        return self._specs(self.meta) if self.meta else self.select_features(self.all_specs(self.inputs))

    def waking_inputs(self) -> list[str]:
        """The model's inputs a trace without sched_waking cannot give (tables.NEEDS_WAKING)."""
        columns = {s.column for s in self.input_specs()}
        return [c for c in NEEDS_WAKING if c in columns]

    def check_waker(self, df: pd.DataFrame | None = None) -> None:
        """Refuse a model that reads an input of tables.NEEDS_WAKING where the replay could not
        compute it (a trace without sched_waking: data.dataset.replay.WAKER_UNKNOWN): the
        dataset's runs per its card, or the rows of `df` (e.g. a trace given to evaluate.py): a
        run with a wakeup's waker_same_cpu, or any row's wakee_flips, at WAKER_UNKNOWN."""
        guarded = self.waking_inputs()
        if not guarded:
            return
        if df is None:
            bad = [
                s["run_id"]
                for s in self._dataset_meta().get("sources", [])
                if (s.get("replay") or {}).get("wakeup_event") == "sched_wakeup"
            ]
        elif len(df):
            unknown = (df[WAKER] < 0) if WAKER in df else pd.Series(False, index=df.index)
            if "wakee_flips" in df:  # WAKER_UNKNOWN on every row of such a trace, preemptions too
                unknown |= df["wakee_flips"] < 0
            bad = sorted(df.loc[unknown, "run_id"].astype(str).unique())
        else:
            bad = []
        if bad:
            one = len(guarded) == 1
            others = list(dict.fromkeys(s.column for s in self.all_specs(self.inputs) if s.column not in NEEDS_WAKING))
            # the advice, what to type, on a line of its own (indented two spaces): the CLIs print
            # it whole below the one-line error instead of cutting it (plumbing.hydra_cli)
            raise ValueError(
                f"trace(s) {', '.join(bad)} have no sched_waking events: {', '.join(guarded)} "
                f"{'is' if one else 'are'} unknown there (sched_wakeup is logged on the target CPU, "
                f"so {'it' if one else 'they'} would leak the label)\n"
                f"  train without {'it' if one else 'them'}: data.features=[{','.join(others)}]"
            )

    def check_columns(self, df: pd.DataFrame) -> None:
        """One line for a table without the input set's columns: a dataset built before them."""
        missing = [c for c in dict.fromkeys(s.column for s in self.input_specs()) if c not in df]
        if missing:
            raise ValueError(
                f"data.inputs={self.inputs}: the {self.table} rows have no {', '.join(missing)} (a dataset built "
                f"before the replay's state reconstruction: rebuild it with python -m data.build)"
            )

    def setup(self, stage: str | None = None) -> None:
        self.check_waker()
        super().setup(stage)

    def make_split(self, df: pd.DataFrame, name: str) -> SplitData:
        self.check_waker(df)
        self.check_columns(df)
        return super().make_split(df, name)

    def fit_meta(self, train: pd.DataFrame) -> dict:
        self.check_waker(train)
        self.check_columns(train)
        return {
            **self._fit_features(train, self.all_specs(self.inputs)),
            **self.class_meta(train[self.label].to_numpy()),
            "label": self.label,
            "inputs": self.inputs,
        }


# Chen features that are numbers (standardised); the other ten are 0/1 flags.
CHEN_COUNTS = {"src_len", "src_load", "dst_load", "dst_len", "delta_faults"}
# data.inputs: a name in data.can_migrate.features.FEATURE_SETS; chen (Chen's 15) is the default and
# the only set the kernel computes (python -m export refuses the others: models.config.KERNEL_INPUTS)
DEFAULT_INPUTS = "chen"
# data.label: the table's two labels, and forced_future (data/dataset/forced_future.py), which
# is computed from each split's own rows when they are read (a split holds whole runs)
CAN_MIGRATE_LABELS = (*LABELS, FORCED_FUTURE)
# the per-step inputs label forced_future adds: the time since the task's previous call
FUTURE_SPECS = (
    FeatureSpec("log_dt_prev_call", DT_PREV, "log1p_us"),
    FeatureSpec(HAS_PREV, HAS_PREV, "flag"),
)
MIN_TEST_POSITIVES = 100  # issue 22: every reported test fold of forced_future holds at least this many


class CanMigrateDataModule(BinaryDecisionDataModule):
    """Chen et al.'s formulation on `can_migrate_task` records (15 engineered features).

    DATASET/can_migrate/<split>.parquet is the builder's can_migrate table: records passing the
    hard conditions with Chen's features, both labels and the kernel rule's context
    (data.can_migrate.features.can_migrate_table); a table of decoded records is converted by the same
    function. `label`: `can_migrate` (the kernel's return value) or `forced` (allowed although
    cache hot, Pinto). `inputs`: the feature set (data.can_migrate.features.FEATURE_SETS: chen,
    the default and the kernel's; chen_level adds the sched-domain level flags; extended adds
    NUMA-group, utilisation and load columns), `features` narrowing it further. `window_by`:
    windows run over the records of one destination CPU (`cpu`, the default) or of one task
    (`task`: run_id, pid), in time order.

    `label: forced_future` (issue 22): will one of the task's next `future.calls` calls within
    `future.horizon_ms` guest ms be forced (data.dataset.forced_future)? The label, its lead
    time and the time since the task's previous call are computed from each split's own rows
    when they are read; the steps gain `log_dt_prev_call` and `has_prev_call`.
    """

    task = "can_migrate"
    table = "can_migrate"

    def __init__(
        self,
        *args,
        label: str = "can_migrate",
        inputs: str = DEFAULT_INPUTS,
        future: dict | None = None,
        **kwargs,
    ):
        if label not in CAN_MIGRATE_LABELS:
            raise ValueError(f"label must be {' | '.join(CAN_MIGRATE_LABELS)}, got {label!r}")
        super().__init__(*args, **kwargs)
        self.label = self.meta.get("label", label) if self.meta else label
        # a checkpoint's meta without "inputs" predates data.inputs: Chen's 15
        self.inputs = self.meta.get("inputs", DEFAULT_INPUTS) if self.meta else inputs
        if not self.meta and self.inputs not in FEATURE_SETS:
            raise ValueError(f"data.inputs={self.inputs}: no such feature set (known: {', '.join(FEATURE_SETS)})")
        # a checkpoint's meta without "future" predates it (label forced_future did not exist)
        future = self.meta.get("future") if self.meta else _plain(future)
        future = dict(future or {})
        self.future = {
            "calls": int(future.get("calls") or DEFAULT_CALLS),
            "horizon_ms": float(future.get("horizon_ms") or DEFAULT_HORIZON_MS),
        }
        if self.future["calls"] < 1 or self.future["horizon_ms"] <= 0:
            raise ValueError(f"data.future: calls must be >= 1 and horizon_ms > 0, got {self.future}")

    def read_table(self, split: str) -> pd.DataFrame:
        return self.as_table(super().read_table(split))

    def with_label(self, df: pd.DataFrame) -> pd.DataFrame:
        """`df` with label forced_future's columns (data.dataset.forced_future.COLUMNS) when
        that is the label; `df` holds whole runs (a split, a workload's test runs, a trace)."""
        if self.label != FORCED_FUTURE or FORCED_FUTURE in df:
            return df
        missing = [c for c in ("run_id", "pid", "ts", "forced") if c not in df]
        if missing:
            raise ValueError(f"data.label={FORCED_FUTURE}: the rows have no {', '.join(missing)} (synthetic rows?)")
        return with_forced_future(df, self.future["calls"], self.future["horizon_ms"])

    def split_frame(self, name: str) -> pd.DataFrame:
        if name not in self._frames:
            self._frames[name] = self.with_label(super().split_frame(name))
        return self._frames[name]

    def make_split(self, df: pd.DataFrame, name: str) -> SplitData:
        return super().make_split(self.with_label(df), name)

    def get_split(self, name: str) -> SplitData:
        fresh = name not in self._splits
        split = super().get_split(name)
        if fresh and self.label == FORCED_FUTURE:
            pos = int(split.target.sum())
            log.info("%s/%s: %d %s positives of %d", self.table, name, pos, FORCED_FUTURE, len(split))
            if name in TEST_SPLITS and len(split) and pos < MIN_TEST_POSITIVES:
                log.warning(
                    "%s/%s: %d %s positives, fewer than the %d a reported test fold needs",
                    self.table,
                    name,
                    pos,
                    FORCED_FUTURE,
                    MIN_TEST_POSITIVES,
                )
        return split

    @staticmethod
    def as_table(df: pd.DataFrame) -> pd.DataFrame:
        """A can_migrate table as is; decoded records through `can_migrate_table`."""
        return df if is_table(df) else can_migrate_table(df)

    def input_specs(self) -> list[FeatureSpec]:
        """The inputs of the feature set `inputs` (0/1 flags as flags, the rest standardised
        numbers: data.can_migrate.features.FLAG_FEATURES), narrowed by `features`."""
        columns = FEATURE_SETS[self.inputs]
        specs = [FeatureSpec(c, c, "flag" if c in FLAG_FEATURES else "identity") for c in columns]
        if self.label == FORCED_FUTURE:
            specs += FUTURE_SPECS
        return self.select_features(specs)

    def fit_meta(self, train: pd.DataFrame) -> dict:
        specs = self.input_specs()
        missing = missing_inputs(train, list(dict.fromkeys(s.column for s in specs)))
        if missing:
            raise ValueError(
                f"data.inputs={self.inputs}: the training rows have no {', '.join(missing)} (a dataset built "
                f"before those columns: rebuild it with python -m data.build; synthetic rows have Chen's 15 only)"
            )
        return {
            **self._fit_features(train, specs),
            **self.class_meta(train[self.label].to_numpy()),
            "label": self.label,
            "inputs": self.inputs,
            **({"future": dict(self.future)} if self.label == FORCED_FUTURE else {}),
        }

    def stream_keys(self) -> list[str]:
        return ["run_id", "dst_cpu" if self.window_by == "cpu" else "pid"]


class SyntheticCanMigrateDataModule(CanMigrateDataModule):
    """Singh's distillation: train on rows drawn by data.can_migrate.synthetic and labelled by the kernel
    rule (`source: synthetic`), or on those plus the dataset's real training runs
    (`source: both`); validation and test splits are always the dataset's real records (whole
    validation runs), so model selection never sees a test record."""

    SOURCES = ("synthetic", "both")

    def __init__(self, *args, source: str = "synthetic", synthetic: dict | None = None, **kwargs):
        if source not in self.SOURCES:
            raise ValueError(f"source must be {' | '.join(self.SOURCES)}, got {source!r}")
        if kwargs.get("label") == FORCED_FUTURE:
            raise ValueError(
                f"data.label={FORCED_FUTURE}: synthetic rows have no tasks and no time (use data=can_migrate)"
            )
        super().__init__(*args, **kwargs)
        self.source = self.meta.get("source", source) if self.meta else source
        spec = self.meta.get("synthetic") if self.meta else None
        self.spec = SyntheticSpec(**dict(spec or synthetic or {}))

    def prepare_data(self) -> None:
        if self.source == "both":
            super().prepare_data()

    def split_frame(self, name: str) -> pd.DataFrame:
        if name != "train":
            return super().split_frame(name)
        if "train" not in self._frames:
            rows = synthetic_table(self.spec)
            if self.source == "both":
                rows = pd.concat([super().split_frame("train"), rows], ignore_index=True, join="inner")
            self._frames["train"] = rows
        return self._frames["train"]

    def fit_meta(self, train: pd.DataFrame) -> dict:
        return {**super().fit_meta(train), "source": self.source, "synthetic": self.spec.to_dict()}


def prev_state_class(state: pd.Series) -> pd.Series:
    """Outgoing task state as one of R (still runnable: preempted), S, D, other."""
    s = state.fillna("").astype(str)
    return pd.Series(
        np.select([s.str.startswith("R"), s == "S", s.str.startswith("D")], ["R", "S", "D"], "other"), index=state.index
    )


NEXT_TASK_SPECS = (
    [FeatureSpec(f"prev_state_{c}", "prev_state_class", "onehot", c) for c in ("R", "S", "D", "other")]
    + [
        FeatureSpec("log_dt_prev_switch", "dt_prev_switch_ns", "log1p_us"),
        FeatureSpec("log_next_since_wakeup", "next_since_wakeup_ns", "log1p_us"),
        FeatureSpec("next_wakeup_known", "next_wakeup_known", "flag"),
    ]
    + [FeatureSpec(f"prio_class_{n}", "next_prio_class", "onehot", k) for k, n in ((0, "idle"), (1, "fair"), (2, "rt"))]
)


class NextTaskDataModule(DecisionDataModule):
    """Per-CPU sched_switch streams; a sample is the window ending at switch i, target = token at i+1.

    Step i carries the token of the task switched in at i plus the outgoing task's state, the
    time since the previous switch, the incoming task's time since wakeup and its prio class.
    """

    task = "next_task"
    table = "next_task"
    keys = ["run_id", "segment", "cpu"]

    def __init__(self, *args, encoding: str = "mtf", k: int = 16, max_vocab: int | None = None, **kwargs):
        if encoding not in ("mtf", "pid_vocab"):
            raise ValueError(f"encoding must be mtf | pid_vocab, got {encoding!r}")
        super().__init__(*args, **kwargs)
        self.encoding = self.meta.get("encoding", encoding) if self.meta else encoding
        self.k = k
        self.max_vocab = max_vocab

    @staticmethod
    def derive(df: pd.DataFrame) -> pd.DataFrame:
        return df.assign(
            prev_state_class=prev_state_class(df["prev_state"]),
            next_wakeup_known=(df["next_since_wakeup_ns"] >= 0).astype(np.int8),
        )

    def fit_meta(self, train: pd.DataFrame) -> dict:
        meta = self._fit_features(self.derive(train), list(NEXT_TASK_SPECS))
        if self.encoding == "mtf":
            meta.update(encoding="mtf", k=self.k, vocab=None)
            lay = TokenLayout(self.k)
        else:
            vocab = build_pid_vocab(train["next_pid"].to_numpy(), self.max_vocab)
            meta.update(encoding="pid_vocab", k=None, vocab=vocab)
            lay = TokenLayout(len(vocab))
        meta.update(
            n_out=lay.n_classes,
            n_tokens=lay.n_tokens,
            unknown_token=lay.unknown,
            idle_token=lay.idle,
            pad_token=lay.pad,
        )
        return meta

    def encode_stream(self, df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        if self.meta["encoding"] == "mtf":
            return mtf_encode(df["next_tid"].to_numpy(), self.meta["k"])
        return vocab_encode(df["next_pid"].to_numpy(), self.meta["vocab"])

    def make_split(self, df: pd.DataFrame, name: str) -> SplitData:
        df = self.derive(df.iloc[stream_order(df, self.keys)].reset_index(drop=True))
        starts = stream_starts(df, self.keys)
        bounds = np.flatnonzero(starts).tolist() + [len(df)]
        tokens = np.empty(len(df), dtype=np.int64)
        two_back = np.empty(len(df), dtype=np.int64)
        for a, b in zip(bounds[:-1], bounds[1:], strict=False):
            tokens[a:b], two_back[a:b] = self.encode_stream(df.iloc[a:b])
        has_next = np.ones(len(df), dtype=bool)
        has_next[np.flatnonzero(starts) - 1] = False  # last step of each stream has no successor
        if len(df):
            has_next[-1] = False
        pad = self.meta["pad_token"]
        tok_pad = np.append(tokens, pad)
        ctx = tok_pad[window_index(starts, 3)]  # (rows, 3): tokens at i-2, i-1, i for Markov baselines
        target = np.roll(tokens, -1)
        rows = df.assign(token=tokens, two_back=two_back, target=target, ctx2=ctx[:, 0], ctx1=ctx[:, 1])[has_next]
        index = window_index(starts, self.window)[has_next]
        steps = self._steps(apply_specs(df, self._specs(self.meta)))
        return SplitData(
            name,
            steps,
            torch.from_numpy(index),
            torch.from_numpy(target[has_next]),
            tokens=torch.from_numpy(tok_pad),
            rows=rows.reset_index(drop=True),
        )
