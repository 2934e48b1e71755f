"""Property tests (hypothesis) for the two round trips that read bytes a user or a kernel hands us.

* The ftrace line grammar (data/parse): traces of generated valid lines, in every format and for
  every event the parser types, parse with both engines to exactly the fields they were printed
  from, and every line is accounted for once.
* The can_migrate record (data/can_migrate/record.py): struct bytes -> decode -> records_frame ->
  to_records gives the same bytes back; damaged streams are refused with RecordFormatError; version
  1 streams are upgraded; records survive write_records_parquet + read_records.

Examples are derandomized (the same ones on every run: CI is reproducible) and bounded so the
file takes a few seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data.can_migrate import record as rec
from data.can_migrate.files import read_records, write_records_parquet
from data.parse import native
from data.parse import tracefile as parse
from data.parse.schema import EVENT_SCHEMA
from tests.conftest import require
from tests.ftrace_lines import KERNEL_BODY, PLUGIN_BODY, body, kernel_line, tracecmd_line

SETTINGS = dict(derandomize=True, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

INT16, INT32 = (1 << 15) - 1, (1 << 31) - 1


# ----- the line grammar ------------------------------------------------------------------------
# Pieces that make task names hard: the grammar's own delimiters and keys, digits, dashes, brackets,
# bytes that are not UTF-8 (each becomes one U+FFFD), multi-byte UTF-8, tabs and carriage returns.
COMM_PIECES = [
    b" ",
    b"  ",
    b"-",
    b"-1",
    b"-12 ",
    b"=",
    b":",
    b":1",
    b"[",
    b"]",
    b"[000]",
    b"[1] ",
    b"(",
    b")",
    b"(12)",
    b"==>",
    b" ==> ",
    b"0.000000:",
    b"1.000000: ",
    b"-1 [0] ",
    b"(-------) ",
    b"d..2. ",
    b"sched_waking: ",
    b"[LOST 1 EVENTS]",
    b".",
    b"1",
    b"42",
    b"#",
    b"a",
    b"Z",
    b"kworker/0:1",
    b"<idle>",
    b"comm=",
    b" pid=1",
    b" prio=1",
    b" prev_pid=1",
    b" next_pid=",
    b" child_comm=",
    b" target_cpu=",
    b"CPU:1",
    b" R ",
    b"\t",
    b"\r",
    b"\xff",
    b"\xc3",
    b"\xe2\x82\xac",
    b"\xe2\x82",
    b"\xf0\x9f\x98\x80",
]


@st.composite
def comms(draw) -> bytes:
    """A task name as the kernel prints it: up to 15 bytes (TASK_COMM_LEN 16), no NUL, no newline
    (a newline splits the line: documented as unsupported)."""
    if draw(st.booleans()):
        raw = draw(st.binary(max_size=15))
    else:
        raw = b"".join(draw(st.lists(st.sampled_from(COMM_PIECES), max_size=8)))
    return raw.replace(b"\0", b"x").replace(b"\n", b"x")[:15]


def text(b: bytes) -> str:
    """What the parser must make of printed bytes: UTF-8, one U+FFFD per byte that is not part of valid UTF-8
    (written independently of the parsers' error handler: surrogateescape maps byte by byte)."""
    s = b.decode("utf-8", "surrogateescape")
    return "".join("\ufffd" if "\udc80" <= ch <= "\udcff" else ch for ch in s)


pids = st.integers(0, INT32)
prios = st.integers(-(1 << 15), INT16)
cpus = st.integers(0, INT16)
# prev_state as the kernel prints it: state letters joined by "|", "+" when preempted
prev_states = st.builds(
    lambda letters, plus: b"|".join(letters) + (b"+" if plus else b""),
    st.lists(st.sampled_from([b"R", b"S", b"D", b"T", b"t", b"X", b"Z", b"P", b"I", b"K", b"W", b"N"]), min_size=1),
    st.booleans(),
)


# irq-info flags: irqs-off, need-resched, hardirq/softirq, preempt depth, migrate-disable
def _flags(a, b, c, d, e, five):
    return bytes([a, b, c, d] + ([e] if five else []))


flag_strings = st.builds(
    _flags,
    *(st.sampled_from(list(s)) for s in (b"dDX.", b"NnpPb.", b"ZzHhs.", b"0123456789abcdef.", b"0123456789abcdef.")),
    st.booleans(),
)


@st.composite
def event_fields(draw, kind: str) -> tuple[dict, dict]:
    """(values to print, expected columns) of one event's fields."""
    if kind == "sched_switch":
        f = dict(
            prev_comm=draw(comms()),
            prev_pid=draw(pids),
            prev_prio=draw(prios),
            prev_state=draw(prev_states),
            next_comm=draw(comms()),
            next_pid=draw(pids),
            next_prio=draw(prios),
        )
    elif kind in ("sched_waking", "sched_wakeup", "sched_wakeup_new"):
        f = dict(comm=draw(comms()), pid=draw(pids), prio=draw(prios), target_cpu=draw(cpus))
    elif kind == "sched_migrate_task":
        f = dict(comm=draw(comms()), pid=draw(pids), prio=draw(prios), orig_cpu=draw(cpus), dest_cpu=draw(cpus))
    elif kind == "sched_process_fork":
        f = dict(parent_comm=draw(comms()), parent_pid=draw(pids), child_comm=draw(comms()), child_pid=draw(pids))
    else:
        f = dict(comm=draw(comms()), pid=draw(pids), prio=draw(prios), group_dead=draw(st.booleans()))
    expected = {k: text(v) if isinstance(v, bytes) else v for k, v in f.items()}
    return f, expected


KINDS = tuple(KERNEL_BODY)


@st.composite
def event_lines(draw) -> tuple[bytes, dict]:
    """One event line in the kernel's tracefs format or trace-cmd report's, and its row."""
    kind = draw(st.sampled_from(KINDS))
    comm, pid, cpu = draw(comms()), draw(pids), draw(st.integers(0, 4095))
    fmt = draw(st.sampled_from(["kernel", "tracecmd", "tracecmd_ns"]))
    plugin = fmt != "kernel" and kind in PLUGIN_BODY and draw(st.booleans())
    f, expected = draw(event_fields(kind))
    if plugin:
        # trace-cmd pads the event name with spaces and the plugin formats start with the comm:
        # its leading spaces cannot be told from the padding (like the header comm's)
        first = "prev_comm" if kind == "sched_switch" else "comm"
        f[first] = f[first].lstrip(b" ")
        if kind == "sched_switch":
            # documented ambiguity: a prev comm holding ":PID [PRIO] STATE ==> " (PID the header
            # pid) reads as the whole prev part; the kernel's own format has none
            f[first] = f[first].replace(b" ==> ", b" ==>_")
        expected[first] = text(f[first])
    if plugin and kind == "sched_switch":
        f["prev_pid"] = expected["prev_pid"] = pid  # the switch runs in prev's context
    if fmt == "kernel":
        ts = draw(st.integers(0, 9_000_000_000)) * 10**9 + draw(st.integers(0, 999_999)) * 1000
    else:
        secs = draw(st.integers(0, 9_000_000_000))
        ts = secs * 10**9 + (
            draw(st.integers(0, 10**9 - 1)) if fmt == "tracecmd_ns" else draw(st.integers(0, 999_999)) * 1000
        )
    fields = body(kind, f, plugin)
    if kind == "sched_process_exit" and draw(st.booleans()):  # older kernels: no group_dead
        fields = fields[: fields.rindex(b" group_dead=")]
        expected.pop("group_dead")
    if kind in ("sched_waking", "sched_wakeup", "sched_wakeup_new") and not plugin and draw(st.booleans()):
        at = fields.rindex(b" target_cpu=")  # older kernels print success=1 before it
        fields = fields[:at] + b" success=1" + fields[at:]
    if kind in ("sched_wakeup", "sched_wakeup_new") and plugin and draw(st.booleans()):
        fields = fields[: fields.rindex(b" CPU:")]  # older plugin: no target CPU
        expected.pop("target_cpu")
    row = {"event": kind, "common_comm": text(comm.lstrip(b" ")), "common_pid": pid, "cpu": cpu, "ts": ts, **expected}
    if fmt == "kernel":
        flags = draw(st.none() | flag_strings)
        tgid = draw(st.sampled_from(["off", None, 0]))
        if tgid == 0:
            tgid = draw(pids)
        line = kernel_line(comm, pid, cpu, ts, kind, fields, flags=flags, tgid=tgid)
        if flags is not None:
            row["flags"] = flags.decode()
    else:
        line = tracecmd_line(comm, pid, cpu, ts, kind, fields, nsec=fmt == "tracecmd_ns")
    return line, row


@st.composite
def lost_lines(draw) -> tuple[bytes, int, int | None]:
    cpu = draw(cpus)
    n = draw(st.integers(0, 10**18 - 1))
    form = draw(st.sampled_from(range(5)))
    line = [
        b"CPU:%d [LOST %d EVENTS]" % (cpu, n),
        b"CPU:%d [%d EVENTS DROPPED]" % (cpu, n),
        b"CPU:%d [LOST EVENTS]" % cpu,
        b"CPU:%d [EVENTS DROPPED]" % cpu,
        b"##### CPU %d buffer started ####" % cpu,
    ][form]
    return line, cpu, n if form < 2 else None


comment_lines = st.one_of(
    st.binary(max_size=40).map(lambda b: b"#" + b.replace(b"\n", b" ")),
    st.sampled_from([b"", b"   ", b"cpus=2", b"version = 6", b"CPU 0 is empty", b"CPU:3 [SUBBUFFER START]"]),
    st.text(" \t", max_size=4).map(str.encode),
)


@st.composite
def skipped_lines(draw) -> tuple[bytes, str]:
    """Lines the parser must skip, with the reason it must count."""
    comm, pid = draw(comms()), draw(pids)
    reason = draw(st.sampled_from(["unknown_event", "malformed_fields", "bad_number"]))
    if reason == "unknown_event":
        name = draw(st.sampled_from([b"sched_stat_runtime", b"irq_handler_entry", b"sched_switchx", b"lost"]))
        return kernel_line(comm, pid, 0, 10**9, name.decode(), b"x=1"), reason
    if reason == "malformed_fields":
        return kernel_line(comm, pid, 0, 10**9, draw(st.sampled_from(KINDS)), b"?"), reason
    big = draw(st.integers(INT32 + 1, 10**18 - 1))
    return kernel_line(comm, pid, 0, 10**9, "sched_waking", b"comm=a pid=%d prio=1 target_cpu=000" % big), reason


lines_of_trace = st.lists(
    st.one_of(
        event_lines().map(lambda t: ("event", t)),
        event_lines().map(lambda t: ("event", t)),
        lost_lines().map(lambda t: ("lost", t)),
        comment_lines.map(lambda t: ("comment", t)),
        skipped_lines().map(lambda t: ("skip", t)),
    ),
    min_size=1,
    max_size=12,
)


def expected_of(items) -> tuple[bytes, list[dict], dict]:
    lines, rows, counts = [], [], {"comment": 0, "event": 0, "lost": 0}
    skipped = {"unknown_event": 0, "malformed_header": 0, "malformed_fields": 0, "bad_number": 0}
    prev_ts = -1
    for what, item in items:
        n = len(lines) + 1
        if what == "event":
            line, row = item
            rows.append({**row, "line": n})
            prev_ts = row["ts"]
            counts["event"] += 1
        elif what == "lost":
            line, cpu, count = item
            rows.append({"event": "lost", "cpu": cpu, "ts": prev_ts, "lost_count": count, "line": n})
            counts["lost"] += 1
        elif what == "comment":
            line = item
            counts["comment"] += 1
        else:
            line, reason = item
            skipped[reason] += 1
        lines.append(line)
    return b"".join(line + b"\n" for line in lines), rows, {**counts, "skipped": skipped}


@pytest.fixture(scope="module")
def c_core():
    require(native.CORE.load() is not None, f"C compiler for the fast parser: {native.CORE.reason}")


def _check_trace(items, chunk_bytes: int = parse.CHUNK_BYTES, last_newline: bool = True) -> None:
    data, rows, counts = expected_of(items)
    if not last_newline and not data.endswith(b"\n\n") and data != b"\n":  # (an empty last line would go)
        data = data[:-1]
    for engine in ("c", "python"):
        table, stats = parse.parse_bytes(data, engine=engine, chunk_bytes=chunk_bytes)
        assert table.schema == EVENT_SCHEMA
        got = [{k: v for k, v in r.items() if v is not None} for r in table.to_pylist()]
        want = [{k: v for k, v in r.items() if v is not None} for r in rows]
        assert got == want, (engine, data)
        assert (stats.comment_lines, stats.events, stats.lost_markers, stats.skipped) == (
            counts["comment"],
            counts["event"],
            counts["lost"],
            counts["skipped"],
        ), (engine, data)
        assert stats.total_lines == len(items)
        stats.check()


@settings(max_examples=500, **SETTINGS)
@given(
    items=lines_of_trace,
    chunk_bytes=st.sampled_from([parse.CHUNK_BYTES]) | st.integers(1, 400),
    last_newline=st.booleans(),
)
def test_generated_lines_parse_to_their_fields(c_core, items, chunk_bytes, last_newline):
    """Every field as printed, with both engines, whatever the chunking and whether the last
    line ends; the outcome counts add up to the lines."""
    _check_trace(items, chunk_bytes, last_newline)


# ----- the can_migrate record ------------------------------------------------------------------
def _values(dtype: np.dtype, shape: tuple) -> st.SearchStrategy:
    info = np.iinfo(dtype)
    one = st.integers(int(info.min), int(info.max))
    return st.lists(one, min_size=shape[0], max_size=shape[0]) if shape else one


@st.composite
def record_arrays(draw, version: int = 2) -> np.ndarray:
    """Records with every field anywhere in its type; magic and size as the loader writes them,
    padding zero (the loader zeroes the struct)."""
    fields = rec.RECORD_FIELDS if version == 2 else rec.RECORD_FIELDS[: len(rec.RECORD_DTYPE_V1.names)]
    dtype = rec.RECORD_DTYPE if version == 2 else rec.RECORD_DTYPE_V1
    n = draw(st.integers(0, 4))
    arr = np.zeros(n, dtype)
    for i in range(n):
        for name, typ, shape, _ in fields:
            if name not in rec._PADDING:
                arr[name][i] = draw(_values(np.dtype(typ), shape))
    arr["magic"] = rec.CM_MAGIC if version == 2 else rec.CM_MAGIC_V1
    arr["size"] = rec.RECORD_SIZE if version == 2 else rec.RECORD_SIZE_V1
    return arr


@settings(max_examples=100, **SETTINGS)
@given(arr=record_arrays())
def test_record_bytes_round_trip(arr):
    buf = arr.tobytes()
    decoded = rec.decode(buf)
    assert decoded.tobytes() == buf
    frame = rec.records_frame(decoded)
    assert list(frame.columns) == rec.frame_columns()
    assert (frame["record_version"] == 2).all()
    assert rec.to_records(frame).tobytes() == buf


@settings(max_examples=60, **SETTINGS)
@given(arr=record_arrays(version=1))
def test_version_1_records_upgrade(arr):
    decoded = rec.decode(arr.tobytes())
    assert len(decoded) == len(arr) and (rec.record_version(decoded) == 1).all()
    for name in rec.RECORD_DTYPE_V1.names:
        assert decoded[name].tobytes() == arr[name].tobytes(), name
    for name in rec.RECORD_DTYPE.names[len(rec.RECORD_DTYPE_V1.names) :]:
        assert (decoded[name] == rec.V1_FILL.get(name, 0)).all(), name
    frame = rec.records_frame(decoded)
    assert (frame["record_version"] == 1).all()
    # back to bytes: today's (version 2) layout, with version 1's fields unchanged
    again = rec.to_records(frame)
    assert (again["magic"] == rec.CM_MAGIC).all()
    for name in rec.RECORD_DTYPE_V1.names:
        if name not in ("magic", "size"):
            assert again[name].tobytes() == arr[name].tobytes(), name


@settings(max_examples=100, **SETTINGS)
@given(arr=record_arrays().filter(len), data=st.data())
def test_damaged_record_streams_are_refused(arr, data):
    buf = arr.tobytes()
    cut = data.draw(st.integers(1, len(buf) - 1).filter(lambda k: k % rec.RECORD_SIZE), label="cut")
    with pytest.raises(rec.RecordFormatError, match="truncated") as e:
        rec.decode(buf[:cut])
    assert "\n" not in str(e.value)
    bad = bytearray(buf)
    at = data.draw(st.integers(0, len(arr) - 1), label="record") * rec.RECORD_SIZE
    magic = data.draw(st.integers(0, (1 << 32) - 1).filter(lambda m: m != rec.CM_MAGIC), label="magic")
    bad[at : at + 4] = magic.to_bytes(4, "little")
    with pytest.raises(rec.RecordFormatError) as e:
        rec.decode(bytes(bad))
    assert "\n" not in str(e.value)


@settings(max_examples=8, **SETTINGS)
@given(arr=record_arrays())
def test_records_files_round_trip(tmp_path_factory, arr):
    """The loader's bytes survive can_migrate.parquet (and the raw .bin / .bin.zst files)."""
    run = tmp_path_factory.mktemp("run")
    write_records_parquet(rec.records_frame(rec.decode(arr.tobytes())), run / "can_migrate.parquet")
    (run / "can_migrate.bin").write_bytes(arr.tobytes())
    (run / "can_migrate.bin.zst").write_bytes(zstandard.ZstdCompressor().compress(arr.tobytes()))
    for name in ("can_migrate.parquet", "can_migrate.bin", "can_migrate.bin.zst"):
        frame = read_records(run / name)
        assert list(frame.columns) == rec.frame_columns(), name
        assert rec.to_records(frame).tobytes() == arr.tobytes(), name
