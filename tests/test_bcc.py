"""can_migrate_task collector: record layout vs the C header, decoding, Chen features,
the capability message on this kernel, and that the BPF program compiles and verifies."""

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from data.can_migrate import features as feat
from data.can_migrate import record as rec
from data.collect import bcc
from tests.conftest import REPO, is_root, require

HEADER = REPO / "data" / "collect" / "bcc" / "can_migrate.h"

# Written by hand from struct cm_record in can_migrate.h (not derived from record.py):
# magic size | ts delta imbalance src_load dst_load total_faults faults[4] |
# pid tgid curr_pid cpu src_cpu dst_cpu src_node dst_node idle pref_nid |
# src_nr dst_nr src_numa src_pref nr_failed nice_tries env_flags sd_flags p_flags |
# nr_cpus_allowed ret | 11 x u8 flags | pad   (version 1 ends here, 184 bytes)
# version 2: util load vruntime min_vruntime nr_migrations src_util dst_util group_total |
# group_faults[4] | sd_level span_weight group_id | has_group | 3 pad
C_FORMAT_V1 = "<II" + "QqqQQQ" + "4Q" + "10i" + "9I" + "2i" + "11B" + "x"
C_FORMAT = C_FORMAT_V1 + "8Q" + "4Q" + "iIi" + "B" + "3x"
C_NAMES_V1 = [
    "magic",
    "size",
    "ts_ns",
    "delta_ns",
    "imbalance",
    "src_load",
    "dst_load",
    "total_numa_faults",
    "numa_faults_0",
    "numa_faults_1",
    "numa_faults_2",
    "numa_faults_3",
    "pid",
    "tgid",
    "curr_pid",
    "cpu",
    "src_cpu",
    "dst_cpu",
    "src_node",
    "dst_node",
    "idle",
    "numa_preferred_nid",
    "src_nr_running",
    "dst_nr_running",
    "src_nr_numa_running",
    "src_nr_preferred_running",
    "nr_balance_failed",
    "cache_nice_tries",
    "env_flags",
    "sd_flags",
    "p_flags",
    "nr_cpus_allowed",
    "ret",
    "cpu_idle",
    "cpu_not_idle",
    "cpu_newly_idle",
    "buddy_hot",
    "p_running",
    "throttled",
    "sched_delayed",
    "dst_allowed",
    "migration_type",
    "task_hot_after",
    "policy",
]
C_NAMES = C_NAMES_V1 + [
    "util_avg",
    "load_avg",
    "vruntime",
    "cfs_min_vruntime",
    "nr_migrations",
    "src_util",
    "dst_util",
    "group_total_faults",
    "group_faults_0",
    "group_faults_1",
    "group_faults_2",
    "group_faults_3",
    "sd_level",
    "sd_span_weight",
    "numa_group_id",
    "has_numa_group",
]


def pack(version: int = 2, **over) -> bytes:
    """One record; every field gets a distinct default value unless overridden."""
    names, fmt = (C_NAMES, C_FORMAT) if version == 2 else (C_NAMES_V1, C_FORMAT_V1)
    vals = {n: i + 1 for i, n in enumerate(names)}
    vals.update(
        magic=rec.CM_MAGIC if version == 2 else rec.CM_MAGIC_V1,
        size=rec.RECORD_SIZE if version == 2 else rec.RECORD_SIZE_V1,
        delta_ns=-(2**40) - 3,
        imbalance=-5,
        ts_ns=2**63 + 11,
        numa_preferred_nid=-1,
    )
    for k in C_NAMES_V1[-11:]:
        vals[k] = 1 if k != "migration_type" else 3
    vals["policy"] = 5
    if version == 2:
        vals.update(sd_level=-2, has_numa_group=1, group_faults_3=2**64 - 2)
    vals.update(over)
    return struct.pack(fmt, *(vals[n] for n in names))


