"""Integer reference: rounding, tables, saturation, and streaming == full-sequence evaluation."""

import numpy as np
import pytest
import torch

from export.blob import arch_hash
from export.intref import IntRef, Stream, lut, rshr
from export.ir import sigmoid
from export.onnx_graph import lower
from export.quantize import act_table, calibrate, qround, quantize
from models.onnx import export_onnx
from tests.export_synthetic import make_net

F = 5


def test_rounding_is_round_half_up_for_both_signs():
    v = np.array([5, -5, 3, -3, 6, -6, 7, -7])  # /2: 2.5 -2.5 1.5 -1.5 3 -3 3.5 -3.5
    assert rshr(v, 1).tolist() == [3, -2, 2, -1, 3, -3, 4, -3]
    assert rshr(v, 0).tolist() == v.tolist() and rshr(v, -2).tolist() == (v * 4).tolist()
    assert qround(np.array([2.5, -2.5, 0.49, -0.51]), 0).tolist() == [3, -2, 0, -1]


def test_tables_interpolate_within_documented_error():
    z = np.arange(-32768, 32768)
    x = z / 4096.0
    sig = lut(act_table(sigmoid), z) / 32768.0
    tnh = lut(act_table(np.tanh), z) / 32768.0
    assert np.abs(sig - sigmoid(x)).max() < 1e-4
    assert np.abs(tnh - np.tanh(x)).max() < 6e-4
    grid = np.arange(0, 65536, 256) - 32768
    assert (lut(act_table(sigmoid), grid) == act_table(sigmoid)[:256]).all()


def _quantized(kind, window, vocab=0, seed=0, **kw):
    torch.manual_seed(seed)
    net = make_net(kind, F, window, vocab, 3 if vocab else 0, **kw).eval()
    g = lower(export_onnx(net, window, F, vocab))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((256, window, F))
    tok = rng.integers(0, vocab, (256, window)) if vocab else None
    return g, quantize(g, calibrate(g, [(x, tok)]), headroom=1)


MODELS = {
    "mlp": ("mlp", 4, 6, {"width": 8, "depth": 2}),
    "tcn": ("tcn", 16, 0, {"width": 6, "depth": 2}),
    "lstm": ("lstm", 8, 6, {"width": 6, "depth": 2}),
}


@pytest.mark.parametrize("name", MODELS)
def test_streaming_is_bit_identical_to_full_sequence(name):
    kind, window, vocab, kw = MODELS[name]
    g, q = _quantized(kind, window, vocab, **kw)
    rf = g.receptive_field() or window
    t = 10 * rf + 7
    rng = np.random.default_rng(1)
    x = q.quantize_input(rng.standard_normal((6, t, F)) * 2)
    x[:, t // 2] = 40000  # saturating inputs mid-stream
    tok = rng.integers(-1, vocab + 1, (6, t)) if vocab else None
    full_ref, step_ref = IntRef(q), IntRef(q)
    full = full_ref.outputs_full(x, tok)
    streamed = Stream(step_ref, 6).run(x, tok)
    assert np.array_equal(full, streamed)
    assert full_ref.counts == step_ref.counts and full_ref.counts[g.x] > 0, "saturation counted, same in both forms"
    if vocab:
        assert full_ref.counts[g.tokens] > 0, "out-of-range tokens are clamped and counted"
    if g.receptive_field() is not None:  # MLP ring, TCN with window >= receptive field: the window's view
        win = IntRef(q).outputs_full(x[:, t - window :], None if tok is None else tok[:, t - window :])[:, -1]
        assert np.array_equal(win, streamed[:, -1])


def test_pinned_scales_reproduce_the_arch_hash():
    g_a, q_a = _quantized("tcn", 16, 0, seed=0, width=6, depth=2)
    g_b, q_b = _quantized("tcn", 16, 0, seed=1, width=6, depth=2)
    assert arch_hash(q_a) != arch_hash(q_b)
    rng = np.random.default_rng(0)
    q_b2 = quantize(g_b, calibrate(g_b, [(rng.standard_normal((64, 16, F)), None)]), pinned=q_a.scales())
    assert arch_hash(q_b2) == arch_hash(q_a)
    scaled = q_a.scales()
    scaled["weights"]["conv0"]["wfrac"] += 4  # force weights out of int16 range
    q_c = quantize(g_b, q_b.ranges, pinned=scaled)
    assert q_c.weight_saturation.get("conv0.wfrac", 0) > 0


def test_input_names_are_part_of_the_arch_description():
    """Two models with the same shapes and transforms but different input features must not
    share an arch hash: a blob of one would otherwise validate in a module built for the other."""
    from export.encode import Encoder

    def enc(names):
        return Encoder(["log1p_us", "identity"], [0, 0], [1, 1], [0, 0], names, names)

    assert enc(["since_last_ran_ns", "prio"]).describe() != enc(["since_last_ran_ns", "src_nr_running"]).describe()
    assert enc(["since_last_ran_ns", "prio"]).describe() == enc(["since_last_ran_ns", "prio"]).describe()
