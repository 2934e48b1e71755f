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
from pathlib import Path

os.environ.setdefault("PROJECT_ROOT", str(Path(__file__).resolve().parent))

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from evaluation import config  # noqa: E402 - registers the schema conf/eval.yaml is composed onto
from plumbing.hydra_cli import entry_point, run  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="eval.yaml")
@entry_point("evaluate.py")  # an error is one line; a run that wrote nothing leaves no folder
def main(cfg: DictConfig) -> None:
    config.check(cfg)
    # deferred on purpose: the runner loads torch and the models (seconds); `--help` and a bad
    # setting are answered before
    from evaluation.runner import evaluate

    evaluate(cfg)


if __name__ == "__main__":
    run(main, "evaluate.py", explain=config.explain)  # a training setting given here: why it cannot change