def test_struct_format_size():
    assert struct.calcsize(C_FORMAT) == rec.RECORD_SIZE == rec.RECORD_DTYPE.itemsize == 296
    assert struct.calcsize(C_FORMAT_V1) == rec.RECORD_SIZE_V1 == rec.RECORD_DTYPE_V1.itemsize == 184


def test_version_1_records_still_decode():
    """The shipped flat-guest streams are CMR1: they decode into the version 2 columns, with
    the fields version 1 lacks at their fill values; a stream may not mix versions."""
    a, b = pack(1), pack(1, pid=77, ret=0)
    df = frame(a, b)
    want = dict(zip(C_NAMES_V1, struct.unpack(C_FORMAT_V1, a), strict=True))
    for n in C_NAMES_V1[2:]:
        assert int(df[n].iloc[0]) == want[n], n
    assert list(df.record_version) == [1, 1] and list(df.sd_level) == [-1, -1]
    assert (df[[c for c in C_NAMES[len(C_NAMES_V1) :] if c != "sd_level"]] == 0).all().all()
    assert int(df.pid[1]) == 77 and int(df.ret[1]) == 0
    assert list(frame(pack()).record_version) == [2]
    with pytest.raises(rec.RecordFormatError, match="record 1 .*magic 0x32524d43"):
        rec.decode(pack(1) + pack(2)[: rec.RECORD_SIZE_V1])
    with pytest.raises(rec.RecordFormatError, match="record 0 has magic 0xdeadbeef"):
        rec.decode(pack(magic=0xDEADBEEF))


def test_version_1_parquet_gains_the_version_2_columns(tmp_path):
    """A can_migrate.parquet written before version 2 reads like a version 2 frame."""
    from data.can_migrate.files import read_records

    old = frame(pack(1), pack(1, pid=9)).drop(columns=[c for c in C_NAMES[len(C_NAMES_V1) :]] + ["record_version"])
    old.to_parquet(tmp_path / "can_migrate.parquet")
    got = read_records(tmp_path / "can_migrate.parquet")
    assert list(got.columns) == rec.frame_columns()
    assert list(got.record_version) == [1, 1] and list(got.sd_level) == [-1, -1] and list(got.pid)[1] == 9


def test_dtype_matches_c_header_offsets(tmp_path):
    """Compile the header with the host compiler and compare offsetof/sizeof of every field."""
    require(shutil.which("cc") is not None, "a C compiler (cc)")
    fields = [n for n in rec.RECORD_DTYPE.names]
    lines = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        f'#include "{HEADER}"',
        "int main(void){",
        'printf("sizeof %zu\\n", sizeof(struct cm_record));',
    ]
    for n in fields:
        lines.append(
            f'printf("{n} %zu %zu\\n", offsetof(struct cm_record, {n}), sizeof(((struct cm_record *)0)->{n}));'
        )
    lines.append("return 0;}")
    (tmp_path / "off.c").write_text("\n".join(lines))
    subprocess.run(["cc", "-o", str(tmp_path / "off"), str(tmp_path / "off.c")], check=True)
    out = subprocess.run([str(tmp_path / "off")], capture_output=True, text=True, check=True).stdout
    got = {line.split()[0]: tuple(map(int, line.split()[1:])) for line in out.splitlines()}
    assert got.pop("sizeof") == (rec.RECORD_SIZE,)
    for n in fields:
        dt, off = rec.RECORD_DTYPE.fields[n][:2]
        assert got[n] == (off, dt.itemsize), n
    assert set(got) == set(fields)  # no C field missing from RECORD_FIELDS


