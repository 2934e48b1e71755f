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
  report.json / .md       summary: parity, float vs int, streaming, C bit-exactness, kernel-safe,
                          whether the kernel module can serve it, bytes per task, ns per C step
                          (a candidate scorer: its C decisions and ns per decision of 8 and 32)
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
import torch

from data.dataset.candidates import INDICATORS
from data.dataset.forced_future import DT_PREV, HAS_PREV
from export import blob, cbuild, codegen_c, encode, evaluate, parity, report, vectors
from export.intref import IntRef, Stream
from export.onnx_graph import lower
from export.quantize import QModel, calibrate, quantize
from export.source import Source, Split
from models.config import KERNEL_INPUTS
from models.cost import PER_STEP, macs_per_decision, per_decision
from models.onnx import ExportError, export_onnx
from plumbing.atomic import recover, staging_path, swap_dir_in

N_SELFTEST = 2048
PARITY_WINDOWS = 1000
INTERLEAVED_TASKS = 1024  # task states the interleaved timing steps in random order
CONTRACT_TASK = "can_migrate"  # the task whose inputs the module's fair.c hook computes
DECISION_SIZES = (8, 32)  # runnable sets a candidate scorer's decision is timed on (issue 21 item 5)
# Inputs the caller derives from per-task history it keeps itself: column -> (C field, bytes, what)
PREV_CALL = (
    "u64 prev_call_ns",
    8,
    "the time of the task's previous can_migrate call (0: none); dt_prev_call_ns = now - prev_call_ns, "
    "has_prev_call = prev_call_ns != 0",
)
CALLER_STATE = {DT_PREV: PREV_CALL, HAS_PREV: PREV_CALL}
STATE_CTYPES = {**blob.CTYPES, "u32": np.uint32}


def log(msg: str) -> None:
    print(f"[export] {msg}", flush=True)


def decision_macs(src: Source) -> int:
    """MACs per decision (window W) of the float model: what evaluate.py reports for it
    (models.cost), beside the integer model's MACs per step (QModel.macs)."""
    x = torch.as_tensor(src.calib.x[:1], dtype=torch.float32)
    tok = None if src.calib.tok is None else torch.as_tensor(src.calib.tok[:1], dtype=torch.long)
    return macs_per_decision(src.net, x, tok)


def summary_line(result: dict, out: Path) -> str:
    """The export's last line: what it wrote, both MAC counts, the C check and the overflows
    with the largest float-vs-int logit difference per split, and the setting that helps when
    any split overflows (report.md has the detail)."""
    checks = result.get("c_bit_exact") or {}
    mismatches = checks.get("total", {}).get("mismatches") if isinstance(checks, dict) else None
    kernel_ok = (result.get("kernel_object") or {}).get("ok")
    overflows = result.get("overflow_totals") or {}
    diffs = {
        name: max((mode.get("max_abs_logit_diff", 0.0) for mode in r.values() if isinstance(mode, dict)), default=0.0)
        for name, r in (result.get("float_vs_int") or {}).items()
    }
    per_split = "; ".join(
        f"{name}: {overflows.get(name, 0)} overflows"
        + (f", max logit difference {diffs[name]:.4g}" if name in diffs else "")
        for name in dict.fromkeys([*overflows, *diffs])
    )
    line = (
        f"wrote {out}: arch 0x{result['arch_hash']:08x}, {result['macs']:,} {PER_STEP} "
        f"({result['macs_per_decision']:,} {per_decision(result['window'])}), "
        f"C mismatches {'not checked' if mismatches is None else mismatches}, kernel-safe object "
        f"{'not checked' if kernel_ok is None else kernel_ok}; {per_split or 'no split evaluated'}"
    )
    task = result.get("per_task_state") or {}
    if task.get("window_by") == "task" or task.get("caller_bytes"):
        line += (
            f"; per task {task['bytes_per_task']} B (history {task['history_bytes']} + caller {task['caller_bytes']})"
        )
    ns = result.get("step_ns") or {}
    if ns:
        line += (
            f"; step p50 {ns['one_task']['p50_ns']:.1f} ns (one task), {ns['interleaved']['p50_ns']:.1f} ns "
            f"({ns['interleaved']['tasks']} tasks interleaved)"
        )
    dec = result.get("decision_ns") or {}
    if dec:
        line += "; decision p50 " + ", ".join(
            f"{d['p50_ns'] / 1000:.1f} us ({d['candidates']} candidates)" for d in dec.values() if isinstance(d, dict)
        )
    km = result.get("kernel_module") or {}
    if km and not km.get("ok"):
        line += f"; NOT for the kernel module: {km['reasons'][0]}"
    if any(overflows.values()):
        bits = result.get("headroom_bits", 0)
        line += (
            f"; OVERFLOWS: export again with more headroom, e.g. headroom={bits + 1} (now {bits} bit(s) above "
            f"the calibrated ranges; conf/export.yaml)"
        )
    return line


