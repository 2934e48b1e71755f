"""kernel/patches/0001-sched-fair-consult-learned-model.patch against Debian's linux-source-6.1."""

import shutil
import subprocess
from pathlib import Path

import pytest

from kernel import kbuild
from kernel.vm import console, initramfs, models
from plumbing import qemu
from plumbing.initramfs import BUSYBOX
from tests.conftest import require

KERNEL = Path(__file__).resolve().parents[1] / "kernel"
PATCH = KERNEL / "patches" / "0001-sched-fair-consult-learned-model.patch"
TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")


def added_file(patch: str, path: str) -> str:
    """Text of a file the patch creates."""
    lines = patch.splitlines()
    start = lines.index(f"+++ b/{path}") + 2  # skip the @@ line
    body = []
    for line in lines[start:]:
        if not line.startswith("+"):
            break
        body.append(line[1:])
    return "\n".join(body) + "\n"


def test_patch_installs_the_module_hook_header_verbatim():
    # The module builds against unpatched headers with its own copy of this layout.
    text = PATCH.read_text()
    assert added_file(text, "include/linux/sched/lb_model.h") == (KERNEL / "sched_lb_model.h").read_text()
    for needle in (
        "EXPORT_SYMBOL_GPL(sched_lb_model_register)",
        "rcu_dereference(sched_lb_model)",
        "rq_clock_task(env->src_rq) - p->se.exec_start",
        "can_migrate_task_cfs(p, env)",
    ):
        assert needle in text


@pytest.mark.slow
def test_build_fair_applies_patch_and_compiles():
    require(TARBALL.is_file(), f"{TARBALL} missing (apt-get install linux-source-6.1)")
    # No WORKDIR: the script unpacks (~1.5 GB) into a temp dir it removes afterwards.
    p = subprocess.run(["bash", str(KERNEL / "build_fair.sh")], capture_output=True, text=True, timeout=3600)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    assert "build_fair: OK kernel/sched/fair.o" in out
    assert "sched_lb_model_register" in out


@pytest.mark.slow
def test_patched_kernel_consults_the_module(tmp_path):
    """The cached tiny kernel with the patch boots under qemu with 4 vCPUs; the module
    registers and is consulted (kernel/tiny_kernel.py builds it on first use)."""
    from kernel import tiny_kernel

    require(TARBALL.is_file(), f"{TARBALL} missing (apt-get install linux-source-6.1)")
    require(shutil.which(qemu.QEMU) is not None, "qemu-system-x86 not installed")
    require(BUSYBOX.is_file(), "busybox-static not installed")
    tk = tiny_kernel.ensure()
    pair = models.make_pair(tmp_path / "models")
    ko = kbuild.build_module(pair.gen_dir, tmp_path / "kbuild", tk.tree)
    assert ko.returncode == 0 and ko.warnings == [], ko.log[-4000:]
    initrd = initramfs.build(tmp_path / "initrd.gz", ko.ko, {}, init=initramfs.HOOK_INIT)
    boot = qemu.boot(tk.bzimage, initrd, timeout=300, cpus=4)

    c = console.parse(boot.console)
    log = boot.console[-6000:]
    assert c.done and c.trouble == [] and c.insmod_rc == 0 and c.rmmod_rc == 0, log
    assert any("fair.c hook: registered, shadow mode" in line for line in c.dmesg), log
    shadow, active = c.queries["shadow"], c.queries["active"]
    assert (shadow["hook"], shadow["mode"], active["mode"]) == ("on", "shadow", "active"), log
    # CPU hogs on 4 CPUs: the balancer called can_migrate_task(), which asked the model.
    assert shadow["calls"] > 0 and 0 <= shadow["agree"] <= shadow["calls"], log
    assert active["calls"] > shadow["calls"], log
