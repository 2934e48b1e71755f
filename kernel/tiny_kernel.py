"""The patched, bootable 6.1 kernel for the closed loop, built once and cached outside the checkout.

`build_fair.sh --tiny` (tinyconfig + SMP, modules, tracefs, kprobes/BPF/BTF for the collector,
the fair.c hook patch) takes many CPU-minutes, so its tree is kept under
`$SCHEDLEARN_KERNEL_CACHE` (default /var/cache/schedlearn) as `kernel-<key>/`, where the key
hashes what decides the build: the script (its config), the patch (which carries the hook and
the feature contract header verbatim) and the source tarball's identity. Repeated runs and CI
find it there; a lock keeps two builders from racing.

The debug variant (`--debug`, `kernel-debug-<key>/`) is the tiny kernel's own .config with
`debug.config` merged in (SLUB for SLOB, KASAN, lockdep with PROVE_RCU, DEBUG_ATOMIC_SLEEP,
DEBUG_OBJECTS): its key hashes the tiny kernel's key and the fragment, so the fragment changes
the debug build only and the tiny kernel's key stays build_fair.sh's.

    python -m kernel.tiny_kernel            # build or find; prints the bzImage path
    python -m kernel.tiny_kernel --debug    # the KASAN/lockdep variant (builds the tiny one first)
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from plumbing.atomic import write_json_atomic

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "build_fair.sh"
PATCH = HERE / "patches" / "0001-sched-fair-consult-learned-model.patch"
DEBUG_FRAGMENT = HERE / "debug.config"
TARBALL = Path(os.environ.get("SRC_TAR", "/usr/src/linux-source-6.1.tar.xz"))
DEFAULT_CACHE = Path("/var/cache/schedlearn")
NR_CPUS = 8  # build_fair.sh --tiny's CONFIG_NR_CPUS: the most vCPUs the tiny kernel brings up
TREE = "linux-source-6.1"  # the folder the tarball unpacks into


class KernelBuildError(RuntimeError):
    """The tiny kernel could not be built (missing package, compiler error)."""


@dataclass
class TinyKernel:
    tree: Path  # the built linux-source-6.1 tree (module builds use it as KDIR)
    key: str
    cached: bool  # found, not built now
    build_seconds: float

    @property
    def bzimage(self) -> Path:
        return self.tree / "arch" / "x86" / "boot" / "bzImage"


def cache_root() -> Path:
    return Path(os.environ.get("SCHEDLEARN_KERNEL_CACHE", DEFAULT_CACHE))


def cache_key() -> str:
    """sha256 (16 hex) of build script, patch and tarball identity (name, size)."""
    if not TARBALL.is_file():
        raise KernelBuildError(f"{TARBALL} missing (apt-get install linux-source-6.1)")
    digest = hashlib.sha256()
    for path in (SCRIPT, PATCH):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(f"{TARBALL.name}:{TARBALL.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def debug_key() -> str:
    """sha256 (16 hex) of the tiny kernel's key (its .config is the base) and debug.config."""
    digest = hashlib.sha256(b"debug\0" + cache_key().encode() + b"\0" + DEBUG_FRAGMENT.read_bytes())
    return digest.hexdigest()[:16]


def _name(debug: bool) -> str:
    """kernel-<key> or kernel-debug-<key>: the cache folder of a variant."""
    return f"kernel-debug-{debug_key()}" if debug else f"kernel-{cache_key()}"


def cached(root: Path | None = None, debug: bool = False) -> TinyKernel | None:
    """The cached build for the current key, if complete."""
    name = _name(debug)
    cache_dir = (root or cache_root()) / name
    done = cache_dir / "build.json"
    if not done.is_file():
        return None
    info = json.loads(done.read_text())
    tiny = TinyKernel(cache_dir / TREE, info["key"], True, float(info.get("seconds", 0)))
    return tiny if tiny.bzimage.is_file() else None


def not_stuck(config: str, fragment: str) -> list[str]:
    """The fragment's settings that the final .config does not carry: `CONFIG_X=v` lines
    missing, and `# CONFIG_X is not set` ones that ended up set."""
    have = set(config.splitlines())
    bad = []
    for line in fragment.splitlines():
        if re.fullmatch(r"CONFIG_\w+=.*", line):
            if line not in have:
                bad.append(line)
        elif m := re.fullmatch(r"# (CONFIG_\w+) is not set", line):
            if any(h.startswith(m[1] + "=") for h in have):
                bad.append(line)
    return bad


def _build_tiny(work: Path, jobs: int, nice: int, log_fh) -> None:
    """build_fair.sh --tiny into work (unpack, patch, configure and check, make)."""
    subprocess.run(
        ["nice", "-n", str(nice), "bash", str(SCRIPT), "--tiny", str(work)],
        env={**os.environ, "JOBS": str(jobs)},
        stdout=log_fh,
        stderr=subprocess.STDOUT,
        check=True,
    )


