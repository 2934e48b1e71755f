"""The closed loop (python -m kernel.ab): console parsing, statistics and report on a
constructed console; then a shortened A/B in the patched tiny kernel (one workload, five
repetitions per arm, reported but not judged)."""

import json
import shutil
import time

import numpy as np
import pytest

from kernel import tiny_kernel
from kernel.ab import guest, report
from plumbing import initramfs, qemu
from tests.conftest import IN_CI, require

DOMAIN = "domain0 0f " + " ".join(str(i) for i in range(36))  # schedstat v15: mask, 36 counters


def console(times: dict) -> str:
    """A console as kernel/ab/init.sh prints it (constructed for the parser test)."""
    out = ["SLM-AB-BOOT uptime=5.1 cpus=4", "SLM-AB-INSMOD rc=0"]
    for arm, sec in times.items():
        tag = f"w=hackbench-socket arm={arm} rep=1"
        hook = "on" if arm != "cfs" else "off"
        n = 0 if arm == "cfs" else 100
        nm = 40 if arm == "cfs" else 0  # hook calls the kernel timed without a model
        fair = "timing=on fair_calls={} fair_ns={} fair_model_calls={} fair_model_ns={} timer_ns=20"
        out += [
            f"SLM-AB-Q {tag} before hook={hook} mode=shadow calls=10 agree=9 model_migrate=5 cfs_migrate=6 "
            f"hook_ns=1000 {fair.format(7, 700, 10, 5000)}",
            f"SLM-AB-S {tag} before cpu0 0 0 1 2 3 4 5 6 7",
            f"SLM-AB-S {tag} before {DOMAIN}",
            f"SLM-AB-S {tag} after {DOMAIN.replace(' 4 5 ', ' 14 9 ', 1)}",
            f"SLM-AB-Q {tag} after hook={hook} mode=shadow calls={10 + n} agree={9 + n - 1} "
            f"model_migrate={5 + n // 2} cfs_migrate={6 + n // 2} hook_ns={1000 + 300 * n} "
            f"{fair.format(7 + nm, 700 + 50 * nm, 10 + n, 5000 + 500 * n)}",
            f"SLM-AB-RUN {tag} ABRUN ns={int(sec * 1e9)} cpu_ns={int(sec * 2e9)} rc=0 samples=4 imb_sum=6 imb_max=3 nr_sum=40",
        ]
    out += ["SLM-AB-RELOAD rc=0", "SLM-AB-MODEL gen=1 crc32=0x12345678 arch=0x1", "SLM-AB-DONE uptime=99"]
    return "\n".join(out) + "\n"


def test_parse_runs_counters_and_schedstat():
    runs, reload, model = guest.parse(console({"cfs": 2.0, "shadow": 2.1, "active": 2.2}))
    assert [(r.arm, r.seconds) for r in runs] == [("cfs", 2.0), ("shadow", 2.1), ("active", 2.2)]
    cfs, shadow = runs[0], runs[1]
    assert cfs.hook["calls"] == 0 and not cfs.hook["registered"]
    assert shadow.hook == {
        "calls": 100,
        "agree": 99,
        "model_migrate": 50,
        "cfs_migrate": 50,
        "hook_ns": 30000,
        "fair_calls": 0,
        "fair_ns": 0,
        "fair_model_calls": 100,
        "fair_model_ns": 50000,
        "registered": True,
        "timer_ns": 20,
    }
    assert cfs.hook["fair_calls"] == 40 and cfs.hook["fair_ns"] == 2000 and cfs.hook["fair_model_calls"] == 0
    # lb_gained of the CPU_IDLE type went 4 -> 14, lb_hot_gained 5 -> 9
    assert shadow.sched["lb_gained"] == 10 and shadow.sched["lb_hot_gained"] == 4
    assert shadow.imb_mean == 1.5 and shadow.nr_mean == 10.0 and shadow.imb_max == 3
    assert reload == {"rc": 0} and model == ["gen=1 crc32=0x12345678 arch=0x1"]


def test_ratio_ci_contains_one_for_equal_arms_and_not_for_a_shift():
    rng = np.random.default_rng(0)
    a = list(3.0 + rng.normal(0, 0.05, 30))
    r, (lo, hi) = report.ratio_ci(a, a)
    assert r == 1.0 and lo <= 1.0 <= hi
    r, (lo, hi) = report.ratio_ci([x * 1.2 for x in a], a)
    assert r == pytest.approx(1.2) and lo > 1.0 and lo <= r <= hi


