"""LightningDataModules: one per task, all reading the dataset directory written by data.build.

The DataModule owns everything between the decision tables and tensors: the validation split,
feature transforms, normalisation statistics (fitted on the training rows only), token encodings
and windows. All of that is summarised in `meta` (a JSON-able dict) which the task module stores
in its checkpoint; a DataModule built with `data_meta=` reuses it verbatim instead of fitting, so
evaluation and export see exactly the inputs the model was trained on.

Validation rows are the last `val_fraction` of every training run (by time). Whole traces are
already split into train / test_seen / test_unseen by `data.build`; cutting each training run's
tail keeps validation free of window overlap with training while still covering every workload.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from data.encoding import (
    FeatureSpec,
    TokenLayout,
    apply_specs,
    build_pid_vocab,
    fit_standardiser,
    mtf_encode,
    standardise,
    vocab_encode,
)
from data.windows import SplitData, WindowDataset, collate_batch, stream_order, stream_starts, window_index

log = logging.getLogger(__name__)

META_VERSION = 1
VALID = "valid"  # extra input channel: 1 for a real step, 0 for window padding


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
        val_fraction: float = 0.15,
        test_splits: tuple[str, ...] = ("test_seen", "test_unseen"),
        data_meta: dict | None = None,
        features: list[str] | None = None,
    ):
        super().__init__()
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.dataset_dir = Path(dataset_dir)
        self.window = window
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.test_splits = tuple(test_splits)
        self.features = list(features) if features else None
        self.meta: dict | None = dict(data_meta) if data_meta else None
        if self.meta:
            self._check_meta(self.meta)
            self.window = int(self.meta["window"])
        self._splits: dict[str, SplitData] = {}
        self._train_val: tuple[pd.DataFrame, pd.DataFrame] | None = None
        self._test_names: list[str] | None = None

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
            train, _ = self._train_val_frames()
            meta = self.fit_meta(train)
            meta.update(
                task=self.task,
                table=self.table,
                window=self.window,
                version=META_VERSION,
                dataset=self._dataset_card(),
            )
            self.meta = meta
        if stage in (None, "fit", "validate"):
            self.get_split("train")
            self.get_split("val")

    def get_split(self, name: str) -> SplitData:
        """Windows of a named split ("train", "val", "test_seen", "workload/<w>", ...), cached."""
        if name not in self._splits:
            if self.meta is None:
                self.setup("test")
            if name in ("train", "val"):
                df = self._train_val_frames()[0 if name == "train" else 1]
            else:
                df = self.read_table(name)
            self._splits[name] = self.make_split(df, name)
            log.info("%s/%s: %d samples", self.table, name, len(self._splits[name]))
        return self._splits[name]

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
            if not self.table_path(name).exists():
                log.warning("test split %s not found at %s; skipped", name, self.table_path(name))
            elif len(self.get_split(name)) == 0:
                log.warning("test split %s is empty; skipped", name)
            else:
                names.append(name)
        self._test_names = names
        return names

    def loader(self, split: SplitData, shuffle: bool = False, sampler=None) -> DataLoader:
        return DataLoader(
            WindowDataset(split),
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
    def _train_val_frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        if self._train_val is None:
            df = self.read_table("train")
            if df.empty:
                raise ValueError(f"training table {self.table_path('train')} has no rows")
            rank = df.groupby("run_id", sort=False)["ts"].rank(method="first", pct=True)
            is_val = (rank > 1.0 - self.val_fraction).to_numpy()
            self._train_val = (df[~is_val].reset_index(drop=True), df[is_val].reset_index(drop=True))
        return self._train_val

    def _dataset_card(self) -> dict:
        path = self.dataset_dir / "meta.json"
        card = json.loads(path.read_text()) if path.exists() else {}
        return {
            "dir": str(self.dataset_dir),
            "version": card.get("version"),
            "train_runs": card.get("splits", {}).get("train"),
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
        return {"features": [s.to_dict() for s in specs], "feature_names": names, "n_features": len(names), "mean": mean, "std": std}

    @staticmethod
    def _specs(meta: dict) -> list[FeatureSpec]:
        return [FeatureSpec(**d) for d in meta["features"]]


class BinaryDecisionDataModule(DecisionDataModule):
    """Binary decision tables (migration, can_migrate): class balance by loss weight or sampler."""

    def __init__(self, *args, balance: str = "loss", **kwargs):
        if balance not in ("loss", "sampler", "none"):
            raise ValueError(f"balance must be loss | sampler | none, got {balance!r}")
        super().__init__(*args, **kwargs)
        self.balance = self.meta.get("balance", balance) if self.meta else balance

    def class_meta(self, y: np.ndarray) -> dict:
        pos = float(y.sum())
        neg = float(len(y) - pos)
        return {
            "n_out": 1,
            "n_tokens": 0,
            "balance": self.balance,
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


# Transforms of MIGRATION_FEATURES (data/replay.py) that are not plain standardised numbers.
MIGRATION_TRANSFORMS = {"src_idle": "flag", "other_idle": "flag", "waker_same_cpu": "flag"}
MIGRATION_KINDS = {0: "wakeup", 1: "preempt", 2: "new"}


def migration_feature_columns() -> list[str]:
    from data.replay import MIGRATION_FEATURES

    return list(MIGRATION_FEATURES)


class MigrationDataModule(BinaryDecisionDataModule):
    """Migration decision points; windows are the last L decisions on the same CPU or of the same task."""

    task = "migration"
    table = "migration"
    label = "migrated"

    def __init__(self, *args, window_by: str = "cpu", **kwargs):
        if window_by not in ("cpu", "task"):
            raise ValueError(f"window_by must be cpu | task, got {window_by!r}")
        super().__init__(*args, **kwargs)
        self.window_by = self.meta.get("window_by", window_by) if self.meta else window_by

    def stream_keys(self) -> list[str]:
        return ["run_id", "segment", "src_cpu" if self.window_by == "cpu" else "tid"]

    def fit_meta(self, train: pd.DataFrame) -> dict:
        specs = [
            FeatureSpec(c, c, MIGRATION_TRANSFORMS.get(c, "log1p_us" if c.endswith("_ns") else "identity"))
            for c in migration_feature_columns()
        ] + [FeatureSpec(f"kind_{n}", "kind", "onehot", k) for k, n in MIGRATION_KINDS.items()]
        return {
            **self._fit_features(train, specs),
            **self.class_meta(train[self.label].to_numpy()),
            "window_by": self.window_by,
            "label": self.label,
        }


# Chen features that are numbers (standardised); the other ten are 0/1 flags.
CHEN_COUNTS = {"src_len", "src_load", "dst_load", "dst_len", "delta_faults"}


class CanMigrateDataModule(BinaryDecisionDataModule):
    """Chen et al.'s formulation on `can_migrate_task` records (15 engineered features).

    DATASET/can_migrate/<split>.parquet is the builder's can_migrate table: records passing the
    hard conditions with Chen's features, both labels and the kernel rule's context
    (data.cm_features.can_migrate_table); a table of decoded records is converted by the same
    function. `label`: `can_migrate` (the kernel's return value) or `forced` (allowed although
    cache hot, Pinto). Windows run over the records of one destination CPU, in time order.
    """

    task = "can_migrate"
    table = "can_migrate"

    def __init__(self, *args, label: str = "can_migrate", **kwargs):
        from data.cm_features import LABELS

        if label not in LABELS:
            raise ValueError(f"label must be {' | '.join(LABELS)}, got {label!r}")
        super().__init__(*args, **kwargs)
        self.label = self.meta.get("label", label) if self.meta else label

    def read_table(self, split: str) -> pd.DataFrame:
        return self.as_table(super().read_table(split))

    @staticmethod
    def as_table(df: pd.DataFrame) -> pd.DataFrame:
        """A can_migrate table as is; decoded records through `can_migrate_table`."""
        from data.cm_features import can_migrate_table, is_table

        return df if is_table(df) else can_migrate_table(df)

    def fit_meta(self, train: pd.DataFrame) -> dict:
        from data.cm_features import CHEN_FEATURES

        specs = [FeatureSpec(c, c, "identity" if c in CHEN_COUNTS else "flag") for c in CHEN_FEATURES]
        return {**self._fit_features(train, specs), **self.class_meta(train[self.label].to_numpy()), "label": self.label}

    def stream_keys(self) -> list[str]:
        return ["run_id", "dst_cpu"]


class SyntheticCanMigrateDataModule(CanMigrateDataModule):
    """Singh's distillation: train on rows drawn by data.cm_synthetic and labelled by the kernel
    rule (`source: synthetic`), or on those plus the dataset's real training records
    (`source: both`); test splits are always the dataset's real records. Validation is the tail
    of every training run, synthetic included, so model selection never sees test records."""

    SOURCES = ("synthetic", "both")

    def __init__(self, *args, source: str = "synthetic", synthetic: dict | None = None, **kwargs):
        from data.cm_synthetic import SyntheticSpec

        if source not in self.SOURCES:
            raise ValueError(f"source must be {' | '.join(self.SOURCES)}, got {source!r}")
        super().__init__(*args, **kwargs)
        self.source = self.meta.get("source", source) if self.meta else source
        spec = self.meta.get("synthetic") if self.meta else None
        self.spec = SyntheticSpec(**dict(spec or synthetic or {}))

    def prepare_data(self) -> None:
        if self.source == "both":
            super().prepare_data()

    def read_table(self, split: str) -> pd.DataFrame:
        if split != "train":
            return super().read_table(split)
        from data.cm_synthetic import synthetic_table

        rows = synthetic_table(self.spec)
        if self.source == "both":
            rows = pd.concat([super().read_table("train"), rows], ignore_index=True, join="inner")
        return rows

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
            n_out=lay.n_classes, n_tokens=lay.n_tokens, unknown_token=lay.unknown, idle_token=lay.idle, pad_token=lay.pad
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
        for a, b in zip(bounds[:-1], bounds[1:]):
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
