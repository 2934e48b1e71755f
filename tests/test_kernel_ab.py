"""The closed loop (python -m kernel.ab): console parsing, statistics and report on a
constructed console; the BPF runqueue sampler builds (and, where the host kernel allows, loads);
then a shortened A/B in the patched tiny kernel (one workload, five repetitions per arm,
reported but not judged) and a short NUMA one that checks Chen's metrics."""

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from kernel import tiny_kernel
from kernel.ab import __main__ as ab_cli
from kernel.ab import guest, report
from plumbing import initramfs, qemu
from tests.conftest import IN_CI, require

DOMAIN = "domain0 0f " + " ".join(str(i) for i in range(36))  # schedstat v15: mask, 36 counters
# abrun's sampler fields (kernel/ab/abrun.c) for one 2-second run on 4 CPUs at 20 Hz: 40 samples,
# 160 CPU readings; spreads 0 x10, 1 x20, 2 x9, 3 x1; 6 migrations, 2 across nodes
RQS = (
    "rqs=ok period_ns=50000000 ncpu=4 samples=40 nr_sum=200 cfs_sum=190 rq_hist=20,60,50,30 imb_hist=10,20,9,1 "
    "migrations=6 cross_node=2 sample_runs=40 sample_ns=80000 migrate_runs=6 migrate_ns=3000"
)


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
            f"SLM-AB-RUN {tag} ABRUN ns={int(sec * 1e9)} cpu_ns={int(sec * 2e9)} rc=0 {RQS}",
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
    assert shadow.rqs["samples"] == 40 and shadow.rqs["nr_sum"] == 200 and shadow.rqs["ncpu"] == 4
    assert shadow.rqs["rq_hist"] == [20, 60, 50, 30] and shadow.rqs["imb_hist"] == [10, 20, 9, 1]
    assert shadow.rqs["cross_node"] == 2 and shadow.rqs["sample_ns"] == 80000
    assert reload == {"rc": 0} and model == ["gen=1 crc32=0x12345678 arch=0x1"]


def test_a_run_without_the_sampler_has_no_chen_metrics():
    line = "SLM-AB-RUN w=x arm=cfs rep=1 ABRUN ns=1000000000 cpu_ns=5 rc=0 rqs=error"
    runs, _, _ = guest.parse(line + "\n")
    assert runs[0].rqs == {} and runs[0].seconds == 1.0
    assert report.chen_metrics(runs) == {"sampled_runs": 0}
    boot = guest.TROUBLE.search("SLM-AB-TROUBLE abrun sampler: load (verifier) failed: No such file")
    assert boot is not None


@pytest.mark.parametrize("seed", range(20))
def test_hist_percentiles_are_numpys_inverted_cdf(seed):
    rng = np.random.default_rng(seed)
    values = rng.poisson(rng.uniform(0.2, 6), int(rng.integers(1, 400)))
    hist = np.bincount(values).tolist()
    want = [int(v) for v in np.percentile(values, report.PCTS, method="inverted_cdf")]
    assert report.hist_percentiles(hist) == want
    assert 0 <= want[0] <= want[1] <= want[2]


