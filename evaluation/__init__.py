"""Evaluation of trained checkpoints, used by evaluate.py.

sources     which checkpoints (ckpt_path / ckpt_paths / runs=DIR) and which test sets
            (dataset splits, per-workload files, raw trace files through parse -> replay)
metrics     the task's torchmetrics plus confusion matrix and lift, for models and baselines
cost        parameter count and MACs per decision, counted from the modules
latency     batch-1, one-thread CPU latency: PyTorch eager and onnxruntime
importance  permutation feature importance (validation rows by default)
seeds       runs that differ only by seed as groups: mean ± std, "beats only by more than the spread"
winner      the stated rule: best validation mean within a MAC budget, declared only beyond the spread
loco        leave-one-category-out tables read from the runs' results.json
plots       PNGs (matplotlib Agg); report: report.md and metrics.json
runner      `evaluate(cfg)`: everything above for one or several checkpoints
"""
