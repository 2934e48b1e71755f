"""Benchmark: CPU inference latency of trained checkpoints, batch 1, one thread.

    python bench/bench_latency.py CKPT_OR_RUN_DIR... [--calls 5000] [--warmup 500] [--no-onnx]

A directory is searched for runs (<run>/checkpoints/, e.g. a Hydra multirun directory) and each
run's best checkpoint is taken, as `evaluate.py runs=DIR` does. For every model it prints the
parameter count, MACs per decision (a full window for sequence models) and p50 / p99 / mean
latency per decision for PyTorch eager and for onnxruntime on the exported ONNX graph. The
input is one all-zero window of the model's shape (the dense networks do the same work for
any values). Figures depend on the machine and its load: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from evaluation.latency import measure  # noqa: E402
from evaluation.sources import find_checkpoints  # noqa: E402
from models.cost import macs_per_decision, parameter_count  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("paths", nargs="+", type=Path, help="checkpoint files or directories of runs")
    ap.add_argument("--calls", type=int, default=5000, help="timed calls per engine (default 5000)")
    ap.add_argument("--warmup", type=int, default=500)
    ap.add_argument("--no-onnx", action="store_true", help="PyTorch eager only")
    args = ap.parse_args(argv)

    from models.tasks import load_from_checkpoint

    files = [p for p in args.paths if p.is_file()]
    dirs = [str(p) for p in args.paths if p.is_dir()]
    ckpts = find_checkpoints(ckpt_paths=[str(p) for p in files], runs=dirs)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"batch 1, 1 thread, {args.calls} calls after {args.warmup} warm-up"
    )
    head = (
        f"{'task':10s} {'model':5s} {'win':>4s} {'params':>8s} {'MACs':>9s} {'eager p50':>10s} {'eager p99':>10s} "
        f"{'ORT p50':>9s} {'ORT p99':>9s}  checkpoint"
    )
    print(head)
    for path in ckpts:
        module, _, meta = load_from_checkpoint(str(path))
        net, window, n_tok = module.net.eval(), int(meta["window"]), int(meta.get("n_tokens") or 0)
        x = torch.zeros(1, window, int(meta["n_features"]))
        tokens = torch.zeros(1, window, dtype=torch.long) if n_tok else None
        t0 = time.perf_counter()
        lat = measure(net, meta, x, tokens, args.calls, args.warmup, onnx=not args.no_onnx)
        ort = lat.get("onnxruntime", {})
        us = lambda d, k: f"{d[k]:8.1f}us" if k in d else f"{'-':>10s}"  # noqa: E731
        print(
            f"{meta['task']:10s} {type(net.backbone).__name__.lower():5s} {window:4d} {parameter_count(net):8d} "
            f"{macs_per_decision(net, x, tokens):9d} {us(lat['eager'], 'p50_us')} {us(lat['eager'], 'p99_us')} "
            f"{us(ort, 'p50_us'):>9s} {us(ort, 'p99_us'):>9s}  {path}  ({time.perf_counter() - t0:.0f}s)"
        )
        if "error" in ort:
            print(f"    onnxruntime: {ort['error']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