def test_hist_percentiles_on_exact_ties_and_empty():
    # 20 samples: the 95th percentile is the 19th value (rank 0.95 * 20 = 19 exactly), not the 20th
    assert report.hist_percentiles([19, 1]) == [0, 0, 1]
    assert report.hist_percentiles([10, 10]) == [0, 1, 1]
    assert report.hist_percentiles([0, 0, 5]) == [2, 2, 2]
    assert report.hist_percentiles([]) == report.hist_percentiles([0, 0]) == [None, None, None]


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
    assert w["migrations_cfs"] == pytest.approx(10 / 2.0)
    # Chen's metrics from the sampler's counts: spreads 0 x10, 1 x20, 2 x9, 3 x1 of 40 samples
    chen = w["chen"]["active"]
    assert w["rq_imbalance_model"] == pytest.approx((20 + 18 + 3) / 40) == chen["imbalance_mean"]
    assert (chen["imbalance_p50"], chen["imbalance_p95"], chen["imbalance_p99"]) == (1, 2, 3)
    # lengths 0 x20, 1 x60, 2 x50, 3 x30 of 160: p50 = 1 (80 of 160 reached at length 1), p95 = p99 = 3
    assert (chen["rq_len_p50"], chen["rq_len_p95"], chen["rq_len_p99"]) == (1, 3, 3)
    assert chen["runnable_mean"] == 5.0 and chen["cfs_runnable_mean"] == pytest.approx(4.75)
    assert chen["sample_hz"] == pytest.approx(40 / 2.2) and chen["cross_node_migrations_per_s"] == pytest.approx(
        2 / 2.2
    )
    assert chen["sampler_ns_per_sample"] == 2000 and chen["migrate_ns_per_event"] == 500
    assert chen["sampler_cpu_pct"] == pytest.approx(100 * 83000 / (2.2e9 * 4))
    assert chen["rq_hist"] == [20, 60, 50, 30] and chen["imb_hist"] == [10, 20, 9, 1]
    assert ab["sampler"]["samples"] == 120 and ab["sampler"]["sampled_runs"] == ab["sampler"]["runs"] == 3
    assert ab["ns_per_call_model"] == pytest.approx(300.0) and "emulated" in ab["ns_per_call_model_label"]
    # the kernel's timing: 40 calls at 50 ns without the model (cfs arm), 200 at 500 ns with it
    assert ab["ns_per_call_no_model"] == pytest.approx(50.0) and ab["hook_calls_no_model"] == 40
    assert ab["ns_per_call_hook_with_model"] == pytest.approx(500.0) and ab["hook_calls_with_model"] == 200
    assert ab["timer_ns"] == 20 and "emulated" in ab["ns_per_call_no_model_label"]
    md = report.markdown(ab)
    assert "without a registered model: 50 ns over 40 calls" in md
    assert "| hackbench-socket | 2.000 | 2.200 | 1.100" in md and "emulated" in md
    assert "| hackbench-socket | active | 2.200 | 5.00 | 1/2/3 | 1/3/3 | 0.9 | 2.7 | 40 (18.2) | 2000 | 0.00" in md
    assert report.TCG_CAVEAT in md and "no runqueue lock" in md
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


