"""The patched, bootable 6.1 kernel for the closed loop, built once and cached outside the checkout.

`build_fair.sh --tiny` (tinyconfig + SMP, modules, tracefs, kprobes/BPF/BTF for the collector,
the fair.c hook patch) takes many CPU-minutes, so its tree is kept under
`$SCHEDLEARN_KERNEL_CACHE` (default /var/cache/schedlearn) as `kernel-<key>/`, where the key
hashes what decides the build: the script (its config), the patch (which carries the hook and
the feature contract header verbatim) and the source tarball's identity. Repeated runs and CI
find it there; a lock keeps two builders from racing.

    python -m kernel.tiny_kernel            # build or find; prints the bzImage path
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from plumbing.atomic import write_json_atomic

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "build_fair.sh"
PATCH = HERE / "patches" / "0001-sched-fair-consult-learned-model.patch"
TARBALL = Path(os.environ.get("SRC_TAR", "/usr/src/linux-source-6.1.tar.xz"))
DEFAULT_CACHE = Path("/var/cache/schedlearn")
NR_CPUS = 8  # build_fair.sh --tiny's CONFIG_NR_CPUS: the most vCPUs the tiny kernel brings up


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


def cached(root: Path | None = None) -> TinyKernel | None:
    """The cached build for the current key, if complete."""
    key = cache_key()
    cache_dir = (root or cache_root()) / f"kernel-{key}"
    done = cache_dir / "build.json"
    if not done.is_file():
        return None
    info = json.loads(done.read_text())
    tiny = TinyKernel(cache_dir / "linux-source-6.1", key, True, float(info.get("seconds", 0)))
    return tiny if tiny.bzimage.is_file() else None


def ensure(root: Path | None = None, jobs: int = 2, log=print) -> TinyKernel:
    """The cached kernel, building it first if needed (nice -n 10, make -j`jobs`)."""
    for tool in ("make", "gcc", "flex", "bison", "bc", "pahole"):
        if shutil.which(tool) is None:
            pkg = {"pahole": "dwarves", "gcc": "build-essential", "make": "build-essential"}.get(tool, tool)
            raise KernelBuildError(f"{tool} not found (apt-get install {pkg})")
    root = root or cache_root()
    root.mkdir(parents=True, exist_ok=True)
    key = cache_key()
    with open(root / f".kernel-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent builder finishes first; then it is cached
        hit = cached(root)
        if hit:
            return hit
        # Built in place (a kernel tree is not safely movable); build.json, written last, marks
        # it complete, so a half-built tree from an interrupted run is removed and redone.
        work = root / f"kernel-{key}"
        shutil.rmtree(work, ignore_errors=True)
        t0 = time.monotonic()
        log(f"tiny_kernel: building kernel-{key} in {work} (make -j{jobs}, minutes)")
        script = subprocess.run(
            ["nice", "-n", "10", "bash", str(SCRIPT), "--tiny", str(work)],
            env={**os.environ, "JOBS": str(jobs)},
            capture_output=True,
            text=True,
        )
        if script.returncode != 0:
            (root / f"kernel-{key}.failed.log").write_text(script.stdout + script.stderr)
            shutil.rmtree(work, ignore_errors=True)
            tail = (script.stdout + script.stderr).strip().splitlines()[-1:] or ["no output"]
            raise KernelBuildError(f"build_fair.sh --tiny failed ({tail[0]}); log in {root}/kernel-{key}.failed.log")
        secs = time.monotonic() - t0
        write_json_atomic(
            work / "build.json", {"key": key, "seconds": round(secs, 1), "patch": str(PATCH), "tarball": str(TARBALL)}
        )
        log(f"tiny_kernel: built in {secs:.0f} s")
        return TinyKernel(root / f"kernel-{key}" / "linux-source-6.1", key, False, secs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kernel.tiny_kernel", description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--check", action="store_true", help="only report whether it is cached")
    args = ap.parse_args(argv)
    try:
        tiny = cached() if args.check else ensure(jobs=args.jobs)
    except KernelBuildError as e:
        print(f"python -m kernel.tiny_kernel: error: {e}", file=sys.stderr)
        return 2
    if tiny is None:
        print(f"tiny_kernel: kernel-{cache_key()} not cached")
        return 1
    print(tiny.bzimage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