def _build_debug(work: Path, jobs: int, nice: int, log_fh, base: TinyKernel) -> None:
    """The tiny kernel's .config + debug.config, checked after olddefconfig, then make."""

    def run(*cmd: str, cwd: Path = work / TREE) -> None:
        log_fh.write(f"tiny_kernel: {' '.join(cmd)}\n")
        log_fh.flush()
        subprocess.run(list(cmd), cwd=cwd, stdout=log_fh, stderr=subprocess.STDOUT, check=True)

    work.mkdir(parents=True)
    run("tar", "-xJf", str(TARBALL), "-C", str(work), cwd=work)
    run("patch", "-p1", "--quiet", "-i", str(PATCH))
    tree = work / TREE
    shutil.copyfile(base.tree / ".config", tree / ".config")
    run("bash", "scripts/kconfig/merge_config.sh", "-m", ".config", str(DEBUG_FRAGMENT))
    run("make", "-s", "olddefconfig")
    bad = not_stuck((tree / ".config").read_text(), DEBUG_FRAGMENT.read_text())
    if bad:
        raise KernelBuildError(f"{DEBUG_FRAGMENT.name}: {bad[0]} did not stick after olddefconfig")
    run("nice", "-n", str(nice), "make", f"-j{jobs}", "-s", "bzImage", "modules")
    syms = subprocess.run(["nm", str(tree / "vmlinux")], capture_output=True, text=True, check=True).stdout
    if " T sched_lb_model_register\n" not in syms:
        raise KernelBuildError("debug kernel built without sched_lb_model_register (the fair.c patch)")


def ensure(root: Path | None = None, jobs: int = 2, log=print, debug: bool = False, nice: int = 10) -> TinyKernel:
    """The cached kernel (debug: the debug variant, building the tiny one first if needed),
    building it first if needed (nice -n `nice`, make -j`jobs`)."""
    for tool in ("make", "gcc", "flex", "bison", "bc", "pahole"):
        if shutil.which(tool) is None:
            pkg = {"pahole": "dwarves", "gcc": "build-essential", "make": "build-essential"}.get(tool, tool)
            raise KernelBuildError(f"{tool} not found (apt-get install {pkg})")
    root = root or cache_root()
    root.mkdir(parents=True, exist_ok=True)
    base = ensure(root, jobs, log, nice=nice) if debug else None
    name = _name(debug)
    key = name.rpartition("-")[2]
    builder: Callable = (lambda w, j, n, fh: _build_debug(w, j, n, fh, base)) if debug else _build_tiny
    with open(root / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent builder finishes first; then it is cached
        hit = cached(root, debug)
        if hit:
            return hit
        # Built in place (a kernel tree is not safely movable); build.json, written last, marks
        # it complete, so a half-built tree from an interrupted run is removed and redone.
        work = root / name
        shutil.rmtree(work, ignore_errors=True)
        t0 = time.monotonic()
        log(f"tiny_kernel: building {name} in {work} (make -j{jobs}, minutes)")
        failed = root / f"{name}.failed.log"
        log_path = root / f".{name}.log"
        with open(log_path, "w") as fh:
            try:
                builder(work, jobs, nice, fh)
                why = None
            except subprocess.CalledProcessError:
                why = "a build step failed"
            except KernelBuildError as e:
                why = str(e)
                fh.write(f"tiny_kernel: {why}\n")
        if why is not None:
            shutil.rmtree(work, ignore_errors=True)
            os.replace(log_path, failed)
            tail = failed.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            what = "debug.config build" if debug else "build_fair.sh --tiny"
            raise KernelBuildError(f"{what} failed ({tail[0]}); log in {failed}")
        log_path.unlink()
        secs = time.monotonic() - t0
        info = {"key": key, "seconds": round(secs, 1), "patch": str(PATCH), "tarball": str(TARBALL)}
        if debug:
            info.update(base_key=base.key, fragment=str(DEBUG_FRAGMENT))
        write_json_atomic(work / "build.json", info)
        log(f"tiny_kernel: built in {secs:.0f} s")
        return TinyKernel(work / TREE, key, False, secs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kernel.tiny_kernel", description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--nice", type=int, default=10, help="niceness of the build (default 10)")
    ap.add_argument("--debug", action="store_true", help="the KASAN/lockdep variant (debug.config)")
    ap.add_argument("--check", action="store_true", help="only report whether it is cached")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error(f"--jobs {args.jobs}: must be >= 1")
    if not 0 <= args.nice <= 19:
        ap.error(f"--nice {args.nice}: must be 0..19")
    try:
        tiny = cached(debug=args.debug) if args.check else ensure(jobs=args.jobs, debug=args.debug, nice=args.nice)
        if tiny is None:
            print(f"tiny_kernel: {_name(args.debug)} not cached")
            return 1
    except KernelBuildError as e:
        print(f"python -m kernel.tiny_kernel: error: {e}", file=sys.stderr)
        return 2
    print(tiny.bzimage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
