"""CPU inference latency of one decision: batch 1, one thread, PyTorch eager and onnxruntime.

One thread because the kernel decides on one CPU, and so that models are compared without the
noise of a thread pool. Every call is timed on its own (perf_counter_ns) after a warm-up; p50
and p99 are taken over the calls. The ONNX graph is the one export/ ships (models.onnx's
whitelisted exporter, which both use); a network it rejects is still timed through a plain
torch.onnx.export with the same inputs, and the result says so.
"""

from __future__ import annotations

import contextlib
import logging
import time

import numpy as np
import torch

from models.onnx import export_onnx_any

log = logging.getLogger(__name__)


def summarise(ns: np.ndarray) -> dict:
    us = np.asarray(ns, dtype=np.float64) / 1000.0
    return {
        "p50_us": float(np.percentile(us, 50)),
        "p99_us": float(np.percentile(us, 99)),
        "mean_us": float(us.mean()),
        "calls": int(len(us)),
    }


def time_calls(fn, calls: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    ns = np.empty(calls, dtype=np.int64)
    for i in range(calls):
        t0 = time.perf_counter_ns()
        fn()
        ns[i] = time.perf_counter_ns() - t0
    return summarise(ns)


@contextlib.contextmanager
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def eager_latency(net: torch.nn.Module, x: torch.Tensor, tokens: torch.Tensor | None, calls: int, warmup: int) -> dict:
    net.eval()
    with one_thread(), torch.inference_mode():
        return time_calls(lambda: net(x, tokens), calls, warmup)


def onnx_graph(net: torch.nn.Module, meta: dict):
    """(onnx.ModelProto, note): export/'s graph, or a plain export where export/ refuses the net."""
    return export_onnx_any(net, int(meta["window"]), int(meta["n_features"]), int(meta.get("n_tokens") or 0))


def ort_session(model):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def ort_latency(
    net: torch.nn.Module, meta: dict, x: torch.Tensor, tokens: torch.Tensor | None, calls: int, warmup: int
) -> dict:
    model, note = onnx_graph(net, meta)
    sess = ort_session(model)
    feed = {"x": x.numpy()}
    if tokens is not None:
        feed["tokens"] = tokens.numpy()
    feed = {k: v for k, v in feed.items() if k in {i.name for i in sess.get_inputs()}}
    out = sess.run(None, feed)[0]
    with torch.inference_mode():
        ref = net.eval()(x, tokens).numpy()
    result = time_calls(lambda: sess.run(None, feed), calls, warmup)
    return {**result, "max_abs_diff": float(np.abs(out - ref).max()), "graph": note, "nodes": len(model.graph.node)}


def measure(
    net: torch.nn.Module,
    meta: dict,
    x: torch.Tensor,
    tokens: torch.Tensor | None,
    calls: int = 1000,
    warmup: int = 100,
    onnx: bool = True,
) -> dict:
    """{"eager": {...}, "onnxruntime": {...}} for one batch-1 window (x (1, L, F), tokens (1, L))."""
    out = {"threads": 1, "batch": 1, "eager": eager_latency(net, x, tokens, calls, warmup)}
    if onnx:
        try:
            out["onnxruntime"] = ort_latency(net, meta, x, tokens, calls, warmup)
        except Exception as e:  # noqa: BLE001 - latency of the eager model is still worth reporting
            log.warning("onnxruntime latency failed: %s", e)
            out["onnxruntime"] = {"error": f"{type(e).__name__}: {e}"}
    return out
