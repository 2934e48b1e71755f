"""The closed loop (python -m kernel.ab): console parsing, statistics and report on a
constructed console; then a shortened A/B in the patched tiny kernel (one workload, five
repetitions per arm, reported but not judged)."""

import json
import re
import shutil
import subprocess
import time

import numpy as np
import pytest

from kernel import tiny_kernel
from kernel.ab import __main__ as ab_cli
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


# The guest's view of 2x2x2 as kernel/ab/init.sh prints it (constructed, after the tiny kernel's debugfs).
TOPO_CONSOLE = (
    "SLM-AB-BOOT uptime=5.1 cpus=8\n"
    "SLM-AB-TOPO node 0 0-3\nSLM-AB-TOPO node 1 4-7\n"
    + "".join(f"SLM-AB-TOPO siblings {c} {c - c % 2}-{c - c % 2 + 1}\r\n" for c in range(8))
    + "SLM-AB-TOPO domain 0 name SMT\nSLM-AB-TOPO domain 0 flags SD_BALANCE_NEWIDLE SD_SHARE_CPUCAPACITY\n"
    "SLM-AB-TOPO domain 1 name MC\nSLM-AB-TOPO domain 2 name NUMA\n"
    "SLM-AB-TOPO numa_balancing sysctl 1\nSLM-AB-TOPO numa_balancing scan_delay_ms 1000\n"
    "SLM-AB-DONE uptime=9\n"
)


