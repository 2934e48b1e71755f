"""Guest collection (data/collect/guest): the pieces without a boot, then real boots of Debian's
6.1 kernel under qemu TCG that collect ftrace + can_migrate_task records for a few seconds: the
flat 4-vCPU guest, and a 2x2x2 NUMA guest (--topology; about 20 s).

The boot needs qemu-system-x86, linux-image-6.1.0-*-amd64, busybox-static, clang, bpftool and
libbpf-dev (static libs); outside CI a missing piece skips, under SCHEDLEARN_CI=1 it fails.
It takes about a minute (two with a cold build cache in data/_build/guest/).
"""

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import zstandard

from data import SCHED_EVENTS
from data.can_migrate.record import CM_MAGIC, RECORD_SIZE, decode
from data.collect import command as collect
from data.collect.guest import collect as gc
from data.collect.guest import topology as guest_topology
from data.collect.workloads import GUEST_BUILTIN, WORKLOADS
from data.parse.tracefile import parse_file
from plumbing import initramfs, qemu
from tests.conftest import require


def _cpio_names(archive: bytes) -> list[str]:
    names, pos = [], 0
    while True:
        assert archive[pos : pos + 6] == b"070701"
        fields = [int(archive[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        size, namesize = fields[6], fields[11]
        name = archive[pos + 110 : pos + 110 + namesize - 1].decode()
        if name == "TRAILER!!!":
            return names
        names.append(name)
        pos += 110 + namesize
        pos += -pos % 4
        pos += size + (-size % 4)


def test_builtins_run_as_static_program_in_guest():
    for name in ("cpu-pool", "oversub-sleep", "io-mix"):
        argv = WORKLOADS[name].guest_command(2.5, 4)
        assert argv[:4] == [GUEST_BUILTIN, name, "2.5", "4"]
    assert WORKLOADS["hackbench-pipe"].guest_command(3, 4) == WORKLOADS["hackbench-pipe"].command(3, 4)


def test_static_workloads_program_runs(tmp_path):
    require(shutil.which("cc") is not None, "a C compiler (cc)")
    exe = gc.build_slw(tmp_path)
    assert initramfs.shared_libs(exe) == []  # static: runs in a guest with no libc
    for argv in (["cpu-pool", "0.2", "2"], ["oversub-sleep", "0.2", "1"], ["io-mix", "0.2", "1", str(tmp_path)]):
        r = subprocess.run([str(exe), *argv], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
    assert not list(tmp_path.glob("w*"))  # io-mix removes its files
    r = subprocess.run([str(exe), "no-such", "1", "1"], capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr


def test_module_order_puts_dependencies_first(tmp_path):
    rel = tmp_path / "6.1.0-0-amd64"
    rel.mkdir()
    (rel / "modules.dep").write_text(
        "kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/netfs/netfs.ko\n"
        "kernel/net/9p/9pnet.ko:\nkernel/fs/netfs/netfs.ko:\n"
        "kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko\n"
        "kernel/drivers/virtio/virtio.ko:\n"
    )
    got = [p.name for p in initramfs.module_order("6.1.0-0-amd64", ["9pnet_virtio", "9p"], tmp_path)]
    assert got.index("9pnet.ko") < got.index("9pnet_virtio.ko") < got.index("9p.ko")
    assert got.index("virtio.ko") < got.index("9pnet_virtio.ko")
    assert got.index("netfs.ko") < got.index("9p.ko") and len(got) == len(set(got)) == 5
    with pytest.raises(initramfs.InitramfsError, match="nosuch"):
        initramfs.module_order("6.1.0-0-amd64", ["nosuch"], tmp_path)


def test_plan_archive_is_an_overlay_with_quoted_commands():
    specs = [{"run_id": "a-r01", "trace_seconds": 2.5, "command": ["sh", "-c", "echo 'x y'"]}]
    data = gzip.decompress(gc.plan_archive(specs, 4096, "mono"))
    assert _cpio_names(data) == ["plan.env", "plan.sh"]  # no /dev/console etc.: appended to the base
    text = data.decode(errors="replace")
    assert "run_one a-r01 2.5 sh -c 'echo '\"'\"'x y'\"'\"''" in text
    assert "BUFFER_KB=4096" in text and "sched_switch" in text and "TRACE_CLOCK=mono" in text
    assert "MIGRATION_COST_NS=\n" in text  # empty: init.sh leaves the kernel's own value
    assert "MIGRATION_COST_NS=5000000\n" in gzip.decompress(gc.plan_archive(specs, 4096, "mono", 5_000_000)).decode()


def test_extra_events_reach_the_plan_and_every_meta(tmp_path, monkeypatch, capsys):
    """--extra-events sched_stat_runtime: /init enables it beside SCHED_EVENTS (plan.env), and
    every run's meta.json lists it (events, extra_events, event_counts); it needs --vm and a
    name from data.EXTRA_SCHED_EVENTS."""
    kernel, base = tmp_path / "vmlinuz-6.1.0-0-amd64", tmp_path / "base.cpio.gz"
    kernel.write_bytes(b"kernel")
    base.write_bytes(b"base")
    monkeypatch.setattr(gc, "base_initramfs", lambda release: base)
    monkeypatch.setattr(gc.qemu, "version", lambda: "QEMU emulator version 0 (test)")
    ids = ["io-mix-r01"]
    specs = [{"run_id": r, "workload": "io-mix", "seconds": 2, "trace_seconds": 2, "command": ["true"]} for r in ids]
    plans = []

    def fake_boot(kernel, initrd, **kw):
        plans.append(gzip.decompress(Path(initrd).read_bytes()[len(b"base") :]).decode(errors="replace"))
        share = Path(kw["extra"][1].split("path=")[1].split(",")[0])
        _guest_writes(share, ids, ids)
        return qemu.Boot("SLG-BOOT\nSLG-DONE\n", "", 0, 5.0)

    monkeypatch.setattr(gc.qemu, "boot", fake_boot)
    out = tmp_path / "out"
    out.mkdir()
    kw = dict(log=lambda *_: None, extra_events=("sched_stat_runtime",))
    gc.collect_boot(specs, out, kernel, 2, 512, 1024, 3, "test", **kw)
    assert f"EVENTS='{' '.join(SCHED_EVENTS)} sched_stat_runtime'" in plans[0]
    meta = json.loads((out / "io-mix-r01" / "meta.json").read_text())
    assert meta["events"] == [*SCHED_EVENTS, "sched_stat_runtime"] and meta["extra_events"] == ["sched_stat_runtime"]
    assert set(meta["event_counts"]) == {*SCHED_EVENTS, "sched_stat_runtime"}
    assert collect.main(["hackbench-pipe", "--out", str(tmp_path), "--extra-events", "sched_stat_runtime"]) == 2
    assert "--extra-events needs --vm" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        collect.main(["--vm", "hackbench-pipe", "--out", str(tmp_path), "--extra-events", "sched_stat_sleep"])
    assert exit_.value.code == 2 and "choose from sched_stat_runtime" in capsys.readouterr().err


def test_missing_host_pieces_name_the_debian_package(monkeypatch, tmp_path):
    monkeypatch.setattr(gc.shutil, "which", lambda exe: None)
    monkeypatch.setattr(gc.initramfs, "BUSYBOX", tmp_path / "busybox")
    msgs = gc.problems(None)
    joined = "\n".join(msgs)
    for pkg in ("qemu-system-x86", "linux-image", "busybox-static", "clang", "bpftool"):
        assert pkg in joined
    assert all("\n" not in m for m in msgs)


def test_check_reports_in_one_line(capsys, monkeypatch):
    monkeypatch.setattr(gc.shutil, "which", lambda exe: None)
    assert collect.main(["--vm", "--check"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "qemu-system-x86" in err


def test_cli_refuses_bad_arguments_in_one_line(capsys, tmp_path):
    assert collect.main(["--vm", "hackbench-pipe", "--out", str(tmp_path), "--smp", "0"]) == 2
    assert collect.main(["--vm", "no-such-workload", "--out", str(tmp_path)]) in (1, 2)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("python -m data.collect: error: ") for e in err)


def test_overrun_deltas_from_stats_files(tmp_path):
    stats = (
        "entries: {e}\noverrun: {o}\ncommit overrun: 0\nbytes: 1\noldest event ts: 1.0\n"
        "now ts: 2.0\ndropped events: {d}\nread events: 0\n"
    )
    (tmp_path / "stats.cpu0.before").write_text(stats.format(e=0, o=3, d=0))
    (tmp_path / "stats.cpu0.after").write_text(stats.format(e=9, o=10, d=1))
    got = gc.cpu_overruns(tmp_path)
    assert got["overruns"] == {"0": 7} and got["dropped_events"] == {"0": 1}
    assert got["entries"] == {"0": 9}


def require_guest() -> None:
    """What a guest collection needs on the host: qemu, Debian's 6.1 kernel and modules,
    busybox, static libbpf and the host's BTF (skips elsewhere, fails in CI)."""
    problems = gc.problems(qemu.find_vmlinuz())
    require(not problems, "; ".join(problems))
    require(Path("/usr/lib/x86_64-linux-gnu/libbpf.a").exists(), "libbpf-dev (static libbpf.a)")
    require(Path("/sys/kernel/btf/vmlinux").exists(), "host BTF for vmlinux.h")


def test_guest_boot_collects_records_and_trace(tmp_path, capsys):
    """Boot the guest, collect hackbench-pipe for 4 s: records decode, their count is the
    loader's, the parquet has them all, and the trace parses with every line accounted for."""
    require_guest()
    out = tmp_path / "runs"
    rc = collect.main(["--vm", "hackbench-pipe", "--out", str(out), "--seconds", "4"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    run = out / "hackbench-pipe-r01"
    assert sorted(p.name for p in out.iterdir()) == ["hackbench-pipe-r01"]  # nothing partial left
    meta = json.loads((run / "meta.json").read_text())
    assert meta["collector"] == "guest" and meta["nr_cpus"] == 4 and meta["nproc"] == 4
    assert meta["kernel"]["release"].startswith("6.1.0-")
    assert meta["guest"]["accel"] == "tcg,thread=multi" and len(meta["guest"]["kernel_initramfs_sha256"]) == 64
    assert meta["workload_returncode"] in (0, 124) and meta["loader_returncode"] == 0
    topo = meta["topology"]  # the flat default: the guest's own view, 1 node, no SMT
    assert topo["spec"] is None and topo["nodes"] == 1 and topo["cpu_node"] == [0] * 4
    assert topo["siblings"] == [[c] for c in range(4)] and meta["guest"]["cpu"] == "max"
    assert topo["domains"] and "SMT" not in [d["name"] for d in topo["domains"]]

    raw = zstandard.ZstdDecompressor().decompress((run / "can_migrate.bin.zst").read_bytes(), max_output_size=1 << 30)
    assert len(raw) % RECORD_SIZE == 0
    recs = decode(raw, "can_migrate.bin")
    stats = meta["loader_stats"]
    assert len(recs) > 0, "no can_migrate_task call in 4 s of hackbench on 4 vCPUs"
    assert len(recs) == meta["records"] == stats["written"] == stats["submitted"] - stats["ringbuf_full"]
    assert set(recs["ret"]) <= {0, 1} and (recs["src_cpu"] != recs["dst_cpu"]).all()
    assert ((recs["src_cpu"] >= 0) & (recs["src_cpu"] < 4)).all()
    import pyarrow.parquet as pq

    assert pq.read_table(run / "can_migrate.parquet").num_rows == len(recs)
    # the freshly recorded calls through the module's decision C = the Python integer reference
    # (the shipped records: tests/test_kernel_contract.py)
    from kernel import cm_parity
    from kernel.vm import models

    pair = models.make_pair(tmp_path / "cm_model", n_vectors=200)
    par = cm_parity.check(pair.gen_dir, [run], pair.blob_b, time_it=False)
    assert par["records"] == len(recs) and par["consulted_records"] > 0
    assert par["feature_differences"] == par["logit_differences"] == par["decision_differences"] == 0, par
    print(f"parity: {par['records']} fresh records ({par['consulted_records']} consulted), 0 differences")

    table, pstats = parse_file(run / "trace.txt.zst")
    pstats.check()
    assert pstats.events == meta["events_written"] == table.num_rows > 1000
    assert sum(pstats.skipped.values()) == 0 and pstats.lost_markers == meta["lost_markers"]
    assert set(meta["overruns"]) == {"0", "1", "2", "3"}
    assert pstats.events_by_kind["sched_switch"] == meta["event_counts"]["sched_switch"]
    assert set(meta["event_counts"]) == set(SCHED_EVENTS)
    table = gc.summary(out)
    assert "| hackbench-pipe-r01 | messaging |" in table and f"| {meta['records']:,} |" in table


@pytest.mark.vm
def test_guest_collects_sched_stat_runtime(tmp_path, capsys):
    """--extra-events sched_stat_runtime in a real boot (about 30 s): the guest kernel has the
    event and prints the format data.parse.stat_runtime reads; every line is read, the event
    parser skips exactly those, and every charge is positive (update_curr() logs none for a
    clock that did not advance)."""
    from data.parse import stat_runtime

    require_guest()
    out = tmp_path / "runs"
    rc = collect.main(["--vm", "cpu-pool", "--out", str(out), "--seconds", "1", "--extra-events", "sched_stat_runtime"])
    assert rc == 0, capsys.readouterr().err
    run = out / "cpu-pool-r01"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["extra_events"] == ["sched_stat_runtime"] and meta["events"][-1] == "sched_stat_runtime"
    charges, counts = stat_runtime.read(run / "trace.txt.zst")
    _, pstats = parse_file(run / "trace.txt.zst")
    assert counts.malformed == 0 and counts.rows == meta["event_counts"]["sched_stat_runtime"] > 0
    assert pstats.skipped["unknown_event"] == counts.rows and pstats.skipped["malformed_fields"] == 0
    assert (charges["runtime"].to_numpy() > 0).all() and charges["vruntime"].null_count == 0


def _guest_writes(share: Path, run_ids: list[str], done: list[str]) -> None:
    """What init.sh leaves in the share, for the runs in `done` only. Test input, not a trace:
    two synthetic ftrace lines and three records packed from the documented layout."""
    import numpy as np

    from data.can_migrate.record import CM_MAGIC, RECORD_DTYPE

    (share / "guest.env").write_text(
        "release=6.1.0-0-amd64\nversion=#1 SMP\nmachine=x86_64\nnr_cpus=2\nboot_uptime=7.0\n"
    )
    stats = "entries: {e}\noverrun: 0\ncommit overrun: 0\ndropped events: 0\n"
    for rid in done:
        d = share / rid
        d.mkdir()
        recs = np.zeros(3, dtype=RECORD_DTYPE)
        recs["magic"], recs["size"], recs["ret"] = CM_MAGIC, RECORD_SIZE, [1, 0, 1]
        (d / "records.bin").write_bytes(recs.tobytes())
        (d / "loader.err").write_text(
            "ready\n" + json.dumps({"submitted": 3, "ringbuf_full": 0, "no_entry": 0, "written": 3}) + "\n"
        )
        (d / "trace.txt").write_text(
            "# tracer: nop\n#\n"
            "          <idle>-0       [001] d..2.    10.000001: sched_switch: prev_comm=swapper/1 "
            "prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=sh next_pid=42 next_prio=120\n"
            "              sh-42      [001] d..3.    10.000002: sched_waking: comm=kworker/1:1 "
            "pid=7 prio=120 target_cpu=001\n"
        )
        for c in (0, 1):
            (d / f"stats.cpu{c}.before").write_text(stats.format(e=0))
            (d / f"stats.cpu{c}.after").write_text(stats.format(e=c + 1))
        (d / "workload.log").write_text("done\n")
        (d / "guest_run.env").write_text(
            "workload_rc=0\nloader_rc=0\nuptime_start=10.0\nuptime_end=12.0\nrun_begin=9.5\nrun_end=12.5\n"
        )


def test_a_boot_that_hangs_before_init_is_named_by_the_watchdog(tmp_path, monkeypatch):
    """qemu.boot's ready watchdog killed a guest that never printed SLG-BOOT: the error says so
    (not a plain timeout), and OUT holds only the console log."""
    kernel, base = tmp_path / "vmlinuz-6.1.0-0-amd64", tmp_path / "base.cpio.gz"
    kernel.write_bytes(b"kernel")
    base.write_bytes(b"base")
    monkeypatch.setattr(gc, "base_initramfs", lambda release: base)
    monkeypatch.setattr(gc.qemu, "version", lambda: "QEMU emulator version 0 (test)")
    seen = {"boots": 0}

    def fake_boot(kernel, initrd, **kw):
        seen["ready"] = kw.get("ready")
        seen["boots"] += 1
        return qemu.Boot("tsc: Unable to calibrate against PIT\n", "", None, gc.BOOT_READY_S, stalled=True)

    monkeypatch.setattr(gc.qemu, "boot", fake_boot)
    out = tmp_path / "out"
    out.mkdir()
    spec = {"run_id": "hackbench-pipe-r01", "workload": "hackbench-pipe", "seconds": 2, "trace_seconds": 2}
    with pytest.raises(gc.GuestError, match=rf"hung before /init: no SLG-BOOT within {gc.BOOT_READY_S} s"):
        gc.collect_boot([{**spec, "command": ["true"]}], out, kernel, 2, 512, 1024, 3, "test", log=lambda *_: None)
    assert seen["ready"] == ("SLG-BOOT", gc.BOOT_READY_S)
    assert seen["boots"] == 1 + gc.PRE_INIT_RETRIES  # booted again once before giving up
    assert [p.name for p in out.iterdir() if not p.name.endswith("console.log")] == []


def test_failed_boot_keeps_completed_runs(tmp_path, monkeypatch):
    """The guest died in the second run: the first is written in full, the error says so,
    and nothing partial is left in OUT."""
    kernel, base = tmp_path / "vmlinuz-6.1.0-0-amd64", tmp_path / "base.cpio.gz"
    kernel.write_bytes(b"kernel")
    base.write_bytes(b"base")
    monkeypatch.setattr(gc, "base_initramfs", lambda release: base)
    monkeypatch.setattr(gc.qemu, "version", lambda: "QEMU emulator version 0 (test)")
    specs = [
        {"run_id": rid, "workload": "hackbench-pipe", "seconds": 2, "trace_seconds": 2, "command": ["true"]}
        for rid in ("hackbench-pipe-r01", "hackbench-pipe-r02")
    ]

    def fake_boot(kernel, initrd, **kw):
        share = Path(kw["extra"][1].split("path=")[1].split(",")[0])
        _guest_writes(share, [s["run_id"] for s in specs], ["hackbench-pipe-r01"])
        return qemu.Boot("SLG-BOOT\nSLG-RUN hackbench-pipe-r01 rc=0\n", "", None, 5.0)

    monkeypatch.setattr(gc.qemu, "boot", fake_boot)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(gc.GuestError, match=r"timed out.*1 of 2 runs completed and kept; console in"):
        gc.collect_boot(specs, out, kernel, 2, 512, 1024, 3, "test", log=lambda *_: None)
    assert sorted(p.name for p in out.iterdir() if not p.name.endswith("console.log")) == ["hackbench-pipe-r01"]
    meta = json.loads((out / "hackbench-pipe-r01" / "meta.json").read_text())
    assert meta["records"] == 3 and meta["events_written"] == 2 and meta["guest_seconds"] == 2.0
    assert meta["entries"] == {"0": 1, "1": 2} and meta["kernel"]["release"] == "6.1.0-0-amd64"
    raw = zstandard.ZstdDecompressor().decompress(
        (out / "hackbench-pipe-r01" / "can_migrate.bin.zst").read_bytes(), max_output_size=1 << 20
    )
    assert list(decode(raw)["ret"]) == [1, 0, 1]


def test_record_count_mismatch_is_an_error(tmp_path, monkeypatch):
    share = tmp_path / "share"
    share.mkdir()
    _guest_writes(share, ["io-mix-r01"], ["io-mix-r01"])
    (share / "io-mix-r01" / "loader.err").write_text(json.dumps({"written": 4}) + "\n")
    spec = {"run_id": "io-mix-r01", "workload": "io-mix", "seconds": 2, "trace_seconds": 2, "command": ["true"]}
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(gc.GuestError, match="3 records decoded but the loader wrote 4"):
        gc.finish_run(spec, share / "io-mix-r01", out, {}, 3, "test")
    assert list(out.iterdir()) == []


# ----- the guest's topology (--topology SxCxT) ---------------------------------------------------


def test_topology_spec_parses_and_gives_numa_qemu_arguments():
    t = qemu.Topology.parse("2x2x2")
    assert (t.sockets, t.cores, t.threads, t.cpus, t.spec) == (2, 2, 2, 8, "2x2x2")
    args = t.qemu_args(1024)
    pairs = list(zip(args[::2], args[1::2], strict=True))
    assert ("-cpu", qemu.TOPOLOGY_CPU) in pairs and ("-smp", "8,sockets=2,cores=2,threads=2") in pairs
    assert [v for k, v in pairs if k == "-object"] == [
        "memory-backend-ram,id=node0,size=512M",
        "memory-backend-ram,id=node1,size=512M",
    ]
    assert [v for k, v in pairs if k == "-numa"] == [
        "node,nodeid=0,cpus=0-3,memdev=node0",
        "node,nodeid=1,cpus=4-7,memdev=node1",
    ]
    one = [v for k, v in zip(*[iter(qemu.Topology.parse("3x1x1").qemu_args(768))] * 2, strict=True) if k == "-numa"]
    assert one == [f"node,nodeid={n},cpus={n},memdev=node{n}" for n in range(3)]
    for bad in ("2x2", "0x2x2", "axbxc", "2x2x2x2", " 2x2x2", "2x-1x2", ""):
        with pytest.raises(ValueError, match="SOCKETSxCORESxTHREADS") as e:
            qemu.Topology.parse(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="does not split evenly over 2 NUMA nodes"):
        t.qemu_args(1001)


def test_flat_qemu_command_is_unchanged_and_topology_replaces_its_cpus():
    k, i = Path("vmlinuz"), Path("initrd")
    flat = qemu.command(k, i, 1024, 4, append="x=1")
    assert flat[flat.index("-cpu") : flat.index("-cpu") + 4] == ["-cpu", "max", "-smp", "4"]
    assert "-numa" not in flat and "-object" not in flat and flat[-1] == "console=ttyS0 panic=-1 quiet x=1"
    numa = qemu.command(k, i, 1024, 4, append="x=1", topology=qemu.Topology(2, 2, 2))
    assert numa.count("-numa") == 2 and numa.count("-smp") == 1 and "max" not in numa
    assert numa[numa.index("-smp") + 1].startswith("8,") and numa[-1].endswith("x=1 numa_balancing=enable")
    # everything but the CPU arguments and the command line stays as it was
    assert [a for a in numa if a not in qemu.Topology(2, 2, 2).qemu_args(1024)][:-1] == [
        a for a in flat if a not in ("-cpu", "max", "-smp", "4")
    ][:-1]


def test_cli_refuses_bad_topology_in_one_line(capsys, tmp_path):
    base = ["--vm", "hackbench-pipe", "--out", str(tmp_path)]
    for extra in (
        ["--topology", "2x2"],
        ["--topology", "0x2x2"],
        ["--topology", "axbxc"],
        ["--topology", "2x2x2", "--smp", "4"],
        ["--topology", "2x2x2", "--mem", "1001"],
    ):
        assert collect.main([*base, *extra]) == 2, extra
    assert collect.main(["hackbench-pipe", "--out", str(tmp_path), "--topology", "2x2x2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 6 and all(e.startswith("python -m data.collect: error: ") for e in err)
    assert "expected SOCKETSxCORESxTHREADS" in err[0] and "'0x2x2'" in err[1]
    assert "--smp 4 conflicts with --topology 2x2x2 (8 CPUs)" in err[3] and "split evenly" in err[4]
    assert "--topology needs --vm" in err[5]
    assert collect.main([*base, "--migration-cost-ns", "-1"]) == 2
    assert collect.main(["hackbench-pipe", "--out", str(tmp_path), "--migration-cost-ns", "5000000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--migration-cost-ns >= 0" in err[0] and "--migration-cost-ns needs --vm" in err[1]
    assert list(tmp_path.iterdir()) == []


# what init.sh writes for a 2x2x2 guest of Debian's 6.1 (debugfs flag names); test input
TOPOLOGY_TXT = """node 0 0-3
node 1 4-7
siblings 0 0-1
siblings 1 0-1
siblings 2 2-3
siblings 3 2-3
siblings 4 4-5
siblings 5 4-5
siblings 6 6-7
siblings 7 6-7
domain 0 name SMT
domain 0 flags SD_BALANCE_NEWIDLE SD_SHARE_CPUCAPACITY
domain 1 name MC
domain 1 flags SD_BALANCE_NEWIDLE SD_SHARE_PKG_RESOURCES
domain 2 name NUMA
domain 2 flags SD_BALANCE_NEWIDLE SD_SERIALIZE SD_NUMA
numa_balancing sysctl 1
numa_balancing scan_delay_ms 1000
sched migration_cost_ns 500000
sched nr_migrate 32
"""


def test_guest_topology_view_parses():
    got = guest_topology.parse(TOPOLOGY_TXT, "2x2x2")
    assert got["spec"] == "2x2x2" and got["nodes"] == 2 and got["cpu_node"] == [0] * 4 + [1] * 4
    assert got["siblings"][5] == [4, 5] and len(got["siblings"]) == 8
    assert [(d["level"], d["name"]) for d in got["domains"]] == [(0, "SMT"), (1, "MC"), (2, "NUMA")]
    assert "SD_NUMA" in got["domains"][2]["flags"] and "SD_NUMA" not in got["domains"][1]["flags"]
    assert got["numa_balancing"] == {"sysctl": 1, "scan_delay_ms": 1000}
    assert got["sched"] == {"migration_cost_ns": 500_000, "nr_migrate": 32}
    assert guest_topology.cpulist("0-2,5,7-8\n") == [0, 1, 2, 5, 7, 8]
    empty = guest_topology.parse("", None)
    assert empty["nodes"] is None and empty["cpu_node"] == [] and empty["domains"] == []


def test_topology_reaches_qemu_and_every_meta(tmp_path, monkeypatch):
    """collect_boot passes the Topology to qemu.boot and puts the guest's parsed view in meta.json."""
    kernel, base = tmp_path / "vmlinuz-6.1.0-0-amd64", tmp_path / "base.cpio.gz"
    kernel.write_bytes(b"kernel")
    base.write_bytes(b"base")
    monkeypatch.setattr(gc, "base_initramfs", lambda release: base)
    monkeypatch.setattr(gc.qemu, "version", lambda: "QEMU emulator version 0 (test)")
    ids = ["io-mix-r01", "io-mix-r02"]
    specs = [{"run_id": r, "workload": "io-mix", "seconds": 2, "trace_seconds": 2, "command": ["true"]} for r in ids]
    seen = {}

    def fake_boot(kernel, initrd, **kw):
        seen.update(kw)
        share = Path(kw["extra"][1].split("path=")[1].split(",")[0])
        _guest_writes(share, ids, ids)
        (share / "topology.txt").write_text(TOPOLOGY_TXT)
        return qemu.Boot("SLG-BOOT\nSLG-DONE\n", "", 0, 5.0)

    monkeypatch.setattr(gc.qemu, "boot", fake_boot)
    out = tmp_path / "out"
    out.mkdir()
    topo = qemu.Topology(2, 2, 2)
    metas = gc.collect_boot(specs, out, kernel, 8, 1024, 1024, 3, "test", log=lambda *_: None, topology=topo)
    assert seen["topology"] == topo and seen["cpus"] == 8
    for rid in ids:
        meta = json.loads((out / rid / "meta.json").read_text())
        assert meta["topology"] == guest_topology.parse(TOPOLOGY_TXT, "2x2x2")
        assert meta["guest"]["cpu"] == qemu.TOPOLOGY_CPU and meta["guest"]["smp"] == 8
    assert len(metas) == 2
    with pytest.raises(gc.GuestError, match="2x2x2 has 8 CPUs, not 4"):
        gc.collect_boot(specs, out, kernel, 4, 1024, 1024, 3, "test", log=lambda *_: None, topology=topo)


def test_load_levels_size_the_guest_runs(tmp_path, monkeypatch):
    """--vm --load 50,200 --runs 2: two runs per level, named by it, sized for that share of the
    guest's vCPUs (the built-in's static program and hackbench alike), and meta.json says so."""
    kernel = tmp_path / "vmlinuz-6.1.0-0-amd64"
    kernel.write_bytes(b"kernel")
    monkeypatch.setattr(gc, "problems", lambda kernel, series=None: [])
    monkeypatch.setattr(gc, "unrunnable", lambda chosen: [])  # hackbench need not be installed: nothing runs
    seen = {}

    def fake_collect_boot(specs, out, kernel, smp, *args, **kw):
        seen.update(specs=specs, smp=smp)
        return []

    monkeypatch.setattr(gc, "collect_boot", fake_collect_boot)
    argv = ["--vm", "oversub-sleep", "hackbench-pipe", "--out", str(tmp_path / "out"), "--kernel", str(kernel)]
    assert collect.main([*argv, "--topology", "2x2x2", "--load", "50,200", "--runs", "2"]) == 0
    specs = {s["run_id"]: s for s in seen["specs"]}
    assert seen["smp"] == 8 and list(specs) == [
        f"{w}-load{p}-r0{i}" for w in ("oversub-sleep", "hackbench-pipe") for p in (50, 200) for i in (1, 2)
    ]
    for p, n in ((50, 4), (200, 16)):
        s = specs[f"oversub-sleep-load{p}-r01"]
        assert s["command"][:2] == [GUEST_BUILTIN, "oversub-sleep"] and s["command"][3] == str(n)
        assert (s["load_pct"], s["workload_n"], s["scalable"]) == (p, n, True)
        cmd = specs[f"hackbench-pipe-load{p}-r02"]["command"]
        assert cmd[cmd.index("--groups") + 1] == str(n)
    assert collect.main(argv) == 0  # no --load: sized for the vCPUs, ids as before
    assert [(s["run_id"], s["load_pct"], s["workload_n"]) for s in seen["specs"]] == [
        ("oversub-sleep-r01", 100, 4),
        ("hackbench-pipe-r01", 100, 4),
    ]
    # what finish_run writes: the level beside nproc (the vCPUs)
    monkeypatch.undo()
    share = tmp_path / "share"
    share.mkdir()
    rid = "io-mix-load200-r01"
    _guest_writes(share, [rid], [rid])
    spec = {"run_id": rid, "workload": "io-mix", "seconds": 2, "trace_seconds": 2, "command": ["true"]}
    spec.update(load_pct=200, workload_n=4, scalable=True)
    guest = dict.fromkeys(  # what collect_boot knows of the boot; none of it matters here
        "cpu mem_mb accel qemu kernel_path kernel_sha256 initramfs_sha256 plan_sha256 kernel_initramfs_sha256 share "
        "boot_wall_s runs_in_boot host_kernel host_loadavg_before kernel clock buffer_kb start_time end_time".split()
    )
    guest.update(smp=2, nr_cpus=2)
    meta = gc.finish_run(spec, share / rid, tmp_path / "out", guest, 3, "test")
    assert (meta["nproc"], meta["load_pct"], meta["workload_n"], meta["scalable"]) == (2, 200, 4, True)
    assert json.loads((tmp_path / "out" / rid / "meta.json").read_text())["load_pct"] == 200


def _cross_node(recs, cpu_node: list[int]) -> int:
    node = np.asarray(cpu_node)
    return int((node[recs["src_cpu"]] != node[recs["dst_cpu"]]).sum())


@pytest.mark.vm
def test_numa8_guest_collection(tmp_path, capsys):
    """A 2x2x2 guest (2 NUMA nodes x 2 cores x 2 SMT threads): one short run of a built-in
    workload; the guest's own view shows 2 nodes, SMT pairs, the SMT, MC and NUMA domains and
    NUMA balancing on, and can_migrate records were kept."""
    require_guest()
    out = tmp_path / "runs"
    argv = ["--vm", "oversub-sleep", "--out", str(out), "--seconds", "2", "--trace-seconds", "0.5"]
    rc = collect.main([*argv, "--topology", "2x2x2", "--migration-cost-ns", "4000000"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    run = out / "oversub-sleep-r01"
    meta = json.loads((run / "meta.json").read_text())
    topo = meta["topology"]
    assert topo["sched"]["migration_cost_ns"] == 4_000_000 and topo["sched"]["nr_migrate"] > 0  # the guest's value
    assert meta["nr_cpus"] == meta["nproc"] == 8 and meta["guest"]["cpu"] == qemu.TOPOLOGY_CPU
    assert topo["spec"] == "2x2x2" and topo["nodes"] == 2 and topo["cpu_node"] == [0] * 4 + [1] * 4
    assert all(len(s) == 2 and c in s for c, s in enumerate(topo["siblings"])), topo["siblings"]
    assert [d["name"] for d in topo["domains"]] == ["SMT", "MC", "NUMA"], topo["domains"]
    assert topo["numa_balancing"]["sysctl"] == 1
    recs = decode(zstandard.ZstdDecompressor().decompress((run / "can_migrate.bin.zst").read_bytes(), 1 << 30))
    assert len(recs) == meta["records"] > 0, "no can_migrate_task call kept on the 2-node guest"
    assert ((recs["src_cpu"] >= 0) & (recs["src_cpu"] < 8)).all() and (recs["dst_cpu"] < 8).all()
    # record version 2: the domain level and Pinto's attributes are measured, not filled
    assert (recs["magic"] == CM_MAGIC).all() and (recs["sd_span_weight"] > 0).all()
    spans = set(recs["sd_span_weight"].tolist())
    assert spans <= {2, 4, 8} and len(spans) >= 2, spans  # SMT pairs, a socket, both nodes
    assert recs["util_avg"].max() > 0 and recs["nr_migrations"].max() > 0 and recs["src_util"].max() > 0
    print(
        f"numa8: {len(recs)} records, {_cross_node(recs, topo['cpu_node'])} across nodes, domain spans {sorted(spans)}"
    )
