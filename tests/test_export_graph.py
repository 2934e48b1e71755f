"""Export, whitelist and lowering: the ONNX graph drives the integer pipeline (issue 5)."""

import numpy as np
import pytest
import torch
from torch import nn

from export import parity
from export.ir import OP_KINDS
from export.onnx_graph import lower
from models.network import SchedNet
from models.onnx import ExportError, export_onnx
from tests.export_synthetic import make_net

F = 5
CASES = {
    "mlp_window_tokens": ("mlp", 4, 7, {"width": 12, "depth": 2}),
    "mlp_window1": ("mlp", 1, 0, {"width": 12, "depth": 1}),
    "tcn": ("tcn", 8, 0, {"width": 8, "depth": 2}),
    "tcn_tokens_downsample": ("tcn", 8, 5, {"width": 6, "depth": 2}),
    "lstm_2_layers_tokens": ("lstm", 6, 5, {"width": 8, "depth": 2}),
}


def _bn_noise(net):
    for m in net.modules():
        if isinstance(m, (nn.BatchNorm1d,)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)


@pytest.mark.parametrize("case", CASES)
def test_lowered_ir_matches_onnxruntime(case):
    kind, window, vocab, kw = CASES[case]
    torch.manual_seed(0)
    net = make_net(kind, F, window, vocab, 3 if vocab else 0, **kw).eval()
    _bn_noise(net)
    model = export_onnx(net, window, F, vocab)
    assert not model.functions, "local functions must be inlined"
    g = lower(model)
    assert {op.kind for op in g.ops} <= set(OP_KINDS)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, window, F)).astype(np.float32)
    tok = rng.integers(0, vocab, (64, window)) if vocab else None
    res = parity.check(model, g, net, x, tok)
    assert res["max_abs_diff_torch_ort"] < 1e-5 and res["max_abs_diff_ir_ort"] < 1e-5, res
    assert res["decision_agreement_ir_ort"] == 1.0
    kinds = [op.kind for op in g.ops]
    if kind == "tcn":
        assert kinds.count("conv") == 4 and all(op.attrs.get("relu") for op in g.ops if op.kind == "conv")
        assert not any(op.kind == "relu" for op in g.ops), "ReLUs fold into conv / add"
    if vocab:
        assert kinds[0] == "embed" and "select" in kinds  # token embedding concatenated with x
    if kind == "mlp" and window > 1:
        assert "window" in kinds


def test_export_is_deterministic():
    torch.manual_seed(1)
    net = make_net("tcn", F, 8, 0, 0, width=4, depth=1).eval()
    assert export_onnx(net, 8, F, 0).SerializeToString() == export_onnx(net, 8, F, 0).SerializeToString()


class _Body(nn.Module):
    """Backbone with a swappable tail, to provoke each rejection."""

    def __init__(self, mode):
        super().__init__()
        self.mode, self.out_features = mode, 4
        self.lin = nn.Linear(F, 4)
        self.act = nn.GELU()
        self.conv = nn.Conv1d(F, 4, 3, padding=1)
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x):
        if self.mode == "gelu":
            return self.act(self.lin(x[:, -1]))
        if self.mode == "noncausal":
            return self.conv(x.transpose(1, 2))[:, :, -1]
        if self.mode == "earlier_step":
            return self.lin(x[:, -2])
        return self.bn(self.lin(x[:, -1]))  # "bn": folded into the Linear


@pytest.mark.parametrize("mode,needle", [("gelu", "Gelu"), ("noncausal", "not causal"), ("earlier_step", "steps")])
def test_unsupported_constructs_fail_clearly(mode, needle):
    net = SchedNet(_Body(mode), 1).eval()
    with pytest.raises(ExportError) as err:
        lower(export_onnx(net, 6, F, 0))
    assert needle in str(err.value)
    if mode == "gelu":
        assert "backbone.act (GELU)" in str(err.value), "the error names the module path"


def test_batchnorm_after_linear_is_folded():
    torch.manual_seed(2)
    net = SchedNet(_Body("bn"), 1).eval()
    _bn_noise(net)
    model = export_onnx(net, 6, F, 0)
    g = lower(model)
    assert [op.kind for op in g.ops] == ["dense", "dense"]
    x = np.random.default_rng(1).standard_normal((32, 6, F)).astype(np.float32)
    assert parity.check(model, g, net, x, None)["max_abs_diff_ir_ort"] < 1e-5


def test_hand_built_graph_folds_batchnorm_and_bias():
    """Conv -> BatchNormalization -> Relu and MatMul -> Add, as an exporter might leave them."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(3)
    L, C, K = 8, 4, 3
    init = {
        "w": rng.standard_normal((C, F, K)).astype(np.float32),
        "cb": rng.standard_normal(C).astype(np.float32),
        "s": rng.uniform(0.5, 1.5, C).astype(np.float32),
        "bb": rng.standard_normal(C).astype(np.float32),
        "m": rng.standard_normal(C).astype(np.float32),
        "v": rng.uniform(0.5, 2, C).astype(np.float32),
        "idx": np.array(-1, np.int64),
        "mw": rng.standard_normal((C, 2)).astype(np.float32),
        "mb": rng.standard_normal(2).astype(np.float32),
    }
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
        helper.make_node("Conv", ["xt", "w", "cb"], ["c"], pads=[(K - 1) * 2, 0], dilations=[2], kernel_shape=[K]),
        helper.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"]),
        helper.make_node("Relu", ["n"], ["r"]),
        helper.make_node("Gather", ["r", "idx"], ["last"], axis=2),
        helper.make_node("MatMul", ["last", "mw"], ["mm"]),
        helper.make_node("Add", ["mm", "mb"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, L, F])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(v, k) for k, v in init.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    onnx.checker.check_model(model)
    g = lower(model)
    assert [(op.kind, op.attrs.get("relu")) for op in g.ops] == [("conv", True), ("dense", None)]
    from export.ir import run_float

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.standard_normal((16, L, F)).astype(np.float32)
    ref = np.concatenate([sess.run(None, {"x": x[i : i + 1]})[0] for i in range(16)])
    assert np.abs(run_float(g, x)[g.output][:, -1] - ref).max() < 1e-5
