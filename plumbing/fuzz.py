"""Build and run the libFuzzer targets of tests/fuzz/ (clang-19 with libclang-rt-19-dev).

    python -m plumbing.fuzz build TARGET        # the fuzzer and the plain driver, in tests/fuzz/_build/
    python -m plumbing.fuzz run TARGET [--seconds 30] [--jobs 1]
    python -m plumbing.fuzz regress TARGET      # corpus + regression inputs through the driver

Targets: blob (the module's blob check and load path, export/blob_check.h), parse (the
ftrace parser core, data/parse/_fastparse.c), replay (the replay core, data/dataset/_replay.c).
`run` fuzzes over a scratch copy of tests/fuzz/corpus/TARGET (new units never land in the
repository) plus tests/fuzz/regress/TARGET, and prints one line: seconds, total execs, execs/s,
edges (libFuzzer's final cov:) and crashes (their inputs are left in the build folder; once
fixed, copy them into tests/fuzz/regress/TARGET). The driver is the same harness with a main()
that feeds files (no libFuzzer: it builds with clang-19 or, without it, gcc), so regression
inputs run as ordinary tests. A file in the repository is never written here: builds go to a
temporary name and are renamed into place.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from plumbing.cli import ArgParser, fail

REPO = Path(__file__).resolve().parents[1]
FUZZ = REPO / "tests" / "fuzz"
BUILD = FUZZ / "_build"  # git-ignored
CLANG = "clang-19"
PROG = "python -m plumbing.fuzz"
MISSING_HINT = "apt-get install clang-19 libclang-rt-19-dev"

SANITIZE = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all")
COMMON = ("-g", "-O1", "-fno-omit-frame-pointer", "-std=gnu11", f"-I{FUZZ}")


@dataclass(frozen=True)
class Target:
    source: str  # under tests/fuzz/
    includes: tuple[str, ...] = ()  # repository folders
    defines: tuple[str, ...] = ()
    max_len: int = 8192  # libFuzzer -max_len: room beyond the seeds' sizes


TARGETS = {
    # -fwrapv: signed overflow wraps, as in the kernel (-fno-strict-overflow); a hostile blob's
    # weights overflow the s64 accumulators there by design, the outputs saturate.
    "blob": Target(
        "fuzz_blob.c",
        ("export", "tests/fuzz/blob_model"),  # blob_format.h, blob_check.h; the model
        ("-fwrapv", "-DSLM_FUZZ_FIX_CRC"),
        4096,
    ),
    "parse": Target("fuzz_parse.c"),
    "replay": Target("fuzz_replay.c"),
}


class FuzzError(Exception):
    """One line for the user."""


def missing() -> str | None:
    """Why libFuzzer targets cannot be built here, or None: clang-19 and its fuzzer runtime."""
    if shutil.which(CLANG) is None:
        return f"{CLANG} not found ({MISSING_HINT})"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "t.c"
        src.write_text("int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n")
        r = subprocess.run([CLANG, "-fsanitize=fuzzer", str(src), "-o", str(Path(tmp) / "t")], capture_output=True)
        if r.returncode != 0:
            return f"{CLANG} cannot link -fsanitize=fuzzer: libclang-rt-19-dev missing ({MISSING_HINT})"
    return None


def driver_compiler() -> str | None:
    """The driver needs only ASan/UBSan: clang-19, else gcc."""
    return next((c for c in (CLANG, "gcc") if shutil.which(c)), None)


def target(name: str) -> Target:
    if name not in TARGETS:
        raise FuzzError(f"unknown target {name!r} (one of {', '.join(TARGETS)})")
    return TARGETS[name]


def corpus(name: str) -> Path:
    return FUZZ / "corpus" / name


def regress_dir(name: str) -> Path:
    return FUZZ / "regress" / name


def inputs(name: str) -> list[Path]:
    """Every seed and regression input of a target (README files are not inputs)."""
    return sorted(
        p for d in (corpus(name), regress_dir(name)) for p in d.iterdir() if p.is_file() and p.name != "README.md"
    )


def _compile(name: str, fuzzer: bool) -> Path:
    t = target(name)
    if fuzzer:
        why = missing()
        if why:
            raise FuzzError(why)
        cc, flags, out = CLANG, ("-fsanitize=fuzzer", *SANITIZE), BUILD / name / f"fuzz_{name}"
    else:
        cc = driver_compiler()
        if cc is None:
            raise FuzzError("no C compiler for the driver (clang-19 or gcc)")
        flags, out = (*SANITIZE, "-DFUZZ_DRIVER"), BUILD / name / f"driver_{name}"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [cc, *COMMON, *flags, *t.defines, *(f"-I{REPO / d}" for d in t.includes), str(FUZZ / t.source)]
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}-")
    os.close(fd)
    try:
        r = subprocess.run([*cmd, "-o", tmp], capture_output=True, text=True)
        if r.returncode != 0:
            text = (r.stderr or r.stdout).strip().splitlines() or ["no output"]
            first = next((line for line in text if "error" in line), text[-1])
            raise FuzzError(f"{Path(cc).name} failed on {t.source}: {first}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def build(name: str, fuzzer: bool = True) -> Path:
    """The libFuzzer binary (fuzzer=True) or the plain driver of a target, compiled now."""
    return _compile(name, fuzzer)


@dataclass
class RunResult:
    seconds: float
    execs: int
    execs_per_s: int
    edges: int
    crashes: list[Path]
    returncode: int
    log: str

    def line(self, name: str) -> str:
        return (
            f"fuzz {name}: {self.seconds:.0f} s, {self.execs} execs, {self.execs_per_s} execs/s, "
            f"{self.edges} edges, {len(self.crashes)} crashes"
            + (f" ({', '.join(str(p) for p in self.crashes)})" if self.crashes else "")
        )


def _stat(log: str, key: str) -> int:
    found = re.findall(rf"stat::{key}:\s+(\d+)", log)
    return int(found[-1]) if found else 0


def run(name: str, seconds: int = 30, jobs: int = 1, exe: Path | None = None) -> RunResult:
    """Fuzz a target for `seconds` over a scratch copy of its corpus and its regression inputs."""
    t = target(name)
    exe = exe or build(name)
    work = BUILD / name / "corpus"
    crashes = BUILD / name / "crashes"
    for d in (work, crashes):
        d.mkdir(parents=True, exist_ok=True)
    for p in inputs(name):
        shutil.copy2(p, work / p.name)
    before = set(crashes.iterdir())
    cmd = [
        str(exe),
        f"-max_total_time={seconds}",
        "-print_final_stats=1",
        f"-max_len={t.max_len}",
        "-timeout=10",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={crashes}/",
    ]
    if jobs > 1:
        cmd.append(f"-fork={jobs}")
    t0 = time.monotonic()
    r = subprocess.run([*cmd, str(work)], capture_output=True, text=True, timeout=seconds + 300)
    elapsed = time.monotonic() - t0
    log = r.stdout + r.stderr
    edges = re.findall(r"\bcov: (\d+)", log)
    execs = _stat(log, "number_of_executed_units")
    if not execs:  # -fork: no final stats; the last status line counts the units
        counted = re.findall(r"^#(\d+)", log, re.M)
        execs = int(counted[-1]) if counted else 0
    new = sorted(set(crashes.iterdir()) - before)
    return RunResult(
        elapsed,
        execs,
        _stat(log, "average_exec_per_sec") or int(execs / max(elapsed, 1e-9)),
        int(edges[-1]) if edges else 0,
        new,
        r.returncode,
        log,
    )


def regress(name: str, env: dict | None = None, exe: Path | None = None) -> subprocess.CompletedProcess:
    """Every corpus and regression input of a target through the plain driver (one line each)."""
    exe = exe or build(name, fuzzer=False)
    return subprocess.run(
        [str(exe), *map(str, inputs(name))], capture_output=True, text=True, env={**os.environ, **(env or {})}
    )


def main(argv: list[str] | None = None) -> int:
    ap = ArgParser(prog=PROG, description="Build and run the libFuzzer targets of tests/fuzz/.")
    ap.add_argument("command", choices=("build", "run", "regress"))
    ap.add_argument("target", choices=tuple(TARGETS))
    ap.add_argument("--seconds", type=int, default=30, help="run: how long to fuzz (default 30)")
    ap.add_argument("--jobs", type=int, default=1, help="run: parallel fuzzing processes (libFuzzer -fork)")
    a = ap.parse_args(argv)
    if a.seconds < 1 or a.jobs < 1:
        return fail(PROG, "--seconds and --jobs must be >= 1", 2)
    try:
        if a.command == "build":
            fuzzer = build(a.target)
            print(f"fuzz {a.target}: built {fuzzer} and {build(a.target, fuzzer=False)}")
        elif a.command == "run":
            res = run(a.target, a.seconds, a.jobs)
            print(res.line(a.target))
            if res.crashes or res.returncode != 0:
                tail = "\n".join(res.log.splitlines()[-30:])
                print(tail, file=sys.stderr)
                return 1
        else:
            r = regress(a.target)
            sys.stdout.write(r.stdout)
            if r.returncode != 0:
                return fail(PROG, f"{a.target}: an input failed the harness (exit {r.returncode})\n{r.stderr[-3000:]}")
            print(f"fuzz {a.target}: {len(inputs(a.target))} inputs pass")
    except FuzzError as e:
        return fail(PROG, str(e))
    return 0


if __name__ == "__main__":
    sys.exit(main())
