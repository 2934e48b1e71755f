"""Float parity: torch vs onnxruntime vs the lowered IR, on the same windows.

torch vs ORT checks the export; IR vs ORT checks the lowering (the IR is what the integer
pipeline is derived from, so it must compute what the ONNX graph computes).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import torch

from export.ir import Graph, run_float


def decisions(logits: np.ndarray, unknown_token: int | None = None) -> np.ndarray:
    """One logit: migrate iff logit > 0. Several: argmax, never the unknown token."""
    logits = np.asarray(logits, np.float64)
    if logits.shape[-1] == 1:
        return (logits[..., 0] > 0).astype(np.int64)
    if unknown_token is not None:
        logits = logits.copy()
        logits[..., unknown_token] = -np.inf
    return logits.argmax(-1)


def torch_logits(net: torch.nn.Module, x: np.ndarray, tok: np.ndarray | None, batch: int = 4096) -> np.ndarray:
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            t = None if tok is None else torch.as_tensor(tok[i : i + batch], dtype=torch.long)
            out.append(net(torch.as_tensor(x[i : i + batch], dtype=torch.float32), t).numpy())
    return np.concatenate(out) if out else np.zeros((0, 1))


def check(
    model: onnx.ModelProto,
    g: Graph,
    net: torch.nn.Module,
    x: np.ndarray,
    tok: np.ndarray | None,
    unknown_token: int | None = None,
) -> dict:
    """Max abs differences and decision agreement over the windows x (N, L, F)."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feeds = [
        {"x": x[i : i + 1].astype(np.float32), **({"tokens": tok[i : i + 1].astype(np.int64)} if g.tokens else {})}
        for i in range(len(x))
    ]
    ref = np.concatenate([sess.run(None, f)[0] for f in feeds])  # batch 1: the export has static shapes
    tl = torch_logits(net, x, tok if g.tokens else None)
    ir = run_float(g, x, tok)[g.output][:, -1]
    d = [decisions(v, unknown_token) for v in (ref, tl, ir)]
    return {
        "windows": int(len(x)),
        "max_abs_diff_torch_ort": float(np.abs(tl - ref).max()),
        "max_abs_diff_ir_ort": float(np.abs(ir - ref).max()),
        "decision_agreement_torch_ort": float((d[0] == d[1]).mean()),
        "decision_agreement_ir_ort": float((d[0] == d[2]).mean()),
    }
