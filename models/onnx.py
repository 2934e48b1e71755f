"""A trained network as ONNX: the one exporter both evaluation (latency) and export/ use.

Export uses the dynamo exporter (torch's default) at a fixed opset with static shapes (batch 1,
the training window length), which is deterministic byte for byte; local functions are inlined.
The graph may only use the whitelisted operators the integer exporter can translate; anything
else raises ExportError naming the node and the module it came from.
"""

from __future__ import annotations

import ast
import contextlib
import io
import logging
import warnings

import onnx
import onnx.inliner
import torch

OPSET = 20
WHITELIST = frozenset(
    {
        # compute
        "Gemm",
        "MatMul",
        "Add",
        "Relu",
        "Conv",
        "BatchNormalization",
        "LSTM",
        # layout / constants
        "Gather",
        "Concat",
        "Transpose",
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Slice",
        "Identity",
        "Constant",
    }
)


class ExportError(ValueError):
    """The model uses an op or a construct the integer exporter cannot translate."""


@contextlib.contextmanager
def quiet_exporter():
    """The ONNX exporter logs every optimisation pass at INFO and prints progress."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "onnx_ir", "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=False):
            lg.setLevel(level)


def _inputs(window: int, n_num: int, vocab: int):
    x = torch.zeros(1, window, n_num)
    tokens = torch.zeros(1, window, dtype=torch.long) if vocab else None
    return (x, tokens), ["x", "tokens"] if vocab else ["x"]


def export_onnx(net: torch.nn.Module, window: int, n_num: int, vocab: int) -> onnx.ModelProto:
    """Export `net(x (1, L, F), tokens (1, L) | None)` to ONNX with local functions inlined;
    raises ExportError when the graph leaves the whitelist."""
    args, names = _inputs(window, n_num, vocab)
    with quiet_exporter():
        prog = torch.onnx.export(
            net.eval(),
            args,
            dynamo=True,
            opset_version=OPSET,
            input_names=names,
            output_names=["logits"],
            verbose=False,
        )
    model = onnx.inliner.inline_local_functions(prog.model_proto)
    check_whitelist(model)
    return model


def export_onnx_any(net: torch.nn.Module, window: int, n_num: int, vocab: int) -> tuple[onnx.ModelProto, str]:
    """(graph, note): the whitelisted export, or, for a network it refuses, a plain
    torch.onnx.export with the same inputs (still good for timing it in onnxruntime)."""
    try:
        return export_onnx(net, window, n_num, vocab), "whitelisted export (models.onnx.export_onnx)"
    except ExportError as e:
        note = f"plain torch.onnx.export (the integer exporter refuses this network: {e})"
    args, names = _inputs(window, n_num, vocab)
    with quiet_exporter():
        prog = torch.onnx.export(
            net.eval(), args, dynamo=True, input_names=names, output_names=["logits"], verbose=False
        )
    return prog.model_proto, note


def node_origin(node: onnx.NodeProto) -> str:
    """'module.path (ClassName)' of the nn.Module a node came from, from exporter metadata."""
    meta = {p.key: p.value for p in node.metadata_props}
    try:
        scopes = ast.literal_eval(meta["pkg.torch.onnx.name_scopes"])
        classes = ast.literal_eval(meta["pkg.torch.onnx.class_hierarchy"])
    except (KeyError, ValueError, SyntaxError):
        return f"node {node.name}"
    path = scopes[-2] if len(scopes) >= 2 and scopes[-2] else "<top-level module>"
    cls = classes[-2].rsplit(".", 1)[-1] if len(classes) >= 2 else "?"
    return f"{path} ({cls})"


def check_whitelist(model: onnx.ModelProto) -> None:
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or node.op_type not in WHITELIST:
            raise ExportError(
                f"unsupported ONNX op {node.domain + '::' if node.domain else ''}{node.op_type} "
                f"(node {node.name!r}) from module {node_origin(node)}; the integer exporter supports "
                f"{', '.join(sorted(WHITELIST))}"
            )