def streaming_length(qmodel: QModel) -> int:
    """>= 10x the receptive field (10x the window where it is unbounded), at least 256 steps."""
    receptive = qmodel.graph.receptive_field()
    return max(256, 10 * (receptive if receptive is not None else qmodel.graph.window))


def data_rows(split: Split | None, n_streams: int, steps: int) -> tuple[np.ndarray, np.ndarray | None] | None:
    """Consecutive steps of a split cut into (n_streams, steps) sequences (None if too short)."""
    if split is None or split.rows_x is None or len(split.rows_x) < n_streams * steps:
        return None
    n = n_streams * steps
    x = split.rows_x[:n].reshape(n_streams, steps, -1)
    tok = None if split.rows_tok is None else split.rows_tok[:n].reshape(n_streams, steps)
    return x, tok


def stream_sets(qmodel: QModel, src: Source, n_vectors: int, rng: np.random.Generator) -> list[vectors.StreamSet]:
    """Held-out windows, long data / random sequences (streaming), random and extreme inputs."""
    sets = []
    held = src.evals[0] if src.evals else src.calib
    n_win = min(len(held), max(1, (2 * n_vectors // 5) // qmodel.graph.window))
    held_windows = held.take(n_win, rng)
    sets.append(vectors.held_out(qmodel, held_windows.x, held_windows.tok if qmodel.graph.tokens else None))
    t_long = streaming_length(qmodel)
    rows = data_rows(held, 4, t_long)
    if rows is not None:
        sets.append(vectors.held_out(qmodel, rows[0], rows[1] if qmodel.graph.tokens else None, "streaming_data"))
    rnd = vectors.random_streams(qmodel, 4, t_long, rng)
    rnd.name = "streaming_random"
    sets.append(rnd)
    sets.append(vectors.extreme_streams(qmodel, max(64, 2 * qmodel.graph.window), rng))
    have = sum(vset.steps for vset in sets)
    steps = max(64, 4 * qmodel.graph.window)
    sets.insert(1, vectors.random_streams(qmodel, max(1, -(-(n_vectors - have) // steps)), steps, rng))
    ref = IntRef(qmodel)
    for vset in sets:
        vectors.expected(qmodel, vset, ref)
    return sets


def selftest_inputs(qmodel: QModel, src: Source, rng: np.random.Generator, like: Path | None) -> np.ndarray:
    """(N, n_in) inputs of the one self-test stream: data steps, then random, then extremes."""
    if like is not None and (like / "vectors_selftest.bin").exists():
        return vectors.read_vectors(like / "vectors_selftest.bin").reshape(-1, qmodel.n_in)
    held = src.evals[0] if src.evals else src.calib
    parts = []
    rows = data_rows(held, 1, 3 * N_SELFTEST // 4)
    if rows is not None:
        parts.append(vectors.held_out(qmodel, rows[0], rows[1] if qmodel.graph.tokens else None).inputs[0])
    n_rest = N_SELFTEST - sum(len(p) for p in parts)
    parts.append(vectors.random_streams(qmodel, 1, n_rest - n_rest // 4, rng).inputs[0])
    parts.append(vectors.extreme_streams(qmodel, n_rest // 4, rng).inputs[-1])
    return np.concatenate(parts)


def streaming_check(qmodel: QModel, sets: list[vectors.StreamSet]) -> dict:
    """Python full-sequence evaluation vs Python streaming over the long sequences, and whether
    streaming equals evaluating the training window ending at each step (the float model's view)."""
    res = {"sequence_steps": streaming_length(qmodel), "receptive_field": qmodel.graph.receptive_field()}
    n_num, window = qmodel.graph.n_num, qmodel.graph.window
    for vset in sets:
        if not vset.name.startswith("streaming"):
            continue
        x, tok = vset.inputs[..., :n_num], (vset.inputs[..., n_num] if qmodel.graph.tokens else None)
        full = IntRef(qmodel).outputs_full(x, tok)
        ok = np.array_equal(full, vset.expected)
        steps = np.arange(window - 1, x.shape[1], max(1, x.shape[1] // 64))
        win = np.stack(
            [
                IntRef(qmodel).outputs_full(
                    x[:, t - window + 1 : t + 1], None if tok is None else tok[:, t - window + 1 : t + 1]
                )[:, -1]
                for t in steps
            ],
            axis=1,
        )
        receptive = qmodel.graph.receptive_field()
        settled = steps >= (receptive - 1 if receptive is not None else 0)
        res[vset.name] = {
            "streams": int(x.shape[0]),
            "steps": int(x.shape[1]),
            "full_equals_stream": bool(ok),
            "mismatching_outputs": int(np.any(full != vset.expected, axis=-1).sum()),
            "stream_equals_window_after_rf": bool(np.array_equal(win[:, settled], vset.expected[:, steps[settled]]))
            if receptive is not None
            else None,
        }
    return res


def input_columns(src: Source) -> list[str]:
    return [s["column"] for s in (src.features or {}).get("specs", [])]


def caller_state(src: Source) -> list[dict]:
    """What the caller keeps per task to compute the model's per-task inputs (CALLER_STATE)."""
    fields: dict[str, dict] = {}
    for col in input_columns(src):
        if col in CALLER_STATE:
            field, size, what = CALLER_STATE[col]
            entry = fields.setdefault(field, {"field": field, "bytes": size, "what": what, "columns": []})
            entry["columns"].append(col)
    return list(fields.values())


def per_task_state(qmodel: QModel, src: Source, prefix: str, struct_bytes: int | None) -> dict:
    """Bytes a caller keeps per task: the streaming state's history (the fields of struct
    <p>_state that carry over between steps; the rest is per-step scratch, which one copy per
    CPU serves) and its own per-task inputs (caller_state); beside them sizeof(struct <p>_state)
    as gcc lays it out, which a caller keeping the whole struct per task pays instead."""
    history, scratch = [], 0
    for ctype, name, dims, comment in codegen_c._Gen(qmodel, prefix).state_fields():
        size = int(np.prod(dims, dtype=np.int64)) * np.dtype(STATE_CTYPES[ctype]).itemsize
        if comment == "scratch":
            scratch += size
        else:
            history.append({"field": f"{ctype} {name}{''.join(f'[{d}]' for d in dims)}", "bytes": size})
    caller = caller_state(src)
    history_bytes = sum(h["bytes"] for h in history)
    caller_bytes = sum(c["bytes"] for c in caller)
    return {
        "window_by": src.window_by or "cpu",
        "history_bytes": history_bytes,
        "history": [h["field"] for h in history],
        "scratch_bytes": scratch,
        "state_struct_bytes": struct_bytes,
        "caller_bytes": caller_bytes,
        "caller": caller,
        "bytes_per_task": history_bytes + caller_bytes,
        "bytes_per_task_whole_struct": None if struct_bytes is None else struct_bytes + caller_bytes,
        # streaming carries history past the training window (an LSTM forever, a TCN over its
        # receptive field): float_vs_int's "stream" rows say what that changes. The trained model
        # exactly: keep the task's last `window` inputs (s16, and a u32 slot) and run the window
        # from reset on each call, at macs_per_decision
        "window_replay_bytes_per_task": (
            4 + qmodel.graph.window * qmodel.graph.n_num * 2 + caller_bytes if qmodel.graph.window > 1 else None
        ),
    }


def caller_encoded(src: Source) -> list[str]:
    """Inputs of a candidate scorer, which no <p>_encode computes, each as "name: why"."""
    if src.max_candidates is None:
        return []
    names = src.input_names or []
    n_steps = names.index(INDICATORS[0]) if INDICATORS[0] in names else 0
    why = {
        "step": "a switch feature of the CPU's window (next_task's), standardised",
        "indicator": "the candidate was switched in / out at this step (data/dataset/candidates.py)",
        "candidate": "the candidate's own, over the runnable set (candidate_specs), broadcast over the steps",
    }
    return [
        f"{n}: {why['step' if i < n_steps else 'indicator' if n in INDICATORS else 'candidate']}"
        for i, n in enumerate(names)
    ]


def input_encoding(src: Source, prefix: str, missing: list[str]) -> dict | None:
    """Who turns the kernel's values into in[]: <p>_encode, or the caller (`missing`: why)."""
    if src.features is None and not missing:
        return None
    if not missing:
        return {"encoded_by": f"{prefix}_encode", "pre_encoded": []}
    return {
        "encoded_by": "caller",
        "pre_encoded": missing,
        "note": f"model.h has no {prefix}_encode: {prefix}_step() takes every input already standardised, "
        f"in fixed point at {prefix.upper()}_IN_FRAC_BITS, because the inputs listed have no exact integer encoder",
    }


def kernel_module(src: Source, per_task: dict, missing: list[str]) -> dict:
    """Can kernel/schedlearn.c serve this export at its fair.c hook? Its input encoder is fixed
    (Chen's 15 can_migrate features, cm_features.h) and its streaming state is one per CPU."""
    reasons = []
    if src.max_candidates is not None:
        reasons.append(
            f"task {src.task} scores every runnable task at a context switch (the decision is the argmax "
            "over the set, each candidate's window from reset); the module's hook is can_migrate's, one "
            "migration decision per call"
        )
    if src.task == CONTRACT_TASK and (src.inputs or KERNEL_INPUTS) != KERNEL_INPUTS:
        reasons.append(
            f"trained on data.inputs={src.inputs}; the module computes Chen's 15 inputs only (data.inputs={KERNEL_INPUTS})"
        )
    if per_task["caller"]:
        cols = ", ".join(c for f in per_task["caller"] for c in f["columns"])
        reasons.append(f"inputs {cols} need per-task history (label {src.label}), which the module does not keep")
    if src.window_by == "task" and per_task["history_bytes"]:
        reasons.append(
            f"windows by task: the model's {per_task['history_bytes']} B of history belong to a task, "
            "the module keeps one state per CPU"
        )
    if missing:
        reasons.append(f"no integer encoder for {len(missing)} input(s) ({missing[0].split(':')[0]}, ...)")
    return {"ok": not reasons, "reasons": reasons}


def c_checks(
    out: Path,
    qmodel: QModel,
    sets: list[vectors.StreamSet],
    prefix: str,
    enc_raw: np.ndarray | None,
    time_calls: int = 0,
    windows: vectors.StreamSet | None = None,
) -> dict:
    """gcc: harness bit-exactness (default params and the blob), self-test, encoder, kernel-safe
    object, sizeof(struct <p>_state), and with time_calls the ns per step of the kernel-flag object
    with one task's state and with INTERLEAVED_TASKS states. `windows` (a candidate scorer's
    held-out windows, expected outputs filled in): the harness's decisions of DECISION_SIZES
    candidates against the integer reference's argmax, and with time_calls ns per decision."""
    if not cbuild.have_gcc():
        return {"skipped": "gcc/objdump/nm not found"}
    with tempfile.TemporaryDirectory(prefix="slm-export-") as tmp:
        tmp = Path(tmp)
        exe = cbuild.build_harness(out, tmp, prefix)
        res = {
            "bit_exact": cbuild.compare(exe, sets, tmp, qmodel.graph.n_out),
            "bit_exact_blob": cbuild.compare(exe, sets, tmp, qmodel.graph.n_out, out / "model.blob")["total"],
            "state_struct_bytes": cbuild.state_size(exe),
        }
        run = subprocess.run([str(exe), "selftest"], capture_output=True, text=True)
        res["selftest"] = {"ok": run.returncode == 0, "output": (run.stdout + run.stderr).strip()}
        if enc_raw is not None:
            got = cbuild.run_encode(exe, enc_raw, tmp)
            want = encode.encode_ref(qmodel.encoder, enc_raw, bool(qmodel.graph.tokens))
            res["encode"] = {"rows": int(len(enc_raw)), "mismatches": int(np.any(got != want, axis=1).sum())}
        res["kernel_object"] = cbuild.kernel_object(out, tmp, prefix)
        res["kernel_object"].pop("object")
        if windows is not None:
            win = tmp / "windows.bin"
            vectors.write_vectors(win, [windows])
            res["decisions"] = {
                str(n): decision_check(cbuild.run_decisions(exe, win, n, tmp), windows, n) for n in DECISION_SIZES
            }
        if time_calls:
            timer = cbuild.build_timer(out, tmp, prefix)
            vec = out / "vectors_selftest.bin"
            res["step_ns"] = {
                "one_task": cbuild.time_step(timer, vec, time_calls, 1),
                "interleaved": cbuild.time_step(timer, vec, time_calls, INTERLEAVED_TASKS),
                "load_average": round(os.getloadavg()[0], 2),
                "what": f"{prefix}_step() only (not {prefix}_encode), the object compiled with the kernel flags, "
                "through a non-inline call; the interleaved figure keeps a whole struct "
                f"{prefix}_state per task and steps a task drawn at random each call",
            }
            if windows is not None:
                steps = windows.inputs.shape[1]
                calls = (
                    f"{steps - 1} {prefix}_push() and one {prefix}_step()"
                    if codegen_c._Gen(qmodel, prefix).push_ops() is not None
                    else f"{steps} {prefix}_step()"
                )
                res["decision_ns"] = {
                    str(n): cbuild.time_decision(timer, win, max(100, time_calls // (n * steps)), n)
                    for n in DECISION_SIZES
                } | {
                    "load_average": round(os.getloadavg()[0], 2),
                    "what": f"one decision: each of N candidates' windows ({calls} from {prefix}_reset(), the "
                    "kernel-flag object through non-inline calls), then the argmax; held-out candidate "
                    "windows, N at a time; each decision timed alone. The streaming "
                    "form (one step per event) does not serve a scorer: a candidate's indicator and "
                    "candidate channels differ from another's at every step of the window",
                }
    return res


def decision_check(got: np.ndarray, windows: vectors.StreamSet, n: int) -> dict:
    """The harness's (argmax, score) per decision of `n` consecutive windows vs the integer
    reference's last-step scores (first maximum on a tie)."""
    scores = windows.expected[: len(got) * n, -1, 0].reshape(len(got), n)
    want = np.stack([scores.argmax(1), scores.max(1)], axis=1)
    return {"decisions": int(len(got)), "mismatches": int(np.any(got != want, axis=1).sum())}


def run(
    src: Source,
    out: Path,
    prefix: str = "slm",
    like: Path | None = None,
    n_vectors: int = 100_000,
    headroom: int = 1,
    verify: bool = True,
    seed: int = 0,
    time_calls: int = 0,
) -> dict:
    """Export `src` into `out` (replacing it only once the new folder is complete); returns the
    report (also written as report.json). time_calls > 0 times the C step (c_checks)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    recover(out.parent, out.name)  # what a killed export left: its old folder back, staging removed
    stage = staging_path(out, "tmp")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        result = _run(src, stage, out, prefix, like, n_vectors, headroom, verify, seed, time_calls)
        swap_dir_in(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return result


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
    time_calls: int = 0,
) -> dict:
    rng = np.random.default_rng(seed)
    log(f"exporting {src.describe or type(src.net).__name__} -> {final}")
    model = export_onnx(src.net, src.window, src.n_num, src.vocab)
    report.write_atomic(out / "model.onnx", model.SerializeToString())
    ir = lower(model)
    log(f"ONNX {len(model.graph.node)} nodes -> IR: {', '.join(f'{o.kind} {o.out}' for o in ir.ops)}")

    par_split = (src.evals[0] if src.evals else src.calib).take(PARITY_WINDOWS, rng)
    parity_result = parity.check(model, ir, src.net, par_split.x, par_split.tok, src.unknown_token)
    report.write_json(out / "parity.json", parity_result)
    report.write_atomic(out / "parity.md", report.parity_md(parity_result))
    log(f"parity: {parity_result}")

    ranges = calibrate(ir, src.calib.batches())
    pinned = json.loads((like / "scales.json").read_text()) if like else None
    qmodel = quantize(ir, ranges, pinned, headroom)
    contract = src.task == CONTRACT_TASK
    missing = encode.unencodable(src.features, contract) if src.features is not None else caller_encoded(src)
    if src.features is not None and not missing:  # else the caller passes in[] already encoded
        qmodel.encoder = encode.make_encoder(src.features, qmodel.in_frac, src.n_num, contract)
    if like is not None:
        prev = json.loads((like / "report.json").read_text())["arch_hash"]
        if prev != blob.arch_hash(qmodel):
            raise ExportError(
                f"architecture differs from {like}: arch hash 0x{blob.arch_hash(qmodel):08x} != 0x{prev:08x}"
            )
    report.write_json(out / "scales.json", qmodel.scales())
    ref = IntRef(qmodel)
    for x, tok in src.calib.batches():
        ref.outputs_full(qmodel.quantize_input(x), tok)
    overflow = {src.calib.name: report.overflow_counts(ref)}
    float_vs_int = {}
    for split in src.evals:
        float_vs_int[split.name] = evaluate.compare(qmodel, src, split)
        overflow[split.name] = float_vs_int[split.name].pop("saturation")
        log(f"float vs int on {split.name}: {json.dumps(float_vs_int[split.name])}")
    cal = report.calibration(qmodel, len(src.calib), overflow, headroom)
    report.write_json(out / "calibration.json", cal)
    report.write_atomic(out / "calibration.md", report.calibration_md(cal))

    sets = stream_sets(qmodel, src, n_vectors, rng)
    sel_in = selftest_inputs(qmodel, src, rng, like)
    n_num = qmodel.graph.n_num
    sel_out = Stream(IntRef(qmodel), 1).run(
        sel_in[None, :, :n_num], sel_in[None, :, n_num] if qmodel.graph.tokens else None
    )[0]
    report.write_atomic(out / "model.h", codegen_c.model_header(qmodel, prefix))
    report.write_atomic(out / "model_vectors.h", codegen_c.vectors_header(qmodel, sel_in, sel_out, prefix))
    report.write_atomic(out / "model.blob", blob.make_blob(qmodel))
    vectors.write_vectors(out / "vectors.bin", sets)
    report.write_atomic(out / "vectors_expected.bin", vectors.expected_outputs(sets).astype("<i4").tobytes())
    vectors.write_vectors(out / "vectors_selftest.bin", [vectors.StreamSet("selftest", sel_in[None])])

    result = {
        "source": src.describe,
        "trained_on": src.trained_on,
        "prefix": prefix,
        "arch_hash": blob.arch_hash(qmodel),
        "macs": qmodel.macs(),
        "macs_per_decision": decision_macs(src),
        "n_in": qmodel.n_in,
        "n_out": qmodel.graph.n_out,
        "window": qmodel.graph.window,
        "in_frac": qmodel.in_frac,
        "out_frac": qmodel.out_frac,
        "receptive_field": qmodel.graph.receptive_field(),
        "ops": [f"{o.kind} {o.out} ({o.src})" for o in qmodel.ops],
        "parity": parity_result,
        "float_vs_int": float_vs_int,
        "overflow_totals": cal["overflow_totals"],
        "headroom_bits": headroom,
        "weight_saturation": qmodel.weight_saturation,
        "vectors": {vset.name: vset.steps for vset in sets} | {"total": sum(vset.steps for vset in sets)},
        "selftest_vectors": int(len(sel_in)),
        "selftest_out_crc32": int(zlib.crc32(sel_out.astype("<i4").tobytes())),
        "streaming": streaming_check(qmodel, sets),
        "inputs": input_encoding(src, prefix, missing),
        "per_task_state": per_task_state(qmodel, src, prefix, None),
    }
    result["kernel_module"] = kernel_module(src, result["per_task_state"], missing)
    if like is not None:
        result["like"] = {"dir": str(like), "arch_hash_matches": True}
    enc_raw = None
    if qmodel.encoder is not None:
        enc_raw, result["encoder"] = encode.check(qmodel.encoder, src.features, qmodel.in_frac, rng, src.vocab)
        result["encoder"]["inputs"] = [
            f"{n}: {k}" for n, k in zip(qmodel.encoder.names, qmodel.encoder.kinds, strict=False)
        ]
    if verify:
        # held-out candidate windows (a random sample, so N consecutive ones make a made-up set)
        windows = next(v for v in sets if v.name == "held_out") if src.max_candidates is not None else None
        checks = c_checks(out, qmodel, sets, prefix, enc_raw, time_calls, windows)
        if "state_struct_bytes" in checks:
            result["per_task_state"] = per_task_state(qmodel, src, prefix, checks["state_struct_bytes"])
        for key, name in (("step_ns", "step_ns"), ("decisions", "c_decisions"), ("decision_ns", "decision_ns")):
            if key in checks:
                result[name] = checks[key]
        result.update(
            {
                "c_bit_exact": checks.get("bit_exact", checks),
                "c_bit_exact_blob": checks.get("bit_exact_blob"),
                "selftest": checks.get("selftest"),
                "kernel_object": checks.get("kernel_object"),
            }
        )
        if "encode" in checks:
            result["encoder"]["c_bit_exact"] = checks["encode"]
        log(
            f"C: {json.dumps(checks.get('bit_exact', checks).get('total', checks))}, kernel object ok: "
            f"{(checks.get('kernel_object') or {}).get('ok')}"
        )
    report.write_json(out / "report.json", result)
    report.write_atomic(out / "report.md", report.summary_md(result))
    return result