def test_negative_sample_period_is_one_line_and_exit_2(monkeypatch, capsys):
    seen = ab_main(monkeypatch, ["--sample-ms", "-5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert seen == {"rc": 2} and err == ["python -m kernel.ab: error: --sample-ms must be >= 0 (0: no sampler)"]


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
    for opt in ("NUMA", "NUMA_BALANCING", "ACPI_NUMA", "X86_64_ACPI_NUMA", "SCHED_SMT", "KALLSYMS_ALL"):
        # enabled and in the loop that fails the build when an option did not stick
        assert re.search(rf"-e {opt}\b", tiny_kernel.SCRIPT.read_text()), opt
        assert re.search(rf"for opt in [^;]*\b{opt}\b[^;]*; do", tiny_kernel.SCRIPT.read_text()), opt


def test_topology_reaches_the_qemu_command_and_the_guest_view_is_parsed(monkeypatch, tmp_path):
    cmds, console, real_command = [], tmp_path / "console.txt", qemu.command
    console.write_text(TOPO_CONSOLE)

    def fake_command(*args, **kw):  # the qemu command line is recorded; the "guest" prints TOPO_CONSOLE
        cmds.append(real_command(*args, **kw))
        return ["cat", str(console)]

    monkeypatch.setattr(qemu, "command", fake_command)
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


def _kallsyms_has(name: str) -> bool:
    try:
        return any(line.split()[2:3] == [name] for line in Path("/proc/kallsyms").read_text().splitlines())
    except OSError:
        return False


def test_sampler_builds_and_loads_where_the_kernel_allows(tmp_path):
    """abrun with the BPF sampler compiles and links statically; `abrun --check` loads it into this
    host's kernel (verifier, CO-RE against its BTF) without attaching anything. A kernel without
    CONFIG_KALLSYMS_ALL (this development host's) cannot resolve the runqueues ksym: then exactly
    that must be why, i.e. libbpf relocated and resolved everything else first."""
    for tool, pkg in (("clang", "clang"), ("bpftool", "bpftool"), ("gcc", "gcc")):
        require(shutil.which(tool) is not None, f"{tool} not installed ({pkg})")
    require(Path("/usr/lib/x86_64-linux-gnu/libbpf.a").exists(), "static libbpf missing (libbpf-dev)")
    require(Path("/sys/kernel/btf/vmlinux").exists(), "no host BTF (/sys/kernel/btf/vmlinux) to build against")
    exe = guest.build_abrun(tmp_path)
    assert exe.stat().st_size > 100_000 and b"rqsample" in exe.read_bytes()
    timed = subprocess.run([str(exe), "0", "true"], capture_output=True, text=True, timeout=30)
    assert timed.returncode == 0 and re.fullmatch(r"ABRUN ns=\d+ cpu_ns=\d+ rc=0 rqs=off\n", timed.stdout), timed
    if os.geteuid() != 0:
        pytest.skip("loading BPF programs needs root")
    check = subprocess.run([str(exe), "--check"], capture_output=True, text=True, timeout=60)
    if _kallsyms_has("runqueues"):
        assert check.returncode == 0, check.stderr
    else:
        assert check.returncode == 1, check.stderr
        assert "failed to find the address for kernel symbol 'runqueues'" in check.stderr, check.stderr
        assert check.stderr.strip().splitlines()[-1].startswith("SLM-AB-TROUBLE abrun sampler: load")


def test_unknown_workload_is_one_line(tmp_path):
    with pytest.raises(guest.GuestError, match="no fixed-work A/B command for nope"):
        guest.pack(tmp_path / "i.gz", tmp_path, tmp_path, ["nope"], 1, 100, None)


def require_ab_guest(tool: str | None, package: str | None) -> None:
    """What a closed-loop guest test needs: qemu, busybox, the workload's tool (None: no
    workload), and the patched tiny kernel (cached, or CI, which builds it)."""
    require(shutil.which(qemu.QEMU) is not None, "qemu-system-x86 not installed")
    require(initramfs.BUSYBOX.is_file(), "busybox-static not installed")
    if tool is not None:
        require(shutil.which(tool) is not None, f"{package} ({tool}) not installed")
    require(tiny_kernel.TARBALL.is_file(), f"{tiny_kernel.TARBALL} missing (apt-get install linux-source-6.1)")
    require(
        IN_CI or tiny_kernel.cached() is not None,
        "patched tiny kernel not cached (python -m kernel.tiny_kernel builds it, many CPU-minutes)",
    )


def test_shortened_ab_in_the_patched_kernel(tmp_path, record_property):
    """One workload, five repetitions per arm, a tiny can_migrate model with random weights:
    reported, not judged (only that the loop ran: hook consulted in shadow and active, not in
    cfs, a reload under load taken over, no kernel trouble). CI builds the kernel if needed."""
    require_ab_guest("hackbench", "rt-tests")
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
    # Chen's metrics: the lockless sampler ran in every run; one NUMA node, so no cross-node moves
    for arm, key in zip(guest.ARMS, ("cfs_s", "shadow_s", "model_s"), strict=True):
        chen = _assert_chen_sane(w["chen"][arm], w[key], arm)
        assert chen["cross_node_migrations"] == 0 and chen["task_migrations"] > 0, (arm, chen)
    assert saved["workloads"]["hackbench-socket"]["chen"]["cfs"]["rq_hist"], "raw histograms in ab.json"


def _assert_chen_sane(chen: dict, seconds: list[float], arm: str) -> dict:
    """The sampler's figures for one arm: every run sampled at >= 10 Hz, ordered percentiles,
    its cost measured, cross-node moves a subset of all moves."""
    assert chen["sampled_runs"] == len(seconds), (arm, chen)
    assert chen["samples"] >= 10 * sum(seconds) and chen["sample_hz"] >= 10, (arm, chen["samples"], seconds)
    for name in ("imbalance", "rq_len"):
        p50, p95, p99 = (chen[f"{name}_p{p}"] for p in report.PCTS)
        assert 0 <= p50 <= p95 <= p99 < 64, (arm, name, p50, p95, p99)
    assert sum(chen["imb_hist"]) == chen["samples"] and sum(chen["rq_hist"]) == chen["samples"] * chen["ncpu"]
    # nearly every task is a CFS one; the two counts are read one after the other without a lock,
    # so an enqueue in between can put h_nr_running above nr_running at one sample
    assert 0 < chen["runnable_mean"] and chen["cfs_runnable_mean"] == pytest.approx(chen["runnable_mean"], rel=0.05)
    assert chen["sampler_ns_per_sample"] > 0 and 0 < chen["sampler_cpu_pct"] < 5, (arm, chen)
    assert 0 <= chen["cross_node_migrations"] <= chen["task_migrations"], (arm, chen)
    return chen


def numa_ab(tmp_path, spec: str, workloads: list[str]) -> tuple[dict, float]:
    """One repetition of `workloads` in the patched tiny kernel booted `--topology spec`, with a
    tiny model (the module loaded and unloaded even with no workload); (ab, seconds)."""
    from kernel.vm import models

    tk = tiny_kernel.ensure()
    pair = models.make_pair(tmp_path / "models", n_vectors=200)
    topo = qemu.Topology.parse(spec)
    t0 = time.monotonic()
    ab = ab_cli.run(
        pair.gen_dir,
        tmp_path / "ab",
        workloads,
        1,
        topo.cpus,
        None,
        kernel=tk.bzimage,
        tree=tk.tree,
        log=lambda m: None,
        topology=topo,
    )
    return ab, time.monotonic() - t0


def test_numa_topology_in_the_patched_kernel(tmp_path, record_property):
    """`--topology 2x2x2` in the tiny kernel with the module loaded and unloaded, no workload (8 vCPU
    threads on this 2-core host make even one hackbench arm take minutes): the guest must see
    2 NUMA nodes, 8 CPUs in SMT pairs, sched domains SMT, MC, NUMA and NUMA balancing on."""
    require_ab_guest(None, None)
    ab, took = numa_ab(tmp_path, "2x2x2", [])
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


def test_chen_metrics_in_a_short_numa_ab(tmp_path, record_property):
    """`--topology 2x2x1` (2 NUMA nodes of 2 CPUs), one repetition of stress-ng-cpu (8 workers on
    4 CPUs, the smallest A/B workload: hackbench takes minutes per arm on a busy host): every arm
    sampled by the BPF sampler at >= 10 Hz with sane distributions and its cost measured, and
    tasks moved across nodes in some arm."""
    require_ab_guest("stress-ng", "stress-ng")
    ab, took = numa_ab(tmp_path, "2x2x1", ["stress-ng-cpu"])
    record_property("ab_numa_chen_seconds", round(took, 1))
    print(report.markdown(ab))
    assert ab["trouble"] == [], ab["trouble"]
    assert ab["topology"]["nodes"] == 2, ab["topology"]
    w = ab["workloads"]["stress-ng-cpu"]
    chen = [
        _assert_chen_sane(w["chen"][arm], w[key], arm)
        for arm, key in zip(guest.ARMS, ("cfs_s", "shadow_s", "model_s"), strict=True)
    ]
    assert sum(c["cross_node_migrations"] for c in chen) > 0, chen
    assert ab["sampler"]["sampler_ns_per_sample"] > 0 and ab["sampler"]["samples"] == sum(c["samples"] for c in chen)
    saved = json.loads((tmp_path / "ab" / "ab.json").read_text())
    assert saved["workloads"]["stress-ng-cpu"]["chen"]["active"]["imb_hist"]
    assert report.TCG_CAVEAT in (tmp_path / "ab" / "report.md").read_text()
