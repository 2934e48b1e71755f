"""Shared test helpers.

`require(condition, reason)` skips a test whose environment is missing (root, tracefs, a
compiler...). Under CI (`SCHEDLEARN_CI=1`, set by .ci/run) the same call fails instead, so a
CI run can never pass by skipping the tests that need the real machine.

`need_tracefs()` gives a test tracefs without relying on what the machine (or an earlier run)
left mounted: the first call moves this process into a private mount namespace (mounts
propagate neither in nor out), unmounts every tracefs there and mounts a fresh one at
/sys/kernel/tracing. The kernel's tracing state is still the one global state (tracefs is a
view of it), so tests still save/restore it and take the collector's lock; only the mount
table is private. Subprocesses started by the test inherit the namespace.
"""

import ctypes
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# the structured-config schemas conf/*.yaml attach (registered on import, as the entry points do),
# so a test may compose conf/ with Hydra's compose() without importing train.py first
import evaluation.config  # noqa: E402,F401
import export.config  # noqa: E402,F401
import models.config  # noqa: E402,F401

IN_CI = os.environ.get("SCHEDLEARN_CI") == "1"
TRACEFS = Path("/sys/kernel/tracing")

CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
MNT_DETACH = 2


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI but missing: {reason}")
    pytest.skip(reason)


def is_root() -> bool:
    return os.geteuid() == 0


def tracefs_mounts(mounts: str = "/proc/self/mounts") -> list[str]:
    """Mount points of tracefs in a mount table (default: this thread's namespace)."""
    with open(mounts) as fh:
        return [f[1] for f in (line.split() for line in fh) if len(f) > 2 and f[2] == "tracefs"]


_tracefs_state: dict[str, str | None] = {}


def _private_tracefs() -> str | None:
    """Enter a private mount namespace with a fresh tracefs; None on success, else why not."""
    if not is_root():
        return "root (to mount tracefs in a private mount namespace)"
    libc = ctypes.CDLL(None, use_errno=True)

    def call(what: str, rc: int) -> None:
        if rc != 0:
            raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")

    try:
        call("unshare(CLONE_NEWNS)", libc.unshare(CLONE_NEWNS))
        # private: nothing mounted or unmounted here reaches the host's mount table
        call("mount --make-rprivate /", libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None))
        for point in reversed(tracefs_mounts()):  # start from an unmounted tracefs
            call(f"umount {point}", libc.umount2(point.encode(), MNT_DETACH))
        if not TRACEFS.is_dir():
            return f"{TRACEFS} missing (kernel without tracing?)"
        call(f"mount -t tracefs nodev {TRACEFS}", libc.mount(b"nodev", str(TRACEFS).encode(), b"tracefs", 0, None))
    except OSError as e:
        return f"a private mount namespace with tracefs ({e.strerror})"
    if not (TRACEFS / "tracing_on").exists():
        return f"tracefs mounted at {TRACEFS} but without tracing_on"
    return None


def need_tracefs() -> None:
    """require() a freshly mounted tracefs in this process's private mount namespace."""
    if "reason" not in _tracefs_state:
        _tracefs_state["reason"] = _private_tracefs()
    reason = _tracefs_state["reason"]
    require(reason is None, reason or "")
