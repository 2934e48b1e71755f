"""Acceptance of the generated C (issue 5): bit-exact against the integer reference on >= 100k
vectors, streaming == full evaluation, float agreement, kernel-safe object, blob and reload."""

import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

from export import blob_format, cbuild, pipeline
from models.onnx import ExportError
from tests.conftest import require
from tests.export_synthetic import trained_source

MODELS = {
    "mlp": {"kind": "mlp", "window": 4, "width": 16, "depth": 2},
    "tcn": {"kind": "tcn", "window": 16, "width": 8, "depth": 2},  # receptive field 13 <= window
    "lstm": {"kind": "lstm", "window": 8, "width": 8, "depth": 2, "vocab": 6},  # tokens + embedding
}


@pytest.fixture(scope="module", params=list(MODELS))
def exported(request, tmp_path_factory):
    require(cbuild.have_gcc(), "gcc, objdump and nm")
    kw = dict(MODELS[request.param])
    src = trained_source(kw.pop("kind"), **kw)
    out = tmp_path_factory.mktemp(request.param)
    return request.param, src, out, pipeline.run(src, out, n_vectors=100_000)


def test_c_is_bit_exact_on_100k_vectors(exported):
    name, _, _, rep = exported
    total = rep["c_bit_exact"]["total"]
    assert total["vectors"] >= 100_000 and total["mismatches"] == 0, rep["c_bit_exact"]
    for part in ("held_out", "random", "extremes", "streaming_data", "streaming_random"):
        assert rep["c_bit_exact"][part]["vectors"] > 0 and rep["c_bit_exact"][part]["mismatches"] == 0
    assert rep["c_bit_exact_blob"]["mismatches"] == 0, "params loaded from model.blob behave the same"
    assert rep["selftest"]["ok"], rep["selftest"]


def test_streaming_matches_full_evaluation(exported):
    name, _, _, rep = exported
    st = rep["streaming"]
    rf = st["receptive_field"] or MODELS[name]["window"]
    assert st["sequence_steps"] >= 10 * rf
    for part in ("streaming_data", "streaming_random"):
        assert st[part]["full_equals_stream"] and st[part]["mismatching_outputs"] == 0
        if name != "lstm":  # an LSTM's state outlives any window; see report
            assert st[part]["stream_equals_window_after_rf"]


def test_integer_model_agrees_with_float(exported):
    _, src, _, rep = exported
    r = rep["float_vs_int"]["test_unseen"]["window"]
    assert r["decision_agreement"] >= 0.99, r
    assert r["bal_acc_drop_points"] <= 1.0, r


def test_kernel_safe_object(exported):
    ko = exported[3]["kernel_object"]
    assert ko["fpu_instructions"] == [], "no SSE / x87 instructions"
    assert ko["undefined_symbols"] == [], "no calls into libc or the kernel"
    assert ko["data_size"] == 0 and ko["bss_size"] == 0, "weights are const, state is caller-owned"
    assert ko["ok"] and ko["text_size"] > 0


def test_no_input_layout_without_feature_names(exported):
    src, hdr = exported[1], (exported[2] / "model.h").read_text()
    assert src.features is None  # synthetic sources: no names, so no layout (the module's default)
    assert "IN_LAYOUT_HASH" not in hdr and "in_column" not in hdr


def test_fpu_scan_finds_sse_and_x87():
    dis = (
        "  10:\tmov    %rdi,%rax\n  13:\tcvtsi2sd %rax,%xmm0\n  18:\tfldl   (%rsp)\n"
        "  1b:\tvpaddd %ymm1,%ymm2,%ymm3\n  20:\timul   %rcx,%rax\n"
    )
    found = cbuild.fpu_instructions(dis)
    assert any("cvt" in f for f in found) and any("fld" in f for f in found) and any("ymm" in f for f in found)
    assert not cbuild.fpu_instructions("  0:\timul   %rcx,%rax\n  4:\tsar    $0xf,%rax\n")


