"""The module end to end.

Built with kbuild (W=1) against Debian's linux-headers-6.1 around model A from the export
pipeline; then Debian's 6.1 kernel boots under qemu (software emulation) with a busybox
initramfs (kernel/vm/init.sh) that loads it, pushes model B, pushes corrupt blobs and queries
the serving model after each step. Expected outputs come from export's integer reference.
"""

import errno
import os
import re
import shutil
import subprocess

import pytest

from kernel import kbuild
from kernel.vm import models, run
from plumbing import qemu
from plumbing.initramfs import BUSYBOX
from tests.conftest import require

# x87 / SSE / AVX register or instruction use: the kernel must not touch the FPU.
FLOAT = re.compile(r"%[xyz]mm\d|%st\b|%st\(|\sf(ld|st|add|sub|mul|div|ild|ist|comp?|ucom)\w*\s")


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return models.make_pair(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def module(pair, tmp_path_factory):
    kernel = qemu.find_vmlinuz()  # the module must match the kernel the VM test boots
    headers = kbuild.find_headers(kernel.name.removeprefix("vmlinuz-") if kernel else None)
    require(headers is not None, "Debian linux-headers-6.1.0-*-amd64 (matching linux-image) not installed")
    require(shutil.which("make") and shutil.which("gcc"), "make and gcc needed for kbuild")
    return kbuild.build_module(pair.gen_dir, tmp_path_factory.mktemp("kbuild"), headers)


def test_module_builds_without_warnings(module):
    assert module.returncode == 0, module.log[-4000:]
    assert module.warnings == [], "\n".join(module.warnings)
    assert module.ko.is_file()


def test_module_has_no_float(module):
    require(shutil.which("objdump") is not None, "objdump (binutils) needed")
    asm = subprocess.run(["objdump", "-d", str(module.ko)], capture_output=True, text=True, check=True).stdout
    assert "<slm_init>:" in asm or "<init_module>:" in asm
    hits = [line for line in asm.splitlines() if FLOAT.search(line)]
    assert hits == [], "\n".join(hits[:20])


@pytest.fixture(scope="module")
def guest(module, pair, tmp_path_factory):
    """One boot of vm/init.sh in Debian's 6.1 kernel: (qemu.Boot, console.Console, log)."""
    kernel = qemu.find_vmlinuz()
    require(kernel is not None, "Debian linux-image-6.1.0-*-amd64 not installed")
    require(shutil.which(qemu.QEMU) is not None, "qemu-system-x86 not installed")
    require(BUSYBOX.is_file(), "busybox-static not installed")
    assert module.returncode == 0, "module did not build"
    boot, c = run.boot_check(module.ko, pair.blob_b, tmp_path_factory.mktemp("vm"), kernel, timeout=180)
    log = f"--- console ---\n{boot.console[-6000:]}\n--- qemu stderr ---\n{boot.stderr[-2000:]}"
    return boot, c, log


@pytest.mark.vm
def test_vm_selftest_reload_and_rejects(pair, guest, record_property):
    boot, c, log = guest
    assert boot.returncode == 0 and c.done, f"guest did not finish ({boot.seconds:.0f} s)\n{log}"
    assert c.trouble == [], log
    assert c.insmod_rc == 0 and c.rmmod_rc == 0, log

    verdict, passed, total, ns = c.selftest
    assert (verdict, passed, total) == ("PASS", pair.n_vectors, pair.n_vectors), log
    record_property("guest_tcg_ns_per_forward", ns)
    record_property("boot_seconds", round(boot.seconds, 1))
    print(f"guest (TCG software emulation): {ns} ns/forward; qemu run {boot.seconds:.1f} s")

    q = c.queries
    assert q["builtin"]["gen"] == 0 and q["builtin"]["match_builtin"] == pair.n_vectors, log
    assert q["builtin"]["out_crc32"] == pair.out_crc_a, log
    assert q["builtin"]["arch"] == pair.arch_hash, log

    # Model B replaced A: its outputs are the integer reference's for B.
    assert pair.out_crc_b != pair.out_crc_a, "models A and B must answer differently"
    assert c.pushes["model_b"] == 0, log
    assert q["after_b"]["gen"] == 1 and q["after_b"]["out_crc32"] == pair.out_crc_b, log

    # Every corrupt blob is refused (write error; a truncated one is noticed at close),
    # dmesg says why, and model B keeps serving.
    for name, reason in run.REJECTS.items():
        assert c.pushes[name] == (0 if name == "bad_trunc" else 1), (name, log)
        assert any(f"blob rejected: {reason}" in line for line in c.dmesg), (name, log)
    assert q["after_bad"]["gen"] == 1 and q["after_bad"]["out_crc32"] == pair.out_crc_b, log

    # The MAC bound (module parameter max_macs=1) refuses an otherwise valid blob.
    assert c.pushes["over_bound"] == 1, log
    assert any("MACs per decision" in line for line in c.dmesg), log


@pytest.mark.vm
def test_vm_unprivileged_cannot_push_or_flip(pair, guest):
    """uid 65534 gets EACCES/EPERM pushing a valid blob or writing hook/active, and the
    serving model (model B, gen 1) and both parameters stay as they were."""
    boot, c, log = guest
    assert c.done, f"guest did not finish ({boot.seconds:.0f} s)\n{log}"
    refused = (os.strerror(errno.EACCES), os.strerror(errno.EPERM))
    assert set(c.unpriv) == {"blob", "hook", "active"}, log
    for label, r in c.unpriv.items():
        assert (r["uid"], r["gid"]) == (65534, 65534), (label, log)
        assert r["rc"] != 0 and r["err"].endswith(refused), (label, r, log)
    assert c.params["after_unpriv"] == c.params["before_unpriv"], log
    before, after = c.queries["after_bad"], c.queries["after_unpriv"]
    assert (after["gen"], after["out_crc32"]) == (before["gen"], before["out_crc32"]) == (1, pair.out_crc_b), log