def test_decode_round_trips_every_field():
    a = pack()
    b = pack(pid=4242, ret=0, cpu_idle=0, numa_faults_2=2**64 - 1, src_cpu=-1)
    arr = rec.decode(a + b)
    assert arr.shape == (2,)
    want = dict(zip(C_NAMES, struct.unpack(C_FORMAT, a), strict=False))
    df = rec.records_frame(arr)
    assert "magic" not in df and "_pad" not in df and "numa_faults" not in df
    assert list(df.columns) == C_NAMES[2:] + ["record_version"]
    for n in C_NAMES[2:]:
        assert int(df[n].iloc[0]) == want[n], n
    assert int(df.sd_level[0]) == -2 and int(df.group_faults_3[0]) == 2**64 - 2
    assert (int(df.pid[1]), int(df.ret[1]), int(df.cpu_idle[1])) == (4242, 0, 0)
    assert int(df.numa_faults_2[1]) == 2**64 - 1 and int(df.src_cpu[1]) == -1
    assert set(rec.RECORD_DOCS) == set(rec.RECORD_DTYPE.names) - {"_pad", "_pad2"} | {"record_version"}


def test_truncated_and_misaligned_streams_raise():
    data = pack() + pack()
    with pytest.raises(rec.RecordFormatError, match=r"truncated record: 591 bytes .* 295 stray"):
        rec.decode(data[:-1], "run.bin")
    with pytest.raises(rec.RecordFormatError, match="record 1 .*magic"):
        rec.decode(pack() + pack(magic=0xDEADBEEF))
    assert rec.decode(b"").shape == (0,)


def frame(*records: bytes):
    return rec.records_frame(rec.decode(b"".join(records)))


def test_chen_features_values_filter_and_labels():
    base = dict(
        p_running=0,
        throttled=0,
        dst_allowed=1,
        sched_delayed=0,
        src_node=0,
        dst_node=1,
        numa_preferred_nid=1,
        src_nr_running=5,
        src_nr_preferred_running=2,
        dst_nr_running=1,
        src_load=3000,
        dst_load=500,
        nr_balance_failed=3,
        cache_nice_tries=1,
        total_numa_faults=10,
        numa_faults_0=2,
        numa_faults_1=7,
        cpu_idle=0,
        cpu_not_idle=1,
        cpu_newly_idle=0,
        buddy_hot=0,
        task_hot_after=0,
    )
    df = frame(
        pack(**{**base, "task_hot_after": 1}, delta_ns=100_000, ret=1),  # hot but migrated: forced
        pack(**base, delta_ns=900_000, ret=1),  # cold, migrated
        pack(**{**base, "p_running": 1}, delta_ns=900_000, ret=0),  # running: filtered out
        pack(**{**base, "dst_allowed": 0}, delta_ns=900_000, ret=0),  # affinity: filtered out
        pack(**{**base, "sched_delayed": 1, "migration_type": 0}, delta_ns=1, ret=0),  # kept
    )
    f = feat.chen_features(df)
    assert list(f.columns) == list(feat.CHEN_FEATURES) + ["can_migrate", "forced", "forced_kernel"]
    assert list(f.index) == [0, 1, 4]
    r0 = f.loc[0]
    assert (r0.src_non_pref_nr, r0.delta_hot, r0.same_node, r0.prefer_src, r0.prefer_dst) == (1, 1, 0, 0, 1)
    assert (r0.src_len, r0.src_load, r0.dst_load, r0.dst_len) == (3, 3.0, 0.5, 1)
    assert r0.delta_faults == pytest.approx((7 - 2) / 10)
    assert (r0.extra_fails, r0.cpu_not_idle, r0.cpu_idle) == (1, 1, 0)
    assert list(f.can_migrate) == [1, 1, 0] and list(f.forced) == [1, 0, 0]
    assert list(f.forced_kernel) == [1, 0, 0] and f.loc[1].delta_hot == 0
    assert len(feat.CHEN_FEATURES) == 15 and set(feat.FEATURE_DOCS) == set(feat.EXTENDED_FEATURES)
    assert len(feat.chen_features(df, filter=False)) == 5
    zero_faults = feat.chen_features(frame(pack(**{**base, "total_numa_faults": 0})))
    assert zero_faults.delta_faults.iloc[0] == 5.0  # divides by 1 when there are no faults