def test_blob_matches_header_and_is_validated(exported, tmp_path):
    name, _, out, rep = exported
    data = (out / "model.blob").read_bytes()
    header, image = blob_format.split(data)
    assert header.arch_hash == rep["arch_hash"] and header.params_size == len(image)
    assert header.n_in == rep["n_in"] and header.n_out == rep["n_out"] and header.window == rep["window"]
    assert header.crc32 == zlib.crc32(image)
    with pytest.raises(blob_format.BlobError, match="header size 40"):
        blob_format.split(data[:6] + (40).to_bytes(2, "little") + data[8:])
    exe = cbuild.build_harness(out, tmp_path)
    info = subprocess.run([str(exe), "info"], capture_output=True, text=True)
    assert info.returncode == 0 and f"params_size {len(image)}" in info.stdout, "python layout == sizeof"
    bad = bytearray(data)
    bad[-1] ^= 1
    (tmp_path / "bad.blob").write_bytes(bytes(bad))
    run = subprocess.run(
        [str(exe), "run", str(out / "vectors_selftest.bin"), str(tmp_path / "o.bin"), str(tmp_path / "bad.blob")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 3 and "does not match" in run.stderr


@pytest.mark.parametrize("exported", ["tcn"], indirect=True)  # one architecture is enough
def test_reexport_with_pinned_scales_reloads_into_old_build(exported, tmp_path):
    """A retrained model exported with `like=` gets the same arch hash; its blob runs in a
    harness compiled against the OLD header and reproduces the new model's outputs."""
    name, _, out_a, rep_a = exported
    kw = dict(MODELS[name])
    src_b = trained_source(kw.pop("kind"), seed=7, **kw)
    out_b = tmp_path / "b"
    rep_b = pipeline.run(src_b, out_b, like=out_a, n_vectors=2000, verify=False)
    assert rep_b["arch_hash"] == rep_a["arch_hash"] and rep_b["like"]["arch_hash_matches"]
    exe_a = cbuild.build_harness(out_a, tmp_path / "build_a")
    subprocess.run(
        [str(exe_a), "run", str(out_b / "vectors.bin"), str(tmp_path / "o.bin"), str(out_b / "model.blob")], check=True
    )
    got = np.fromfile(tmp_path / "o.bin", "<i4")
    assert np.array_equal(got, np.fromfile(out_b / "vectors_expected.bin", "<i4"))
    assert (out_b / "vectors_selftest.bin").read_bytes() == (out_a / "vectors_selftest.bin").read_bytes()
    kw["width"] = 6
    with pytest.raises(ExportError, match="architecture differs"):
        pipeline.run(trained_source("tcn", steps=10, **kw), tmp_path / "c", like=out_a, n_vectors=500, verify=False)


def _conf_model(kind: str) -> dict:
    """Size keys of conf/model/<kind>.yaml, the default exported sizes."""
    import yaml

    cfg = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf" / "model" / f"{kind}.yaml").read_text())
    return {k: v for k, v in cfg.items() if k in ("width", "depth", "kernel_size")}


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind,kw",
    [
        ("mlp", {"window": 1, **_conf_model("mlp")}),
        ("tcn", {"window": 16, **_conf_model("tcn")}),
        ("lstm", {"window": 16, **_conf_model("lstm")}),
    ],
)
def test_default_config_sizes(kind, kw, tmp_path):
    """conf/model defaults (migration shapes: 13 inputs) through the whole pipeline."""
    require(cbuild.have_gcc(), "gcc, objdump and nm")
    src = trained_source(kind, n_features=13, **kw)
    rep = pipeline.run(src, tmp_path, n_vectors=200_000)
    assert rep["c_bit_exact"]["total"]["mismatches"] == 0 and rep["kernel_object"]["ok"]
    assert rep["float_vs_int"]["test_unseen"]["window"]["decision_agreement"] >= 0.99
