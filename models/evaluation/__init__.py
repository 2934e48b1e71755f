"""Evaluation of trained checkpoints, used by evaluate.py.

    sources     which checkpoints (ckpt_path / ckpt_paths / runs=DIR) and which test sets
                (dataset splits, per-workload files, raw trace files through parse -> replay)
    metrics     the task's torchmetrics plus confusion matrix and lift, for models and baselines
    cost        parameter count and MACs per decision, counted from the modules
    latency     batch-1, one-thread CPU latency: PyTorch eager and onnxruntime
    importance  permutation feature importance on a test split
    winner      the stated rule: best validation metric within a MAC budget (latency reported)
    plots       PNGs (matplotlib Agg); report: report.md and metrics.json
    runner      `evaluate(cfg)`: everything above for one or several checkpoints
"""
