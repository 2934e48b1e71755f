"""Two tiny can_migrate models through the real export pipeline, for the module and VM tests.

Their inputs are Chen's 15 features (the hook's contract, data/collect/bcc/cm_features.h) with
made-up statistics and random weights: they test the module, not a learned verdict.

Model A (seed 1) becomes model.h + model_vectors.h, compiled into the module. Model B
(seed 2) is exported with `like=A`: A's scales (so the same SLM_ARCH_HASH, its blob loads into
the module built for A) and A's self-test inputs (so export's integer reference gives B's
outputs on exactly the vectors the module runs a query on).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data.can_migrate.features import CHEN_FEATURES
from data.dataset.datamodule import CHEN_COUNTS, VALID
from data.dataset.encoding import FeatureSpec
from export import pipeline
from export.source import Source, Split
from models.network import SchedNet, mlp

WINDOW, HIDDEN = 4, 16  # a short window, one hidden layer


@dataclass
class ModelPair:
    gen_dir: Path  # model.h + model_vectors.h of model A
    blob_b: Path  # model B's blob, same arch as A
    arch_hash: int
    n_vectors: int  # self-test vectors in model_vectors.h
    out_crc_a: int  # zlib crc32 of the integer reference's outputs (little-endian s32), A
    out_crc_b: int  # the same for B on A's self-test inputs

    @property
    def blob_a(self) -> Path:
        """Model A's blob (export writes it beside model.h): pushing it restores A."""
        return self.gen_dir / "model.blob"


def can_migrate_features() -> dict:
    """The can_migrate task's inputs (as CanMigrateDataModule builds them) with made-up
    statistics, so that export emits slm_encode() and the module's hook path compiles."""
    specs = [FeatureSpec(c, c, "identity" if c in CHEN_COUNTS else "flag") for c in CHEN_FEATURES]
    mean = [2.0 if s.transform == "identity" else 0.0 for s in specs]
    std = [3.0 if s.transform == "identity" else 1.0 for s in specs]
    return {"specs": [s.to_dict() for s in specs], "mean": mean, "std": std, "names": [s.name for s in specs] + [VALID]}


def tiny_source(seed: int, n_windows: int = 512) -> Source:
    features = can_migrate_features()
    n_num = len(features["names"])
    torch.manual_seed(seed)
    net = SchedNet(mlp(n_num, WINDOW, width=HIDDEN, depth=1), n_out=1).eval()
    x = np.random.default_rng(seed).standard_normal((n_windows, WINDOW, n_num)).astype(np.float32)
    return Source(net, WINDOW, n_num, 0, Split("calib", x), features=features, describe=f"tiny mlp seed {seed}")


def make_pair(out: Path, n_vectors: int = 2000) -> ModelPair:
    a_dir, b_dir = Path(out) / "a", Path(out) / "b"
    # verify=False: gcc bit-exactness is export's own test; here the kernel is the check.
    report_a = pipeline.run(tiny_source(1), a_dir, n_vectors=n_vectors, verify=False)
    report_b = pipeline.run(tiny_source(2), b_dir, like=a_dir, n_vectors=n_vectors, verify=False)
    assert report_a["arch_hash"] == report_b["arch_hash"], "like= must keep the arch hash"
    return ModelPair(
        a_dir,
        b_dir / "model.blob",
        report_a["arch_hash"],
        report_a["selftest_vectors"],
        report_a["selftest_out_crc32"],
        report_b["selftest_out_crc32"],
    )
