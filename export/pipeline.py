"""The export pipeline: Source -> ONNX -> IR -> calibration -> integer model -> C, with checks.

The whole folder is atomic: everything is written into `.OUT.tmp-PID` beside `out`, which is
renamed into place (plumbing.atomic.swap_dir_in) only once complete; on any error or Ctrl-C the
half-built folder is removed and `out` is as it was. Outputs:
  model.onnx              the exported graph (static shapes, functions inlined)
  parity.json / .md       torch vs onnxruntime vs lowered IR
  calibration.json / .md  per-tensor ranges, fracs, overflow counts per split
  model.h                 generated C
  model_vectors.h         one self-test stream for the kernel module
  model.blob              header + struct <p>_params image
  vectors.bin             test vectors (harness format) and vectors_expected.bin (s32 outputs)
  vectors_selftest.bin    the model_vectors.h inputs (reused by `like=` exports)
  scales.json             every chosen frac (pin them with `like=` to keep the arch hash)
  report.json / .md       summary: parity, float vs int, streaming, C bit-exactness, kernel-safe
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np

from export import blob, cbuild, codegen_c, encode, evaluate, parity, report, vectors
from export.intref import IntRef, Stream
from export.onnx_graph import ExportError, export_onnx, lower
from export.quantize import QModel, calibrate, quantize
from export.source import Source, Split
from plumbing.atomic import swap_dir_in

N_SELFTEST = 2048
PARITY_WINDOWS = 1000


def log(msg: str) -> None:
    print(f"[export] {msg}", flush=True)


def streaming_length(q: QModel) -> int:
    """>= 10x the receptive field (10x the window where it is unbounded), at least 256 steps."""
    rf = q.graph.receptive_field()
    return max(256, 10 * (rf if rf is not None else q.graph.window))


def data_rows(split: Split | None, n_streams: int, steps: int) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Consecutive steps of a split cut into (n_streams, steps) sequences (None if too short)."""
    if split is None or split.rows_x is None or len(split.rows_x) < n_streams * steps:
        return None
    n = n_streams * steps
    x = split.rows_x[:n].reshape(n_streams, steps, -1)
    tok = None if split.rows_tok is None else split.rows_tok[:n].reshape(n_streams, steps)
    return x, tok