def test_summary_report_and_plot(tmp_path):
    runs, _, _ = guest.parse(console({"cfs": 2.0, "shadow": 2.1, "active": 2.2}))
    ab = report.summarise(runs, {"export": "E", "kernel": "K", "smp": 4, "reps": 1, "boot_seconds": 99})
    w = ab["workloads"]["hackbench-socket"]
    assert w["cfs_s"] == [2.0] and w["model_s"] == [2.2] and w["ratio_median"] == pytest.approx(1.1)
    assert w["shadow_agreement"] == 0.99 and w["hook_calls"] == 200 and w["hook_calls_cfs_arm"] == 0
    assert w["migrations_cfs"] == pytest.approx(10 / 2.0) and w["rq_imbalance_model"] == 1.5
    assert ab["ns_per_call_model"] == pytest.approx(300.0) and "emulated" in ab["ns_per_call_model_label"]
    # the kernel's timing: 40 calls at 50 ns without the model (cfs arm), 200 at 500 ns with it
    assert ab["ns_per_call_no_model"] == pytest.approx(50.0) and ab["hook_calls_no_model"] == 40
    assert ab["ns_per_call_hook_with_model"] == pytest.approx(500.0) and ab["hook_calls_with_model"] == 200
    assert ab["timer_ns"] == 20 and "emulated" in ab["ns_per_call_no_model_label"]
    md = report.markdown(ab)
    assert "without a registered model: 50 ns over 40 calls" in md
    assert "| hackbench-socket | 2.000 | 2.200 | 1.100" in md and "emulated" in md
    assert w["cfs_cpu_s"] == [4.0] and w["cpu_ratio_median"] == pytest.approx(1.1)
    report.plot(ab, tmp_path / "ab.png")
    assert (tmp_path / "ab.png").stat().st_size > 1000


def test_unknown_workload_is_one_line(tmp_path):
    with pytest.raises(guest.GuestError, match="no fixed-work A/B command for nope"):
        guest.pack(tmp_path / "i.gz", tmp_path, tmp_path, ["nope"], 1, 100, None)


def test_shortened_ab_in_the_patched_kernel(tmp_path, record_property):
    """One workload, five repetitions per arm, a tiny can_migrate model with random weights:
    reported, not judged (only that the loop ran: hook consulted in shadow and active, not in
    cfs, a reload under load taken over, no kernel trouble). CI builds the kernel if needed."""
    require(shutil.which(qemu.QEMU) is not None, "qemu-system-x86 not installed")
    require(initramfs.BUSYBOX.is_file(), "busybox-static not installed")
    require(shutil.which("hackbench") is not None, "rt-tests (hackbench) not installed")
    require(tiny_kernel.TARBALL.is_file(), f"{tiny_kernel.TARBALL} missing (apt-get install linux-source-6.1)")
    require(
        IN_CI or tiny_kernel.cached() is not None,
        "patched tiny kernel not cached (python -m kernel.tiny_kernel builds it, many CPU-minutes)",
    )
    from kernel.ab.__main__ import run
    from kernel.vm import models

    t0 = time.monotonic()
    tk = tiny_kernel.ensure()
    built = time.monotonic() - t0
    pair = models.make_pair(tmp_path / "models", n_vectors=200)
    ab = run(
        pair.gen_dir,
        tmp_path / "ab",
        ["hackbench-socket"],
        5,
        4,
        pair.blob_b,
        kernel=tk.bzimage,
        tree=tk.tree,
        log=lambda m: None,
    )
    took = time.monotonic() - t0
    record_property("ab_seconds", round(took, 1))
    record_property("kernel_build_seconds", round(built, 1))
    print(report.markdown(ab))
    print(f"shortened A/B: {took:.0f} s (kernel {'built' if not tk.cached else 'cached'}: {built:.0f} s)")
    w = ab["workloads"]["hackbench-socket"]
    assert len(w["cfs_s"]) == len(w["shadow_s"]) == len(w["model_s"]) == 5
    assert w["failed_runs"] == 0 and w["hook_calls_cfs_arm"] == 0 and w["hook_calls"] > 0
    assert 0.0 <= w["shadow_agreement"] <= 1.0
    assert ab["reload_under_load"]["took_over"] and ab["reload_under_load"]["no_oops"], ab["reload_under_load"]
    assert ab["trouble"] == [], ab["trouble"]
    saved = json.loads((tmp_path / "ab" / "ab.json").read_text())
    assert {"ns_per_call_model", "ns_per_call_no_model", "reload_under_load"} <= set(saved)
    # the patched kernel timed its hook in every arm: without the model in cfs, with it in the others
    assert saved["hook_calls_no_model"] > 0 and saved["ns_per_call_no_model"] > 0
    assert (
        saved["hook_calls_with_model"] == pytest.approx(w["hook_calls"], rel=0.01)
        and saved["ns_per_call_hook_with_model"] > 0
    )
    assert (tmp_path / "ab" / "report.md").is_file() and (tmp_path / "ab" / "ab.png").is_file()
