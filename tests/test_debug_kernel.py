"""The module and the fair.c hook in the debug variant of the tiny kernel (issue 23, item 5).

`python -m kernel.tiny_kernel --debug` builds the tiny patched 6.1 kernel with debug.config
merged in (SLUB, KASAN, lockdep + PROVE_RCU, DEBUG_ATOMIC_SLEEP, DEBUG_OBJECTS). The slow test
boots it on 4 vCPUs with kernel/vm/init_debug.sh: the self-test, the five corrupt blobs, then
RELOADS model pushes during hackbench with the hook active; the console must carry no splat.
The fast tests check the pieces it relies on: the fragment, the option check, the splat scan.
"""

import re
import shutil
from pathlib import Path

import pytest

from kernel import kbuild, tiny_kernel
from kernel.vm import console, models, run
from plumbing import qemu
from plumbing.initramfs import BUSYBOX
from tests.conftest import require

RELOADS = 1000
DEBUG_OPTIONS = ("KASAN", "PROVE_LOCKING", "PROVE_RCU", "DEBUG_ATOMIC_SLEEP", "DEBUG_OBJECTS", "SLUB")


def test_fragment_asks_for_every_debug_option_and_drops_slob():
    text = tiny_kernel.DEBUG_FRAGMENT.read_text()
    for opt in DEBUG_OPTIONS:
        assert f"\nCONFIG_{opt}=y\n" in text, opt
    assert "\n# CONFIG_SLOB is not set\n" in text


def test_not_stuck_names_what_olddefconfig_dropped():
    fragment = "# comment\nCONFIG_KASAN=y\nCONFIG_SLUB=y\n# CONFIG_SLOB is not set\nCONFIG_LOG_BUF_SHIFT=18\n"
    good = "CONFIG_KASAN=y\nCONFIG_SLUB=y\n# CONFIG_SLOB is not set\nCONFIG_LOG_BUF_SHIFT=18\n"
    assert tiny_kernel.not_stuck(good, fragment) == []
    bad = "# CONFIG_KASAN is not set\nCONFIG_SLUB=y\nCONFIG_SLOB=y\nCONFIG_LOG_BUF_SHIFT=17\n"
    assert tiny_kernel.not_stuck(bad, fragment) == [
        "CONFIG_KASAN=y",
        "# CONFIG_SLOB is not set",
        "CONFIG_LOG_BUF_SHIFT=18",
    ]


def test_debug_key_is_its_own_and_leaves_the_tiny_key_alone(tmp_path, monkeypatch):
    require(tiny_kernel.TARBALL.is_file(), f"{tiny_kernel.TARBALL} missing (apt-get install linux-source-6.1)")
    tiny, debug = tiny_kernel.cache_key(), tiny_kernel.debug_key()
    assert re.fullmatch(r"[0-9a-f]{16}", debug) and debug != tiny
    other = tmp_path / "debug.config"
    other.write_text(tiny_kernel.DEBUG_FRAGMENT.read_text() + "CONFIG_DEBUG_LIST=y\n")
    monkeypatch.setattr(tiny_kernel, "DEBUG_FRAGMENT", other)
    assert tiny_kernel.cache_key() == tiny and tiny_kernel.debug_key() != debug


def test_splat_scan_finds_each_kind_and_an_unannounced_trace():
    reports = [
        "BUG: KASAN: slab-use-after-free in slm_write+0x1/0x2",
        "WARNING: possible recursive locking detected",
        "WARNING: possible circular locking dependency detected",
        "WARNING: suspicious RCU usage",
        "BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580",
        "WARNING: inconsistent lock state",
        "WARNING: CPU: 1 PID: 7 at kernel/sched/fair.c:100 can_migrate_task+0x1/0x2",
        "general protection fault, probably for non-canonical address 0xdffffc0000000000",
        "Oops: 0000 [#1] SMP KASAN",
        "ODEBUG: free active (active state 0) object type: timer_list",
        "rcu: INFO: rcu_sched self-detected stall on CPU",
    ]
    for head in reports:
        text = f"SLM-BOOT uptime=1.0\n{head}\nCall Trace:\n <TASK>\n dump_stack+0x1/0x2\nSLM-DONE uptime=2.0\n"
        assert console.splats(text) == [head], head  # the trace belongs to the report
    lone = "SLM-BOOT uptime=1.0\nCall Trace:\n <TASK>\nSLM-DONE uptime=2.0\n"
    assert console.splats(lone) == ["Call Trace:"]
    quiet = "SLM-BOOT uptime=1.0\nschedlearn: model gen 3 loaded\nSLM-RELOADS done=1000 failed=0\nSLM-DONE uptime=2.0\n"
    assert console.splats(quiet) == []
    assert console.parse(lone).trouble == ["Call Trace:"]


def test_debug_markers_parse():
    c = console.parse(
        "SLM-DEBUG start kasan=1 lockdep=812 debug_locks=1\n"
        "SLM-HOOK hook=1 active=Y cpus=4\n"
        "SLM-RELOADS done=1000 failed=0\n"
        "SLM-HACKBENCH runs=17 failed=0\n"
        "SLM-LOAD start uptime=12.50\nSLM-LOAD end uptime=80.25\n"
        "SLM-DEBUG end debug_locks=1\n"
    )
    assert c.debug == {"start": {"kasan": 1, "lockdep": 812, "debug_locks": 1}, "end": {"debug_locks": 1}}
    assert c.hook == {"hook": 1, "active": "Y", "cpus": 4}
    assert c.reloads == {"done": 1000, "failed": 0} and c.hackbench == {"runs": 17, "failed": 0}
    assert c.uptime == {"LOAD_start": 12.5, "LOAD_end": 80.25}


