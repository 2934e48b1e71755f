"""Build scx_schedlearn (BPF object + libbpf skeleton + static loader) with Debian's 7.3 toolchain.

The toolchain (static libbpf, bpftool, vmlinux.h) and the sched_ext headers (tools/sched_ext/
include) come from plumbing.debian_kernel's cache. The static binary is cached under
data/_build/scx/, keyed by the sha256 of the sources, the flags, the toolchain's record and the
compilers' versions; a variant (`stall=True`: -DSL_STALL) is a separate key. `export=DIR` builds
the model mode (-DSL_MODEL): the export's model.h goes into the build as slm_model.h (its bytes
are part of the key), the weights come at load time from a blob (kernel/scx/model_blob.h).
`build_cost()` builds the native-cost programs (cost.bpf.c) and their static loader cost_run
the same way (kernel/scx/cost.py, `python -m kernel.scx cost`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from plumbing import debian_kernel
from plumbing.atomic import staged_dir

SRC = Path(__file__).resolve().parent
REPO = SRC.parent.parent
BCC = REPO / "data" / "collect" / "bcc"  # can_migrate.h, cm_features.h: the record and feature contract
EXPORT_SRC = REPO / "export"  # blob_format.h, blob_check.h
KERNEL_SRC = REPO / "kernel"  # slm_cm_input.h: model inputs -> can_migrate features
BUILD = REPO / "data" / "_build" / "scx"
SOURCES = (
    SRC / "scx_schedlearn.bpf.c",
    SRC / "scx_schedlearn.c",
    SRC / "scx_schedlearn.h",
    SRC / "rule.bpf.h",  # rule_verdict(), shared with the native-cost programs
    BCC / "can_migrate.h",
    BCC / "cm_features.h",
)
MODEL_SOURCES = (
    SRC / "model.bpf.h",
    SRC / "model_blob.h",
    EXPORT_SRC / "blob_format.h",
    EXPORT_SRC / "blob_check.h",
    KERNEL_SRC / "slm_cm_input.h",
)
# BPF ISA v4 (sign-extending loads, Linux >= 6.6, below sched_ext's >= 6.13): the model's s16
# weights load in one instruction instead of a load and two shifts (the native cost's figures)
BPF_CPU = "v4"
BPF_CFLAGS = [
    "-g",
    "-O2",
    f"-mcpu={BPF_CPU}",
    "-target",
    "bpf",
    "-D__TARGET_ARCH_x86",
    "-mlittle-endian",
    "-Wall",
    "-Wno-compare-distinct-pointer-types",
    "-Wno-microsoft-anon-tag",
    "-fms-extensions",
]
CFLAGS = ["-O2", "-Wall", "-static", "-pthread"]
LIBS = ["-lelf", "-lz", "-lpthread"]
NAME = "scx_schedlearn"


class ScxBuildError(RuntimeError):
    """One-line build problem."""


@dataclass(frozen=True)
class Built:
    exe: Path  # the static loader with the BPF object inside
    obj: Path  # the BPF object (for veristat-like inspection)
    key: str


def _version(cmd: list[str]) -> str:
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    return (r.stdout or r.stderr).splitlines()[0] if (r.stdout or r.stderr) else "unknown"


def _run(cmd: list[str], what: str, stdout=None) -> None:
    r = subprocess.run(["nice", "-n", "10", *cmd], stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode:
        err = r.stderr.decode(errors="replace").strip().splitlines()
        err = [ln for ln in err if "warning" not in ln]
        first = next((ln for ln in err if "error" in ln.lower()), err[0] if err else "no output")
        raise ScxBuildError(f"{what} failed: {first}")


def toolchain_problem() -> str | None:
    """Why the build cannot run here (None: it can): the cached 7.3 kernel and its toolchain."""
    k = debian_kernel.find_cached("7.3")
    if k is None:
        return f"Debian's 7.3 kernel is not cached (run: {debian_kernel.fetch_command('7.3')} --toolchain)"
    tc = debian_kernel.Toolchain(k.dir / "toolchain")
    if not all(p.is_file() for p in (tc.libbpf_a, tc.bpftool, tc.vmlinux_h)):
        return f"the BPF toolchain of {k.version} is not built (run: {debian_kernel.fetch_command('7.3')} --toolchain)"
    if not (k.dir / "source" / "linux-source-7.3" / "tools" / "sched_ext" / "include").is_dir():
        return f"linux-source-7.3 of {k.version} is not cached (run: {debian_kernel.fetch_command('7.3')} --source)"
    for exe in (debian_kernel.CLANG, "cc"):
        if shutil.which(exe) is None:
            return f"{exe} not found"
    return None


def ensure_toolchain(log=print) -> tuple[debian_kernel.DebianKernel, debian_kernel.Toolchain, Path]:
    """(kernel, toolchain, tools/sched_ext/include): fetched and built once when missing (network)."""
    k = debian_kernel.ensure("7.3", log=log)
    tc = debian_kernel.toolchain(k, log=log)
    tree = debian_kernel.source(k, log=log)
    return k, tc, tree / "tools" / "sched_ext" / "include"


def build(stall: bool = False, build_dir: Path = BUILD, log=print, export: Path | None = None) -> Built:
    """The static scx_schedlearn loader (cached; rebuilt when a source, flag or tool changes);
    export: an export folder whose MLP the model mode runs (kernel/scx/model.py checks it)."""
    return _build(
        NAME,
        NAME,
        NAME,
        SOURCES,
        ["-DSL_STALL"] if stall else [],
        BPF_CFLAGS,
        "-stall" if stall else "",
        export,
        build_dir,
        log,
    )


COST_SOURCES = (
    SRC / "cost.bpf.c",
    SRC / "cost_run.c",
    SRC / "cost.h",
    SRC / "rule.bpf.h",
    SRC / "scx_schedlearn.h",
    BCC / "cm_features.h",
)
COST_NAME = "scx_cost"


def build_cost(export: Path | None = None, build_dir: Path = BUILD, log=print, bpf_cpu: str = BPF_CPU) -> Built:
    """The native-cost programs (cost.bpf.c) and their static loader cost_run (cached like
    build()); export: also the model's program, built with the export's model.h as slm_model.h;
    bpf_cpu: clang's -mcpu (the scheduler's is BPF_CPU; the other only to see what it changes)."""
    if bpf_cpu not in ("v3", "v4"):
        raise ScxBuildError(f"bpf_cpu {bpf_cpu}: v3 or v4 (the scheduler's: {BPF_CPU})")
    bpf_cflags = [f"-mcpu={bpf_cpu}" if f.startswith("-mcpu=") else f for f in BPF_CFLAGS]
    variant = "" if bpf_cpu == BPF_CPU else f"-{bpf_cpu}"
    return _build("cost", "cost_run", COST_NAME, COST_SOURCES, [], bpf_cflags, variant, export, build_dir, log)


def _build(
    stem: str,
    loader: str,
    skel: str,
    sources: tuple[Path, ...],
    defines: list[str],
    bpf_cflags: list[str],
    variant: str,
    export: Path | None,
    build_dir: Path,
    log,
) -> Built:
    """SRC/<stem>.bpf.c -> <stem>.bpf.o and its skeleton <stem>.bpf.skel.h (struct <skel>), and
    SRC/<loader>.c linked statically with libbpf, in build_dir/<skel><variant>[-model]-<key>/."""
    model_h = None
    if export is not None:
        from kernel.scx.model import export_problem

        if why := export_problem(Path(export)):
            raise ScxBuildError(why)
        model_h = (Path(export) / "model.h").read_bytes()
    try:
        k, tc, scx_inc = ensure_toolchain(log)
    except debian_kernel.DebianKernelError as e:
        raise ScxBuildError(str(e)) from None
    defines = defines + (["-DSL_MODEL"] if model_h is not None else [])
    h = hashlib.sha256()
    for p in sources + (MODEL_SOURCES if model_h is not None else ()):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    if model_h is not None:
        h.update(b"slm_model.h\0" + model_h)
    h.update(" ".join(bpf_cflags + CFLAGS + LIBS + defines).encode())
    h.update((tc.dir / "toolchain.json").read_bytes() if (tc.dir / "toolchain.json").exists() else b"")
    h.update(_version([debian_kernel.CLANG, "--version"]).encode() + _version(["cc", "--version"]).encode())
    key = h.hexdigest()[:16]
    if model_h is not None:
        variant += "-model"
    out = build_dir / f"{skel}{variant}-{key}"
    built = Built(out / loader, out / f"{stem}.bpf.o", key)
    if built.exe.is_file():
        return built
    build_dir.mkdir(parents=True, exist_ok=True)
    with staged_dir(out) as part:
        obj0 = part / f"{stem}.bpf.unlinked.o"
        includes = [f"-I{d}" for d in (tc.dir, scx_inc, scx_inc / "bpf-compat", tc.libbpf_include, BCC, SRC)]
        loader_inc = []
        if model_h is not None:
            (part / "slm_model.h").write_bytes(model_h)
            # model.h includes <linux/types.h> under __KERNEL__; in BPF vmlinux.h has the types
            (part / "bpfstub" / "linux").mkdir(parents=True)
            (part / "bpfstub" / "linux" / "types.h").write_text("/* types: vmlinux.h */\n")
            includes += [f"-I{part}", f"-I{part / 'bpfstub'}"]
            loader_inc = [f"-I{EXPORT_SRC}", f"-I{KERNEL_SRC}"]
        sys_inc = ["-idirafter", "/usr/include/x86_64-linux-gnu", "-idirafter", "/usr/include"]
        _run(
            [debian_kernel.CLANG, *bpf_cflags, *defines, *includes, *sys_inc, "-c", str(SRC / f"{stem}.bpf.c")]
            + ["-o", str(obj0)],
            f"clang (BPF, {stem})",
        )
        _run([str(tc.bpftool), "gen", "object", str(part / f"{stem}.bpf.o"), str(obj0)], "bpftool gen object")
        obj0.unlink()
        with open(part / f"{stem}.bpf.skel.h", "wb") as fh:
            _run(
                [str(tc.bpftool), "gen", "skeleton", str(part / f"{stem}.bpf.o"), "name", skel],
                "bpftool gen skeleton",
                stdout=fh,
            )
        tmp = part / f"{loader}.tmp"
        _run(
            ["cc", *CFLAGS, *defines, f"-I{part}", f"-I{tc.libbpf_include}", f"-I{scx_inc}", f"-I{BCC}", f"-I{SRC}"]
            + loader_inc
            + [str(SRC / f"{loader}.c"), str(tc.libbpf_a), "-o", str(tmp), *LIBS],
            f"cc ({loader}, static)",
        )
        os.replace(tmp, part / loader)
    log(f"scx: built {built.exe} for {k.release}")
    return built


def main() -> int:
    b = build()
    print(b.exe)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