def ab_main(monkeypatch, argv: list[str]) -> dict:
    """kernel.ab's main with run() replaced: the arguments it would boot with."""
    seen = {}

    def fake_run(export_dir, out, workloads, reps, smp, *rest, topology=None, **kw):
        seen.update(smp=smp, topology=topology)
        raise guest.GuestError("stop before the boot")

    monkeypatch.setattr(ab_cli, "run", fake_run)
    seen["rc"] = ab_cli.main(["E", "--out", "O", *argv])
    return seen


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--topology", "2x2"], "--topology: topology '2x2': expected SOCKETSxCORESxTHREADS"),
        (["--topology", "0x2x2"], "expected SOCKETSxCORESxTHREADS"),
        (["--topology", "3x1x1"], "does not split evenly over 3 NUMA nodes"),
        (["--topology", "2x2x2", "--smp", "4"], "--smp 4 conflicts with --topology 2x2x2 (8 CPUs)"),
        (["--topology", "2x4x2"], f"has 16 CPUs; the tiny kernel is built with NR_CPUS={tiny_kernel.NR_CPUS}"),
    ],
)
def test_bad_topology_is_one_line_and_exit_2(monkeypatch, capsys, argv, message):
    seen = ab_main(monkeypatch, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert seen == {"rc": 2} and len(err) == 1, (seen, err)
    assert err[0].startswith("python -m kernel.ab: error: ") and message in err[0]


def test_topology_sets_the_cpus_and_agrees_with_an_equal_smp(monkeypatch, capsys):
    for argv in (["--topology", "2x2x2"], ["--topology", "2x2x2", "--smp", "8"]):
        seen = ab_main(monkeypatch, argv)
        assert seen["rc"] == 2 and seen["smp"] == 8 and seen["topology"] == qemu.Topology(2, 2, 2)
    seen = ab_main(monkeypatch, [])
    assert seen["smp"] == ab_cli.DEFAULT_SMP and seen["topology"] is None
    assert "stop before the boot" in capsys.readouterr().err


def test_tiny_kernel_nr_cpus_is_the_build_scripts():
    m = re.search(r"--set-val NR_CPUS ([0-9]+)", tiny_kernel.SCRIPT.read_text())
    assert m and int(m.group(1)) == tiny_kernel.NR_CPUS
    for opt in ("NUMA", "NUMA_BALANCING", "ACPI_NUMA", "X86_64_ACPI_NUMA", "SCHED_SMT"):
        # enabled and in the loop that fails the build when an option did not stick
        assert re.search(rf"-e {opt}\b", tiny_kernel.SCRIPT.read_text()), opt
        assert re.search(rf"for opt in [^;]*\b{opt}\b[^;]*; do", tiny_kernel.SCRIPT.read_text()), opt


def test_topology_reaches_the_qemu_command_and_the_guest_view_is_parsed(monkeypatch, tmp_path):
    cmds = []

    def fake_run(cmd, **kw):
        cmds.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, TOPO_CONSOLE.encode(), b"")

    monkeypatch.setattr(qemu.subprocess, "run", fake_run)
    out = guest.boot(tmp_path / "bzImage", tmp_path / "initrd.gz", 4, 60, 1024, qemu.Topology(2, 2, 2))
    cmd = cmds[0]
    assert cmd[cmd.index("-smp") + 1] == "8,sockets=2,cores=2,threads=2"
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "-numa"] == [
        "node,nodeid=0,cpus=0-3,memdev=node0",
        "node,nodeid=1,cpus=4-7,memdev=node1",
    ]
    assert "numa_balancing=enable" in cmd[cmd.index("-append") + 1]
    assert out.done and out.trouble == []
    topo = out.topology
    assert topo["spec"] == "2x2x2" and topo["nodes"] == 2 and topo["cpu_node"] == [0] * 4 + [1] * 4
    assert topo["siblings"][5] == [4, 5] and [d["name"] for d in topo["domains"]] == ["SMT", "MC", "NUMA"]
    assert topo["numa_balancing"] == {"sysctl": 1, "scan_delay_ms": 1000}
    assert ab_cli.topology_mismatch(qemu.Topology(2, 2, 2), topo) == []
    assert ab_cli.topology_mismatch(None, topo) == []
    flat = guest.guest_topology_view("SLM-AB-TOPO node 0 0-7\n", "2x2x2")
    assert ab_cli.topology_mismatch(qemu.Topology(2, 2, 2), flat) == [
        "topology 2x2x2: guest shows 1 NUMA nodes and 8 CPUs, not 2 and 8"
    ]
    # the flat guest: no -numa, its own CPU count
    guest.boot(tmp_path / "bzImage", tmp_path / "initrd.gz", 4, 60)
    assert "-numa" not in cmds[1] and cmds[1][cmds[1].index("-smp") + 1] == "4"
    md = report.markdown(report.summarise([], {"smp": 8, "topology": topo}))
    assert "8 vCPUs (topology 2x2x2: 2 NUMA nodes, domains SMT/MC/NUMA)" in md


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
    from kernel.vm import models

    t0 = time.monotonic()
    tk = tiny_kernel.ensure()
    built = time.monotonic() - t0
    pair = models.make_pair(tmp_path / "models", n_vectors=200)
    ab = ab_cli.run(
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


def test_numa_topology_in_the_patched_kernel(tmp_path, record_property):
    """`--topology 2x2x2` in the tiny kernel with the module loaded and unloaded, no workload (8 vCPU
    threads on this 2-core host make even one hackbench arm take minutes): the guest must see
    2 NUMA nodes, 8 CPUs in SMT pairs, sched domains SMT, MC, NUMA and NUMA balancing on."""
    require(shutil.which(qemu.QEMU) is not None, "qemu-system-x86 not installed")
    require(initramfs.BUSYBOX.is_file(), "busybox-static not installed")
    require(tiny_kernel.TARBALL.is_file(), f"{tiny_kernel.TARBALL} missing (apt-get install linux-source-6.1)")
    require(
        IN_CI or tiny_kernel.cached() is not None,
        "patched tiny kernel not cached (python -m kernel.tiny_kernel builds it, many CPU-minutes)",
    )
    from kernel.vm import models

    tk = tiny_kernel.ensure()
    pair = models.make_pair(tmp_path / "models", n_vectors=200)
    t0 = time.monotonic()
    topo = qemu.Topology.parse("2x2x2")
    ab = ab_cli.run(
        pair.gen_dir,
        tmp_path / "ab",
        [],
        1,
        topo.cpus,
        None,
        kernel=tk.bzimage,
        tree=tk.tree,
        log=lambda m: None,
        topology=topo,
    )
    took = time.monotonic() - t0
    record_property("ab_numa_seconds", round(took, 1))
    print(f"NUMA A/B: {took:.0f} s; guest topology {json.dumps(ab['topology'])}")
    saved = json.loads((tmp_path / "ab" / "ab.json").read_text())["topology"]
    assert saved["spec"] == "2x2x2" and saved["nodes"] == 2 and saved["cpu_node"] == [0] * 4 + [1] * 4
    assert saved["siblings"] == [[c - c % 2, c - c % 2 + 1] for c in range(8)]
    assert [d["name"] for d in saved["domains"]] == ["SMT", "MC", "NUMA"], saved["domains"]
    assert saved["numa_balancing"].get("sysctl") == 1, saved["numa_balancing"]
    console = (tmp_path / "ab" / "console.log").read_text()
    assert "SLM-AB-INSMOD rc=0" in console and "SLM-AB-RMMOD rc=0" in console
    assert ab["trouble"] == [], ab["trouble"]