def run_bcc_cli(*args, **kw):
    return subprocess.run(
        [sys.executable, "-m", "data.collect", "--bcc", *args], cwd=REPO, capture_output=True, text=True, **kw
    )


def test_capability_message_on_this_kernel(tmp_path):
    cfg, where = bcc.kernel_config()
    require(cfg is not None, "kernel config (/proc/config.gz or /boot/config-*)")
    if cfg.get("CONFIG_KPROBES") == "y":
        assert bcc.kprobe_problem() is None
        return
    r = run_bcc_cli("cpu-pool", "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m data.collect: error: kprobes not available")
    assert "CONFIG_KPROBES is not set" in lines[0] and "can_migrate_task" in lines[0]
    assert not (tmp_path / "o").exists()
    r = run_bcc_cli("--check")
    assert r.returncode == 1 and "kprobes not available" in r.stderr


def test_capability_check_names_bcc_module_and_tools(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda exe: None)
    fatal, notes = bcc.check()
    assert any("missing build tools: clang, bpftool, a C compiler (cc)" in f for f in fatal)
    try:
        import bcc as _real_bcc  # noqa: F401
    except ImportError:
        assert any("bcc not importable" in n for n in notes)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """clang -target bpf against a vmlinux.h from this kernel's BTF; skeleton; loader."""
    tools = [t for t in ("clang", "bpftool", "cc") if shutil.which(t) is None]
    require(
        not tools and Path("/sys/kernel/btf/vmlinux").exists() and Path("/usr/include/bpf/bpf_helpers.h").exists(),
        f"clang, bpftool, cc, libbpf-dev and kernel BTF (missing: {tools})",
    )
    d = tmp_path_factory.mktemp("bpf")
    return d, bcc.build(d)


def test_bpf_program_compiles_co_re(built):
    _, out = built
    elf = out["object"].read_bytes()
    assert elf[:4] == b"\x7fELF" and elf[18] == 247  # e_machine EM_BPF
    for section in (b"kprobe/can_migrate_task", b"kretprobe/can_migrate_task", b".maps", b".BTF.ext"):
        assert section in elf, section
    assert b"can_migrate__open" in out["skeleton"].read_bytes()
    assert out["loader"].stat().st_mode & 0o111


def test_static_loader_for_the_guest(built):
    """The guest has no libbpf: the loader links statically and embeds the BPF object."""
    require(Path("/usr/lib/x86_64-linux-gnu/libbpf.a").exists(), "libbpf-dev (static libbpf.a)")
    from plumbing.initramfs import shared_libs

    exe = bcc.build_static_loader(built[0])
    assert shared_libs(exe) == []
    assert b"can_migrate_task" in exe.read_bytes()  # the object rides inside the skeleton
    r = subprocess.run([str(exe), "--bogus"], capture_output=True, text=True)
    assert r.returncode != 0 and "usage" in r.stderr  # it runs with no shared library at hand


@pytest.mark.root
def test_kernel_verifier_accepts_program(built):
    """Load (verify + CO-RE relocate) without attaching: works even without kprobes."""
    require(is_root(), "root to load BPF programs")
    assert "loaded and verified" in bcc.verify(built[0])


