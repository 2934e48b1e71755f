"""gcc builds around a generated model: the test harness, and the kernel-safe object check.

The kernel-safe check compiles model.h (plus a tiny non-inline wrapper so the static inline
code is emitted) with the kernel's no-FPU flags and inspects the object: no SSE/x87
instructions (objdump), no undefined symbols (nm -u), empty .data and .bss.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

from export.blob_format import C_HEADER as BLOB_HEADER
from export.vectors import StreamSet, expected_outputs, write_vectors

HARNESS_C = Path(__file__).with_name("harness") / "harness.c"
KERNEL_CFLAGS = [
    "-O2",
    "-mno-sse",
    "-mno-mmx",
    "-mno-80387",
    "-msoft-float",
    "-mno-red-zone",
    "-Wframe-larger-than=512",
    "-Werror",
    "-ffreestanding",
    "-fno-builtin",
    "-Wall",
    "-Wdeclaration-after-statement",
    "-std=gnu11",
]
FPU_INSN = re.compile(
    r"%[xyz]mm\d|%st\b|%st\(|\bf(ld|st|ild|istp?|add|mul|sub|div|xch|comi?p?|ucomi?p?)\w*\s|"
    r"\bcvt\w*|\b(v?movs[sd]|v?movap[sd]|v?movup[sd])\b"
)
WRAPPER = """#include "model.h"

void {p}_obj_step(const struct {p}_params *p, struct {p}_state *st, const s32 *in, s32 *out);
void {p}_obj_reset(struct {p}_state *st);
const struct {p}_params *{p}_obj_default(void);
unsigned long {p}_obj_state_size(void);
unsigned int {p}_obj_n_in(void);

void {p}_obj_step(const struct {p}_params *p, struct {p}_state *st, const s32 *in, s32 *out)
{{
	{p}_step(p, st, in, out);
}}

void {p}_obj_reset(struct {p}_state *st)
{{
	{p}_reset(st);
}}

const struct {p}_params *{p}_obj_default(void)
{{
	return &{p}_default_params;
}}

unsigned long {p}_obj_state_size(void)
{{
	return sizeof(struct {p}_state);
}}

unsigned int {p}_obj_n_in(void)
{{
	return {P}_N_IN;
}}

#ifdef {P}_HAVE_PUSH
void {p}_obj_push(const struct {p}_params *p, struct {p}_state *st, const s32 *in);

void {p}_obj_push(const struct {p}_params *p, struct {p}_state *st, const s32 *in)
{{
	{p}_push(p, st, in);
}}
#endif

#ifdef {P}_HAVE_ENCODE
void {p}_obj_encode(const struct {p}_params *p, const s64 *raw, s32 *in);

void {p}_obj_encode(const struct {p}_params *p, const s64 *raw, s32 *in)
{{
	{p}_encode(p, raw, in);
}}
#endif
"""


def have_gcc() -> bool:
    return all(shutil.which(t) for t in ("gcc", "objdump", "nm"))


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if res.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({res.returncode}):\n{res.stdout}{res.stderr}")
    return res


def _harness_cc(model_dir: Path, prefix: str) -> list[str]:
    """gcc and the flags that compile harness.c against model_dir's model.h."""
    header = (model_dir / "model.h").read_text()
    enc = [f"-D{have}" for have in ("HAVE_ENCODE", "HAVE_PUSH") if f"_{have} 1" in header]
    names = [f"-DPREFIX={prefix}", f"-DUPREFIX={prefix.upper()}"]
    includes = ["-I", str(model_dir), "-I", str(BLOB_HEADER.parent)]  # blob_format.h, blob_check.h
    return ["gcc", "-O2", "-std=gnu11", "-Wall", "-Werror", *enc, *names, *includes, str(HARNESS_C)]


def build_harness(model_dir: Path, build_dir: Path, prefix: str = "slm") -> Path:
    """Compile harness.c against model_dir/model.h and model_vectors.h (and blob_format.h, blob_check.h)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    exe = build_dir / "harness"
    _run([*_harness_cc(model_dir, prefix), "-o", str(exe)])
    return exe


def build_timer(model_dir: Path, build_dir: Path, prefix: str = "slm") -> Path:
    """harness.c with its `time` command, linked with build_dir/model_obj.o: run kernel_object()
    first, so the step timed is the one compiled with the kernel's flags."""
    exe = build_dir / "timer"
    _run([*_harness_cc(model_dir, prefix), "-DTIME_STEP", str(build_dir / "model_obj.o"), "-o", str(exe)])
    return exe


def _timed(cmd: list[str], cpu: int | None) -> dict:
    """The harness's "p50 p99 mean min" line of a timing command, pinned to `cpu` when given."""
    pin = [] if cpu is None else ["taskset", "-c", str(cpu)]
    p50, p99, mean, best = map(float, _run([*pin, *cmd]).stdout.split())
    return {"p50_ns": p50, "p99_ns": p99, "mean_ns": mean, "min_ns": best}