def stream_sets(q: QModel, src: Source, n_vectors: int, rng: np.random.Generator) -> list[vectors.StreamSet]:
    """Held-out windows, long data / random sequences (streaming), random and extreme inputs."""
    sets = []
    held = src.evals[0] if src.evals else src.calib
    n_win = min(len(held), max(1, (2 * n_vectors // 5) // q.graph.window))
    sub = held.take(n_win, rng)
    sets.append(vectors.held_out(q, sub.x, sub.tok if q.graph.tokens else None))
    t_long = streaming_length(q)
    rows = data_rows(held, 4, t_long)
    if rows is not None:
        sets.append(vectors.held_out(q, rows[0], rows[1] if q.graph.tokens else None, "streaming_data"))
    rnd = vectors.random_streams(q, 4, t_long, rng)
    rnd.name = "streaming_random"
    sets.append(rnd)
    sets.append(vectors.extreme_streams(q, max(64, 2 * q.graph.window), rng))
    have = sum(s.steps for s in sets)
    steps = max(64, 4 * q.graph.window)
    sets.insert(1, vectors.random_streams(q, max(1, -(-(n_vectors - have) // steps)), steps, rng))
    ref = IntRef(q)
    for s in sets:
        vectors.expected(q, s, ref)
    return sets


def selftest_inputs(q: QModel, src: Source, rng: np.random.Generator, like: Path | None) -> np.ndarray:
    """(N, n_in) inputs of the one self-test stream: data steps, then random, then extremes."""
    if like is not None and (like / "vectors_selftest.bin").exists():
        return vectors.read_vectors(like / "vectors_selftest.bin").reshape(-1, q.n_in)
    held = src.evals[0] if src.evals else src.calib
    parts = []
    rows = data_rows(held, 1, 3 * N_SELFTEST // 4)
    if rows is not None:
        parts.append(vectors.held_out(q, rows[0], rows[1] if q.graph.tokens else None).inputs[0])
    n_rest = N_SELFTEST - sum(len(p) for p in parts)
    parts.append(vectors.random_streams(q, 1, n_rest - n_rest // 4, rng).inputs[0])
    parts.append(vectors.extreme_streams(q, n_rest // 4, rng).inputs[-1])
    return np.concatenate(parts)


def streaming_check(q: QModel, sets: list[vectors.StreamSet]) -> dict:
    """Python full-sequence evaluation vs Python streaming over the long sequences, and whether
    streaming equals evaluating the training window ending at each step (the float model's view)."""
    res = {"sequence_steps": streaming_length(q), "receptive_field": q.graph.receptive_field()}
    n_num, L = q.graph.n_num, q.graph.window
    for s in sets:
        if not s.name.startswith("streaming"):
            continue
        x, tok = s.inputs[..., :n_num], (s.inputs[..., n_num] if q.graph.tokens else None)
        full = IntRef(q).outputs_full(x, tok)
        ok = np.array_equal(full, s.expected)
        steps = np.arange(L - 1, x.shape[1], max(1, x.shape[1] // 64))
        win = np.stack(
            [
                IntRef(q).outputs_full(x[:, t - L + 1 : t + 1], None if tok is None else tok[:, t - L + 1 : t + 1])[
                    :, -1
                ]
                for t in steps
            ],
            axis=1,
        )
        rf = q.graph.receptive_field()
        settled = steps >= (rf - 1 if rf is not None else 0)
        res[s.name] = {
            "streams": int(x.shape[0]),
            "steps": int(x.shape[1]),
            "full_equals_stream": bool(ok),
            "mismatching_outputs": int(np.any(full != s.expected, axis=-1).sum()),
            "stream_equals_window_after_rf": bool(np.array_equal(win[:, settled], s.expected[:, steps[settled]]))
            if rf is not None
            else None,
        }
    return res


def c_checks(out: Path, q: QModel, sets: list[vectors.StreamSet], prefix: str, enc_raw: np.ndarray | None) -> dict:
    """gcc: harness bit-exactness (default params and the blob), self-test, encoder, kernel-safe object."""
    if not cbuild.have_gcc():
        return {"skipped": "gcc/objdump/nm not found"}
    with tempfile.TemporaryDirectory(prefix="slm-export-") as tmp:
        tmp = Path(tmp)
        exe = cbuild.build_harness(out, tmp)
        res = {
            "bit_exact": cbuild.compare(exe, sets, tmp, q.graph.n_out),
            "bit_exact_blob": cbuild.compare(exe, sets, tmp, q.graph.n_out, out / "model.blob")["total"],
        }
        st = subprocess.run([str(exe), "selftest"], capture_output=True, text=True)
        res["selftest"] = {"ok": st.returncode == 0, "output": (st.stdout + st.stderr).strip()}
        if enc_raw is not None:
            got = cbuild.run_encode(exe, enc_raw, tmp)
            want = encode.encode_ref(q.encoder, enc_raw, bool(q.graph.tokens))
            res["encode"] = {"rows": int(len(enc_raw)), "mismatches": int(np.any(got != want, axis=1).sum())}
        res["kernel_object"] = cbuild.kernel_object(out, tmp, prefix)
        res["kernel_object"].pop("object")
    return res


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def remove_stale_staging(out: Path) -> None:
    """Drop `.OUT.tmp-PID` folders left by exports that were killed (their PID is gone)."""
    for p in out.parent.glob(f".{out.name}.tmp-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if p.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def run(
    src: Source,
    out: Path,
    prefix: str = "slm",
    like: Path | None = None,
    n_vectors: int = 100_000,
    headroom: int = 1,
    verify: bool = True,
    seed: int = 0,
) -> dict:
    """Export `src` into `out` (replacing it only once the new folder is complete); returns the
    report (also written as report.json)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(out)
    stage = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        rep = _run(src, stage, out, prefix, like, n_vectors, headroom, verify, seed)
        swap_dir_in(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return rep


def _run(
    src: Source,
    out: Path,
    final: Path,
    prefix: str,
    like: Path | None,
    n_vectors: int,
    headroom: int,
    verify: bool,
    seed: int,
) -> dict:
    rng = np.random.default_rng(seed)
    log(f"exporting {src.describe or type(src.net).__name__} -> {final}")
    model = export_onnx(src.net, src.window, src.n_num, src.vocab)
    report.write_atomic(out / "model.onnx", model.SerializeToString())
    g = lower(model)
    log(f"ONNX {len(model.graph.node)} nodes -> IR: {', '.join(f'{o.kind} {o.out}' for o in g.ops)}")

    par_split = (src.evals[0] if src.evals else src.calib).take(PARITY_WINDOWS, rng)
    par = parity.check(model, g, src.net, par_split.x, par_split.tok, src.unknown_token)
    report.write_json(out / "parity.json", par)
    report.write_atomic(out / "parity.md", report.parity_md(par))
    log(f"parity: {par}")

    ranges = calibrate(g, src.calib.batches())
    pinned = json.loads((like / "scales.json").read_text()) if like else None
    q = quantize(g, ranges, pinned, headroom)
    if src.features is not None:
        q.encoder = encode.make_encoder(src.features, q.in_frac, src.n_num)
    if like is not None:
        prev = json.loads((like / "report.json").read_text())["arch_hash"]
        if prev != blob.arch_hash(q):
            raise ExportError(f"architecture differs from {like}: arch hash 0x{blob.arch_hash(q):08x} != 0x{prev:08x}")
    report.write_json(out / "scales.json", q.scales())
    ref = IntRef(q)
    for x, tok in src.calib.batches():
        ref.outputs_full(q.quantize_input(x), tok)
    overflow = {src.calib.name: report.overflow_counts(ref)}
    fvi = {}
    for split in src.evals:
        fvi[split.name] = evaluate.compare(q, src, split)
        overflow[split.name] = fvi[split.name].pop("saturation")
        log(f"float vs int on {split.name}: {json.dumps(fvi[split.name])}")
    cal = report.calibration(q, len(src.calib), overflow, headroom)
    report.write_json(out / "calibration.json", cal)
    report.write_atomic(out / "calibration.md", report.calibration_md(cal))

    sets = stream_sets(q, src, n_vectors, rng)
    sel_in = selftest_inputs(q, src, rng, like)
    n_num = q.graph.n_num
    sel_out = Stream(IntRef(q), 1).run(sel_in[None, :, :n_num], sel_in[None, :, n_num] if q.graph.tokens else None)[0]
    report.write_atomic(out / "model.h", codegen_c.model_header(q, prefix))
    report.write_atomic(out / "model_vectors.h", codegen_c.vectors_header(q, sel_in, sel_out, prefix))
    report.write_atomic(out / "model.blob", blob.make_blob(q))
    vectors.write_vectors(out / "vectors.bin", sets)
    report.write_atomic(out / "vectors_expected.bin", vectors.expected_outputs(sets).astype("<i4").tobytes())
    vectors.write_vectors(out / "vectors_selftest.bin", [vectors.StreamSet("selftest", sel_in[None])])

    rep = {
        "source": src.describe,
        "prefix": prefix,
        "arch_hash": blob.arch_hash(q),
        "macs": q.macs(),
        "n_in": q.n_in,
        "n_out": q.graph.n_out,
        "window": q.graph.window,
        "in_frac": q.in_frac,
        "out_frac": q.out_frac,
        "receptive_field": q.graph.receptive_field(),
        "ops": [f"{o.kind} {o.out} ({o.src})" for o in q.ops],
        "parity": par,
        "float_vs_int": fvi,
        "overflow_totals": cal["overflow_totals"],
        "weight_saturation": q.weight_saturation,
        "vectors": {s.name: s.steps for s in sets} | {"total": sum(s.steps for s in sets)},
        "selftest_vectors": int(len(sel_in)),
        "selftest_out_crc32": int(zlib.crc32(sel_out.astype("<i4").tobytes())),
        "streaming": streaming_check(q, sets),
    }
    if like is not None:
        rep["like"] = {"dir": str(like), "arch_hash_matches": True}
    enc_raw = None
    if q.encoder is not None:
        enc_raw, rep["encoder"] = encode.check(q.encoder, src.features, q.in_frac, rng, src.vocab)
        rep["encoder"]["inputs"] = [f"{n}: {k}" for n, k in zip(q.encoder.names, q.encoder.kinds, strict=False)]
    if verify:
        c = c_checks(out, q, sets, prefix, enc_raw)
        rep.update(
            {
                "c_bit_exact": c.get("bit_exact", c),
                "c_bit_exact_blob": c.get("bit_exact_blob"),
                "selftest": c.get("selftest"),
                "kernel_object": c.get("kernel_object"),
            }
        )
        if "encode" in c:
            rep["encoder"]["c_bit_exact"] = c["encode"]
        log(
            f"C: {json.dumps(c.get('bit_exact', c).get('total', c))}, kernel object ok: "
            f"{(c.get('kernel_object') or {}).get('ok')}"
        )
    report.write_json(out / "report.json", rep)
    report.write_atomic(out / "report.md", report.summary_md(rep))
    return rep