@pytest.mark.parametrize(
    "script, stalled, rc",
    [
        ("sleep 30", True, None),  # hung before its first line: killed at the watchdog
        ("echo SLM-BOOT uptime=0.1; sleep 0.3; echo SLM-DONE", False, 0),  # ready in time
        ("echo early exit; exit 3", False, 3),  # ended before the marker: no wait for the watchdog
    ],
)
def test_boot_watchdog_kills_a_guest_that_never_reaches_init(monkeypatch, script, stalled, rc):
    monkeypatch.setattr(qemu, "command", lambda *a, **k: ["sh", "-c", script])
    boot = qemu.boot(Path("k"), Path("i"), timeout=60, ready=("SLM-BOOT", 2))
    assert (boot.stalled, boot.returncode) == (stalled, rc)
    assert boot.seconds < 10
    assert ("SLM-DONE" in boot.console) == (rc == 0)


def excerpt(text: str) -> str:
    """The marker lines and anything splat-like: what a failing assert shows."""
    keep = re.compile(r"^SLM-(?!KMSG|DMESG)|selftest|hook|" + console.SPLAT.pattern)
    lines = [line for line in text.replace("\r", "").splitlines() if keep.search(line)]
    return "\n".join(lines[-120:])


@pytest.mark.slow
@pytest.mark.vm
def test_debug_kernel_reloads_under_hackbench_without_splats(tmp_path, record_property):
    require(tiny_kernel.TARBALL.is_file(), f"{tiny_kernel.TARBALL} missing (apt-get install linux-source-6.1)")
    require(shutil.which(qemu.QEMU) is not None, "qemu-system-x86 not installed")
    require(BUSYBOX.is_file(), "busybox-static not installed")
    require(shutil.which("hackbench") is not None, "hackbench not installed (apt-get install rt-tests)")
    tk = tiny_kernel.ensure(debug=True)  # cached; a first build takes tens of CPU-minutes
    pair = models.make_pair(tmp_path / "models")
    ko = kbuild.build_module(pair.gen_dir, tmp_path / "kbuild", tk.tree)
    assert ko.returncode == 0 and ko.warnings == [], ko.log[-4000:]

    boot, c = run.boot_debug(ko.ko, pair.blob_a, pair.blob_b, tmp_path / "vm", tk.bzimage, reloads=RELOADS, cpus=4)
    (tmp_path / "console.txt").write_text(boot.console)
    log = f"--- console excerpt ({tmp_path / 'console.txt'}) ---\n{excerpt(boot.console)}\n--- qemu stderr ---\n"
    log += boot.stderr[-2000:]
    assert boot.returncode == 0 and c.done, f"guest did not finish ({boot.seconds:.0f} s)\n{log}"
    assert c.trouble == [], log  # no KASAN, lockdep, RCU, might_sleep, WARN, oops

    # The debug machinery was on, and lockdep still is (its first splat turns debug_locks off).
    assert c.debug["start"]["kasan"] == 1 and c.debug["start"]["lockdep"] > 0, log
    assert c.debug["start"]["debug_locks"] == 1 and c.debug["end"]["debug_locks"] == 1, log

    assert c.insmod_rc == 0 and c.rmmod_rc == 0, log
    assert c.selftest[:3] == ("PASS", pair.n_vectors, pair.n_vectors), log
    assert any("fair.c hook: registered" in line for line in c.dmesg), log
    for name, reason in run.REJECTS.items():
        assert c.pushes[name] == (0 if name == "bad_trunc" else 1), (name, log)
        assert any(f"blob rejected: {reason}" in line for line in c.dmesg), (name, log)
    q = c.queries
    assert (q["after_bad"]["gen"], q["after_bad"]["out_crc32"]) == (0, pair.out_crc_a), log

    # RELOADS pushes (B, A, B, ...) during hackbench, the hook active on 4 vCPUs: every one
    # published, the last one's model serving, the hook consulted meanwhile.
    assert c.hook == {"hook": 1, "active": "Y", "cpus": 4}, log
    assert c.reloads == {"done": RELOADS, "failed": 0}, log
    assert c.hackbench["runs"] >= 1 and c.hackbench["failed"] == 0, log
    last = pair.out_crc_a if RELOADS % 2 == 0 else pair.out_crc_b
    assert (q["after_load"]["gen"], q["after_load"]["out_crc32"]) == (RELOADS, last), log
    assert q["after_load"]["mode"] == "active", log
    hook_calls = q["after_load"]["calls"] - q["before_load"]["calls"]
    assert hook_calls > 0, log

    load_s = c.uptime["LOAD_end"] - c.uptime["LOAD_start"]
    figures = dict(
        boot_seconds=round(boot.seconds, 1),
        guest_boot_uptime=c.uptime["BOOT"],
        load_guest_seconds=round(load_s, 1),
        reloads=c.reloads["done"],
        reloads_failed=c.reloads["failed"],
        hackbench_runs=c.hackbench["runs"],
        hook_calls=hook_calls,
        splats=len(c.trouble),
    )
    for k, v in figures.items():
        record_property(k, v)
    print(f"debug kernel {tk.key} (built in {tk.build_seconds:.0f} s): {figures}; console {tmp_path / 'console.txt'}")