def time_step(exe: Path, vectors: Path, calls: int, tasks: int, cpu: int | None = None) -> dict:
    """ns per step call (p50, p99, mean, min over batches) with `tasks` interleaved task states;
    pinned to `cpu` when given (bench/bench_export_c.py)."""
    return {"tasks": tasks, "calls": calls, **_timed([str(exe), "time", str(vectors), str(calls), str(tasks)], cpu)}


def time_decision(exe: Path, windows: Path, decisions: int, candidates: int, cpu: int | None = None) -> dict:
    """ns per decision of a candidate scorer (p50, p99, mean, min over `decisions` timed one by
    one): `candidates` windows of `windows` (a vector file of equal-length streams), each from
    reset through the kernel-flag object, then the argmax; and the same per candidate."""
    res = _timed([str(exe), "time_decide", str(windows), str(decisions), str(candidates)], cpu)
    per = {k.replace("_ns", "_ns_per_candidate"): round(v / candidates, 2) for k, v in res.items()}
    return {"candidates": candidates, "decisions": decisions, **res, **per}


def run_decisions(exe: Path, windows: Path, candidates: int, work: Path) -> np.ndarray:
    """The harness's decisions over `windows` taken `candidates` at a time: (D, 2) int64 rows of
    (argmax slot, its score)."""
    out = work / "decisions_out.bin"
    _run([str(exe), "decide", str(windows), str(candidates), str(out)])
    return np.fromfile(out, "<i4").astype(np.int64).reshape(-1, 2)


def state_size(exe: Path) -> int:
    """sizeof(struct <p>_state) as gcc lays it out (the harness's `info`)."""
    return int(re.search(r"state_size (\d+)", _run([str(exe), "info"]).stdout).group(1))


def run_encode(exe: Path, raw: np.ndarray, work: Path) -> np.ndarray:
    """<p>_encode() of every row of raw (N, n_in) int64 through the harness."""
    src, out = work / "raw.bin", work / "raw_out.bin"
    src.write_bytes(np.array(raw.shape, "<u4").tobytes() + raw.astype("<i8").tobytes())
    _run([str(exe), "encode", str(src), str(out)])
    return np.fromfile(out, "<i4").astype(np.int64).reshape(raw.shape)


def run_vectors(exe: Path, sets: list[StreamSet], work: Path, n_out: int, blob: Path | None = None) -> np.ndarray:
    """Run every stream through the compiled harness; returns (total_steps, n_out) int64."""
    vec, out = work / "vectors.bin", work / "vectors_out.bin"
    write_vectors(vec, sets)
    _run([str(exe), "run", str(vec), str(out)] + ([str(blob)] if blob else []))
    return np.fromfile(out, "<i4").astype(np.int64).reshape(-1, n_out)


def compare(exe: Path, sets: list[StreamSet], work: Path, n_out: int, blob: Path | None = None) -> dict:
    """Bit-exact comparison of C against the Python integer reference, per stream set."""
    got = run_vectors(exe, sets, work, n_out, blob)
    want = expected_outputs(sets)
    res, off = {}, 0
    for s in sets:
        n = s.steps
        bad = np.any(got[off : off + n] != want[off : off + n], axis=1)
        res[s.name] = {"vectors": n, "mismatches": int(bad.sum())}
        off += n
    res["total"] = {"vectors": int(want.shape[0]), "mismatches": int(np.any(got != want, axis=1).sum())}
    return res


def fpu_instructions(disassembly: str) -> list[str]:
    """SSE / AVX / x87 mnemonics or registers in `objdump -d` output."""
    return sorted(
        {
            m.group(0).strip()
            for line in disassembly.splitlines()
            if "\t" in line
            for m in [FPU_INSN.search(line.split("\t", 1)[1])]
            if m
        }
    )


def kernel_object(model_dir: Path, build_dir: Path, prefix: str = "slm") -> dict:
    """Compile with the kernel flags and check instructions, undefined symbols and sections."""
    build_dir.mkdir(parents=True, exist_ok=True)
    src, obj = build_dir / "model_obj.c", build_dir / "model_obj.o"
    src.write_text(WRAPPER.format(p=prefix, P=prefix.upper()))
    _run(["gcc", "-c", *KERNEL_CFLAGS, "-I", str(model_dir), str(src), "-o", str(obj)])
    fpu = fpu_instructions(_run(["objdump", "-d", "--no-show-raw-insn", str(obj)]).stdout)
    undefined = _run(["nm", "-u", str(obj)]).stdout.split()
    sections = {}
    for line in _run(["objdump", "-h", str(obj)]).stdout.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[0].isdigit():
            sections[parts[1]] = int(parts[2], 16)
    return {
        "object": str(obj),
        "flags": KERNEL_CFLAGS,
        "fpu_instructions": fpu,
        "undefined_symbols": undefined,
        "data_size": sections.get(".data", 0),
        "bss_size": sections.get(".bss", 0),
        "text_size": sections.get(".text", 0),
        "rodata_size": sum(v for k, v in sections.items() if k.startswith(".rodata")),
        "ok": not fpu and not undefined and not sections.get(".data", 0) and not sections.get(".bss", 0),
    }