def test_front_end_writes_run_directory(tmp_path):
    """collect_run with a stand-in loader (prints "ready", emits records, stops on SIGINT):
    the run directory has can_migrate.parquet + meta.json like the ftrace collector's."""
    import json

    import pyarrow.parquet as pq

    from data.collect.workloads import WORKLOADS

    payload = tmp_path / "records.raw"
    payload.write_bytes(pack(pid=7, ret=1) + pack(pid=8, ret=0) + pack(pid=9, ret=1))
    fake = tmp_path / "fake_loader"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import signal, sys, time\n"
        "sys.stderr.write('ready\\n'); sys.stderr.flush()\n"
        "stop = []\n"
        "signal.signal(signal.SIGINT, lambda *a: stop.append(1))\n"
        "while not stop: time.sleep(0.01)\n"
        f"sys.stdout.buffer.write(open({str(payload)!r}, 'rb').read())\n"
        'sys.stderr.write(\'{"submitted":3,"ringbuf_full":0,"no_entry":0,"written":3}\\n\')\n'
    )
    fake.chmod(0o755)
    out = tmp_path / "out"
    meta = bcc.collect_run(fake, WORKLOADS["cpu-pool"], out, 0.2, 1, "test")
    run = out / "cpu-pool-r01"
    assert sorted(p.name for p in out.iterdir()) == ["cpu-pool-r01"]
    assert sorted(p.name for p in run.iterdir()) == ["can_migrate.parquet", "meta.json"]
    on_disk = json.loads((run / "meta.json").read_text())
    assert on_disk == meta and meta["collector"] == "bcc" and meta["records"] == 3
    assert meta["ringbuf_lost"] == 0 and meta["category"] == "cpu"
    df = pq.read_table(run / "can_migrate.parquet").to_pandas()
    assert list(df.pid) == [7, 8, 9] and list(df.ret) == [1, 0, 1]
    assert len(feat.chen_features(df, filter=False)) == 3


def test_loader_ready_after_other_messages_in_one_write(tmp_path):
    """libbpf messages and "ready" can arrive in one pipe read: "ready" must still be seen
    (a buffered readline() would keep it in its buffer, out of select()'s sight)."""
    fake = tmp_path / "fake_loader"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import os, signal, time\n"
        "os.write(2, b'libbpf: some warning\\nready\\n')\n"
        "signal.signal(signal.SIGINT, lambda *a: os._exit(0))\n"
        "time.sleep(30)\n"
    )
    fake.chmod(0o755)
    proc = bcc._start_loader(fake, tmp_path / "records.bin", timeout=5)
    try:
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.communicate()


def test_extended_features_from_version_2_fields():
    """The domain kind comes from sd_flags; the group term weighs the numa_group's faults; the
    vruntime lag is signed; a version 1 record gives zeros beyond its domain kind."""
    smt, mc, numa = 0x80 | 0x100, 0x100, 0x2000
    base = dict(p_running=0, throttled=0, dst_allowed=1, sched_delayed=0, src_node=0, dst_node=1)
    df = frame(
        pack(
            **base,
            sd_flags=smt,
            group_total_faults=8,
            group_faults_0=6,
            group_faults_1=2,
            vruntime=5,
            cfs_min_vruntime=2_000_005,
        ),
        pack(**base, sd_flags=mc, util_avg=512, src_util=1024, dst_util=0, has_numa_group=0),
        pack(**base, sd_flags=numa, vruntime=3_000_000, cfs_min_vruntime=1_000_000),
    )
    x = feat.extended_features(df)
    assert list(x.columns) == list(feat.SD_LEVEL_FEATURES + feat.EXTRA_FEATURES)
    assert x[list(feat.SD_LEVEL_FEATURES)].to_numpy().tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert x.group_delta_faults[0] == pytest.approx((2 - 6) / 8) and x.vruntime_lag[0] == pytest.approx(-2.0)
    assert (x.util_avg[1], x.src_util[1], x.dst_util[1], x.has_numa_group[1]) == (0.5, 1.0, 0.0, 0.0)
    assert x.vruntime_lag[2] == pytest.approx(2.0)
    v1 = feat.extended_features(frame(pack(1, **base, sd_flags=mc)))
    assert v1.sd_llc[0] == 1 and (v1[list(feat.EXTRA_FEATURES)] == 0).all().all()
    for name, inputs in feat.FEATURE_SETS.items():
        assert set(inputs) <= set(feat.FEATURE_DOCS), name
