"""Evaluate trained checkpoints: test splits, per-workload sets and raw traces, baselines beside
the models, CPU latency, MACs, permutation importance, a winner, report.md + metrics.json + PNGs.

    python evaluate.py ckpt_path=logs/train/runs/<time>/checkpoints/epoch_007.ckpt
    python evaluate.py ckpt_path=... 'traces=[a.trace.zst,b.trace.xz]'   # raw ftrace files as unseen sets
    python evaluate.py 'ckpt_paths=[A.ckpt,B.ckpt]'                      # several runs in one report
    python evaluate.py runs=logs/train/multiruns/<time>                  # best checkpoint of every run
    python evaluate.py ckpt_path=... data_dir=other/dataset               # only data may be overridden

Settings: conf/eval.yaml. Output: the Hydra run directory (logs/eval/runs/<time>/).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from models.evaluation.config import OverrideError, check_overrides  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="eval.yaml")
def main(cfg: DictConfig) -> None:
    from models.evaluation.runner import evaluate
    from models.evaluation.sources import EvaluationError

    try:
        evaluate(cfg)
    except EvaluationError as e:  # bad input: say which, without a traceback
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    try:
        check_overrides(sys.argv[1:])
    except OverrideError as e:
        sys.exit(f"error: {e}")
    main()
