"""Parser tests that need no root: formats, hostile task names, accounting, I/O, CLI.

Inputs here are synthetic lines (tests/ftrace_lines.py) or shipped real traces; the tests on
freshly collected real traces are in test_parse_tracefs.py.
"""

import gzip
import lzma
import random
import re
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from data import BUILD_DIR, SCHED_EVENTS
from data.parse import native
from data.parse import tracefile as parse
from data.parse.schema import EVENT_SCHEMA, SKIP_REASONS
from data.parse.tracefile import TraceFormatError
from plumbing import shared_lib
from tests.conftest import REPO, require
from tests.ftrace_lines import body, kernel_line, tracecmd_line

ENGINES = ("c", "python")
HEADER = b"""# tracer: nop
#
# entries-in-buffer/entries-written: 9/9   #P:2
#
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
"""


def rows(table: pa.Table) -> list[dict]:
    return [{k: v for k, v in r.items() if v is not None} for r in table.to_pylist()]


def parse_both(text: bytes, **kw):
    """Parse with both engines, assert identical results, return (table, stats)."""
    c_table, c_stats = parse.parse_bytes(text, engine="c", **kw)
    p_table, p_stats = parse.parse_bytes(text, engine="python", **kw)
    assert c_table.schema == EVENT_SCHEMA
    assert c_table.equals(p_table)
    assert {**c_stats.to_dict(), "engine": ""} == {**p_stats.to_dict(), "engine": ""}
    c_stats.check()
    return c_table, c_stats


@pytest.fixture(scope="module", autouse=True)
def c_core():
    require(native.CORE.load() is not None, f"C compiler for the fast parser: {native.CORE.reason}")


# ----- formats --------------------------------------------------------------------------------
KERNEL_6_18 = b"""\
            bash-1864    [000] d..2.    63.408559: sched_switch: prev_comm=bash prev_pid=1864 prev_prio=120 prev_state=R ==> next_comm=apt-get next_pid=1855 next_prio=120
            bash-1866    [001] dNs5.    63.409581: sched_wakeup: comm=rcu_preempt pid=15 prio=120 target_cpu=000
     migration/0-18      [000] d..3.    63.412648: sched_migrate_task: comm=bash pid=1867 prio=120 orig_cpu=0 dest_cpu=1
            bash-1864    [000] .....    63.402228: sched_process_fork: comm=bash pid=1864 child_comm=bash child_pid=1866
             seq-1867    [001] .....    63.419847: sched_process_exit: comm=seq pid=1867 prio=120 group_dead=true
          <idle>-0       [001] dNh4.    63.420000: sched_waking: comm=kworker/1:1 pid=71 prio=-1 target_cpu=001
            bash-1864    [000] d..2.    63.420001: sched_wakeup_new: comm=bash pid=1868 prio=120 target_cpu=001
"""


def test_kernel_6_18_lines():
    table, stats = parse_both(HEADER + KERNEL_6_18)
    r = rows(table)
    common = {"cpu": 0, "common_comm": "bash", "common_pid": 1864, "flags": "d..2."}
    assert r[0] == {
        **common,
        "ts": 63_408_559_000,
        "event": "sched_switch",
        "prev_comm": "bash",
        "prev_pid": 1864,
        "prev_prio": 120,
        "prev_state": "R",
        "next_comm": "apt-get",
        "next_pid": 1855,
        "next_prio": 120,
        "line": 7,
    }
    assert r[1] == {
        "ts": 63_409_581_000,
        "cpu": 1,
        "event": "sched_wakeup",
        "common_comm": "bash",
        "common_pid": 1866,
        "flags": "dNs5.",
        "comm": "rcu_preempt",
        "pid": 15,
        "prio": 120,
        "target_cpu": 0,
        "line": 8,
    }
    assert r[2]["common_comm"] == "migration/0" and r[2]["common_pid"] == 18
    assert (r[2]["comm"], r[2]["pid"], r[2]["orig_cpu"], r[2]["dest_cpu"]) == ("bash", 1867, 0, 1)
    assert (r[3]["parent_comm"], r[3]["parent_pid"], r[3]["child_comm"], r[3]["child_pid"]) == (
        "bash",
        1864,
        "bash",
        1866,
    )
    assert (r[4]["comm"], r[4]["pid"], r[4]["prio"], r[4]["group_dead"]) == ("seq", 1867, 120, True)
    assert r[5]["common_comm"] == "<idle>" and r[5]["prio"] == -1 and r[5]["comm"] == "kworker/1:1"
    assert r[6]["event"] == "sched_wakeup_new" and r[6]["target_cpu"] == 1
    assert stats.events == 7 and stats.comment_lines == 6 and stats.total_lines == 13


def test_timestamps_are_exact_integers():
    lines = [
        b"  a-1 [000] ..... 18446744.073709: sched_waking: comm=a pid=1 prio=1 target_cpu=000",
        b"  a-1 [000] ..... 1.000000001: sched_waking: comm=a pid=1 prio=1 target_cpu=000",
        b"  a-1 [000]   123456.999999999: sched_waking: comm=a pid=1 prio=1 target_cpu=000",
    ]
    table, _ = parse_both(b"\n".join(lines))
    assert table.column("ts").to_pylist() == [18_446_744_073_709_000, 1_000_000_001, 123_456_999_999_999]
    assert table.column("flags").to_pylist() == [".....", ".....", None]


def test_tgid_and_trace_cmd_and_older_kernel_variants():
    sw = dict(
        prev_comm=b"bash", prev_pid=10, prev_prio=120, prev_state=b"S", next_comm=b"sh", next_pid=11, next_prio=120
    )
    wk = dict(comm=b"sh", pid=11, prio=120, target_cpu=1)
    lines = [
        b"version = 6",
        b"cpus=2",
        b"CPU 0 is empty",
        b"CPU:1 [SUBBUFFER START]",
        kernel_line(b"bash", 10, 0, 5_000_001_000, "sched_switch", body("sched_switch", sw), tgid=10),
        kernel_line(b"bash", 10, 0, 5_000_002_000, "sched_switch", body("sched_switch", sw), tgid=None),
        kernel_line(b"bash", 10, 0, 5_000_003_000, "sched_switch", body("sched_switch", sw), flags=None),
        tracecmd_line(b"bash", 10, 1, 5_000_004_000, "sched_switch", body("sched_switch", sw)),
        tracecmd_line(b"bash", 10, 1, 5_000_005_123, "sched_switch", body("sched_switch", sw, plugin=True), nsec=True),
        tracecmd_line(b"bash", 10, 1, 5_000_006_000, "sched_wakeup", body("sched_wakeup", wk, plugin=True)),
        tracecmd_line(b"bash", 10, 1, 5_000_007_000, "sched_wakeup", b"sh:11 [120] success=1"),
        # Debian 6.1 / older kernels: success=, exit without group_dead, extra migrate fields.
        kernel_line(b"bash", 10, 0, 5_000_008_000, "sched_wakeup", b"comm=sh pid=11 prio=120 success=1 target_cpu=001"),
        kernel_line(b"sh", 11, 0, 5_000_009_000, "sched_process_exit", b"comm=sh pid=11 prio=120"),
        kernel_line(
            b"m/0",
            9,
            0,
            5_000_010_000,
            "sched_migrate_task",
            b"comm=sh pid=11 prio=120 orig_cpu=0 dest_cpu=1 running=1",
        ),
        b"CPU:1 [7 EVENTS DROPPED]",
        b"CPU:0 [EVENTS DROPPED]",
    ]
    table, stats = parse_both(b"\n".join(lines) + b"\n")
    r = rows(table)
    switch = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in sw.items()}
    for i in range(5):
        assert {k: r[i][k] for k in switch} == switch, i
        assert r[i]["common_comm"] == "bash" and r[i]["common_pid"] == 10
    assert [x["ts"] for x in r[:5]] == [5_000_001_000, 5_000_002_000, 5_000_003_000, 5_000_004_000, 5_000_005_123]
    assert "flags" not in r[2] and "flags" not in r[3]
    assert (r[5]["comm"], r[5]["pid"], r[5]["prio"], r[5]["target_cpu"]) == ("sh", 11, 120, 1)
    assert "target_cpu" not in r[6] and r[6]["comm"] == "sh"
    assert r[7]["target_cpu"] == 1 and r[7]["pid"] == 11
    assert r[8]["event"] == "sched_process_exit" and "group_dead" not in r[8]
    assert (r[9]["orig_cpu"], r[9]["dest_cpu"]) == (0, 1)
    assert [(x["event"], x["cpu"], x.get("lost_count"), x["ts"]) for x in r[10:]] == [
        ("lost", 1, 7, 5_000_010_000),
        ("lost", 0, None, 5_000_010_000),
    ]
    assert stats.comment_lines == 4 and stats.events == 10 and stats.lost_markers == 2
    assert stats.lost_events == 7


# ----- hostile task names ----------------------------------------------------------------------
NASTY = b" -[]=:>#()0123456789abcSRD|+_.,/" + b"\xc3\xa9"


def random_comm(rng: random.Random) -> bytes:
    pieces = [
        b"-1",
        b" [000] ",
        b"==>",
        b" pid=1",
        b" prio=2",
        b"=",
        b" ==> next_comm=",
        b":12 [3] S ==> ",
        b" child_pid=5",
        b" target_cpu=001",
        b" group_dead=true",
        b"12.345678: ",
        b"(  12) ",
        b"#",
    ]
    out, target = b"", rng.randint(0, 15)
    while len(out) < target:
        out += rng.choice(pieces) if rng.random() < 0.3 else bytes([rng.choice(NASTY)])
    out = out[:15]
    return out.decode("utf-8", "ignore").encode()  # whole UTF-8 characters only


def random_event(rng: random.Random, plugin: bool):
    comms = [random_comm(rng) for _ in range(2)]
    # Plugin-format pids have >= 4 digits: with shorter ones a crafted name can be ambiguous.
    pids = [rng.randint(1000 if plugin else 0, 4_000_000) for _ in range(2)]
    prio = rng.choice([-1, 0, 98, 120, 139])
    event = rng.choice(["sched_switch", "sched_wakeup", "sched_wakeup_new"] if plugin else list(SCHED_EVENTS))
    if event == "sched_switch":
        f = dict(
            prev_comm=comms[0],
            prev_pid=pids[0],
            prev_prio=prio,
            prev_state=rng.choice([b"R", b"R+", b"S", b"D|K", b"I"]),
            next_comm=comms[1],
            next_pid=pids[1],
            next_prio=120,
        )
    elif event == "sched_migrate_task":
        f = dict(comm=comms[0], pid=pids[0], prio=prio, orig_cpu=rng.randint(0, 300), dest_cpu=rng.randint(0, 300))
    elif event == "sched_process_fork":
        f = dict(parent_comm=comms[0], parent_pid=pids[0], child_comm=comms[1], child_pid=pids[1])
    elif event == "sched_process_exit":
        f = dict(comm=comms[0], pid=pids[0], prio=prio, group_dead=rng.random() < 0.5)
    else:
        f = dict(comm=comms[0], pid=pids[0], prio=prio, target_cpu=rng.randint(0, 300))
    return event, f


def test_random_hostile_names_parse_exactly():
    """Random names built from the pieces that could fool a parser, in every layout."""
    rng = random.Random(1234)
    lines, expected = [], []
    for i in range(3000):
        layout = rng.choice(["trace", "tgid", "noflags", "trace-cmd", "plugin"])
        event, f = random_event(rng, plugin=layout == "plugin")
        cur = f.get("prev_pid", f.get("parent_pid", f.get("pid")))
        header_comm = f.get("prev_comm", f.get("parent_comm", f.get("comm")))
        text = body(event, f, plugin=layout == "plugin")
        ts = 1_000_000_000 + i * 1000
        if layout in ("trace-cmd", "plugin"):
            lines.append(tracecmd_line(header_comm, cur, i % 4, ts, event, text))
        else:
            lines.append(
                kernel_line(
                    header_comm,
                    cur,
                    i % 4,
                    ts,
                    event,
                    text,
                    flags=None if layout == "noflags" else b"dNh2.",
                    tgid=rng.randint(1, 10**6) if layout == "tgid" else "off",
                )
            )
        want = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.items()}
        if layout == "plugin":  # the fields start with a name: its leading spaces are padding
            first = "prev_comm" if event == "sched_switch" else "comm"
            want[first] = want[first].lstrip(" ")
        want.update(event=event, ts=ts, common_pid=cur, common_comm=header_comm.lstrip(b" ").decode())
        expected.append(want)
    table, stats = parse_both(b"\n".join(lines) + b"\n")
    assert stats.events == len(lines), stats.summary()
    for got, want in zip(rows(table), expected, strict=False):
        assert {k: got.get(k) for k in want} == want


def test_mutated_lines_agree():
    """Valid lines with random bytes deleted, inserted or replaced: whatever each becomes
    (event, skip, comment, lost marker), the C core and the reference agree on it."""
    rng = random.Random(99)
    alphabet = b" -[]():=>#.0123456789CPULOSTEVNabcdefgimnoprstuvw_\xff\xc3\xa9\t\r"
    base = KERNEL_6_18.splitlines() + [
        b"# comment",
        b"CPU:1 [LOST 12 EVENTS]",
        b"##### CPU 1 buffer started ####",
        b"CPU:0 [7 EVENTS DROPPED]",
        kernel_line(b"x", 2147483647, 0, 10**9, "sched_waking", b"comm=x pid=2147483647 prio=32767 target_cpu=000"),
        tracecmd_line(b"a:1 [2]", 1234, 0, 10**9, "sched_switch", b"a:1 [2]:1234 [120] S ==> b:5 [1]"),
    ]
    lines = []
    for _ in range(6000):
        line = bytearray(rng.choice(base))
        for _ in range(rng.randint(1, 2)):
            i = rng.randrange(len(line) + 1)
            op = rng.random()
            if op < 0.3 and i < len(line):
                del line[i]
            elif op < 0.6:
                line.insert(i, rng.choice(alphabet))
            elif i < len(line):
                line[i] = rng.choice(alphabet)
        lines.append(bytes(line))
    _, stats = parse_both(b"\n".join(lines))
    assert stats.events > 500 and stats.lost_markers and all(stats.skipped.values()), stats.summary()


def test_mixed_hostile_file_accounting(tmp_path):
    """Every kind of line at once; the count of each outcome is known exactly."""
    sw = body(
        "sched_switch",
        dict(
            prev_comm=b"a b-[1] ==> x=y",
            prev_pid=7,
            prev_prio=120,
            prev_state=b"R+",
            next_comm=b"==> next_comm=",
            next_pid=8,
            next_prio=-1,
        ),
    )
    text = b"\n".join(
        [
            b"# tracer: nop",
            b"#",
            b"",
            b"   ",  # 4 comments
            kernel_line(b"a b-[1] ==> x=y", 7, 1, 2_000_000_000, "sched_switch", sw),  # event
            b"CPU:1 [LOST 123 EVENTS]",
            b"CPU:0 [LOST EVENTS]",
            b"##### CPU 1 buffer started ####",  # 3 lost
            kernel_line(b"x", 1, 0, 2_000_000_100, "irq_handler_entry", b"irq=1 name=eth0"),  # unknown
            b"          <idle>-0     [000] d..2.  2.000001: do_idle <-cpu_startup_entry",  # unknown
            kernel_line(b"x", 1, 0, 2_000_000_200, "sched_switch", b"prev_comm=x garbage"),  # malformed fields
            kernel_line(b"x", 1, 0, 2_000_000_300, "sched_wakeup", b"comm=x pid=1 prio=1"),  # malformed fields
            b"garbage line - [000] not a header",
            b"x-12 [000] 1.23: y: z",  # 2 malformed header
            kernel_line(
                b"x", 1, 0, 2_000_000_400, "sched_wakeup", b"comm=x pid=99999999999 prio=1 target_cpu=000"
            ),  # bad
            kernel_line(b"x", 1, 70000, 2_000_000_500, "sched_wakeup", b"comm=x pid=1 prio=1 target_cpu=000"),  # bad
            kernel_line(
                b"bad\xff\xfe",
                3,
                0,
                2_000_000_600,
                "sched_process_exit",
                b"comm=bad\xff\xfe pid=3 prio=120 group_dead=false",
            ),  # event
            # a comm with a newline splits its line in two: both halves skipped, nothing misread
            kernel_line(
                b"nl",
                4,
                0,
                2_000_000_700,
                "sched_switch",
                body(
                    "sched_switch",
                    dict(
                        prev_comm=b"a\nb",
                        prev_pid=4,
                        prev_prio=1,
                        prev_state=b"S",
                        next_comm=b"c",
                        next_pid=5,
                        next_prio=1,
                    ),
                ),
            ),
            kernel_line(b"tail", 9, 1, 2_000_000_800, "sched_waking", b"comm=t pid=9 prio=1 target_cpu=001"),  # event
        ]
    )  # no newline at the end
    path = tmp_path / "mixed.txt"
    path.write_bytes(text)
    for engine in ENGINES:
        table, stats = parse.parse_file(path, engine=engine)
        assert stats.total_lines == 20
        assert (stats.comment_lines, stats.events, stats.lost_markers) == (4, 3, 3)
        assert stats.skipped == {"unknown_event": 2, "malformed_header": 3, "malformed_fields": 3, "bad_number": 2}
        assert stats.first_line["malformed_header"] == 13
    table, stats = parse_both(text)
    r = rows(table)
    assert r[0]["prev_comm"] == r[0]["common_comm"] == "a b-[1] ==> x=y"
    assert (r[0]["next_comm"], r[0]["next_prio"], r[0]["prev_state"]) == ("==> next_comm=", -1, "R+")
    assert [(x["cpu"], x["ts"], x.get("lost_count"), x["line"]) for x in r[1:4]] == [
        (1, 2_000_000_000, 123, 6),
        (0, 2_000_000_000, None, 7),
        (1, 2_000_000_000, None, 8),
    ]
    assert r[4]["comm"] == "bad\ufffd\ufffd" and r[4]["group_dead"] is False
    assert r[5]["line"] == 20 and r[5]["target_cpu"] == 1


def test_invalid_utf8_that_outgrows_the_text():
    """Each invalid byte becomes 3 bytes of U+FFFD: string space can outgrow the input chunk."""
    line = kernel_line(b"x", 1, 0, 10**9, "sched_process_exit", b"comm=" + b"\xff" * 3000 + b" pid=1 prio=1")
    table, stats = parse_both(b"\n".join([line] * 50))
    assert stats.events == 50 and table.column("comm")[49].as_py() == "\ufffd" * 3000


def test_plugin_switch_uses_header_pid_to_split_names():
    """ "a:1 [2] R ==> " is a possible name: the prev pid must equal the header pid."""
    sw = body(
        "sched_switch",
        dict(
            prev_comm=b"a:1 [2] R ==> ",
            prev_pid=30,
            prev_prio=0,
            prev_state=b"R",
            next_comm=b"x",
            next_pid=5,
            next_prio=120,
        ),
        plugin=True,
    )
    table, _ = parse_both(tracecmd_line(b"a", 30, 0, 10**9, "sched_switch", sw))
    assert rows(table)[0]["prev_comm"] == "a:1 [2] R ==> " and rows(table)[0]["next_comm"] == "x"


def test_chunk_boundaries_do_not_matter():
    text = HEADER + KERNEL_6_18 * 50 + b"CPU:0 [LOST 3 EVENTS]\n" + KERNEL_6_18
    whole, s1 = parse.parse_bytes(text)
    for chunk in (1, 97, 4096):
        part, s2 = parse.parse_bytes(text, chunk_bytes=chunk)
        assert part.equals(whole) and s2.to_dict() == s1.to_dict()
    path_batches = list(parse._run(parse._bytes_chunks(text, 1000), "x", parse.ParseStats(), "c"))
    assert len(path_batches) > 1


# ----- files, compression, errors ------------------------------------------------------------
def compressed(path: Path, kind: str, data: bytes) -> Path:
    if kind == "gz":
        path.write_bytes(gzip.compress(data))
    elif kind == "xz":
        path.write_bytes(lzma.compress(data))
    else:  # two zstd frames, as pzstd or appending writers produce
        half = len(data) // 2
        c = zstandard.ZstdCompressor()
        path.write_bytes(c.compress(data[:half]) + c.compress(data[half:]))
    return path


@pytest.mark.parametrize("kind", ["gz", "xz", "zst"])
def test_compressed_input_and_truncation(tmp_path, kind):
    text = HEADER + KERNEL_6_18 * 2000
    plain, _ = parse.parse_bytes(text)
    path = compressed(tmp_path / f"trace.txt.{kind}", kind, text)
    table, stats = parse.parse_file(path, chunk_bytes=1 << 16)
    assert table.equals(plain) and stats.text_bytes == len(text)
    cut = tmp_path / f"cut.txt.{kind}"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    with pytest.raises(TraceFormatError, match=re.escape(str(cut)) + ".*truncated"):
        parse.parse_file(cut)
    stub = tmp_path / f"stub.txt.{kind}"
    stub.write_bytes(path.read_bytes()[:1])
    with pytest.raises(TraceFormatError, match=re.escape(str(stub))):
        parse.parse_file(stub)


def test_zstd_layouts_and_cuts(tmp_path):
    """Every well-formed zstd layout reads back exactly (several frames, a skippable one, with
    and without checksums and content sizes, a tiny frame), and a file cut anywhere inside a
    frame, or with text after the last one, is an error naming the file (zstandard's own
    stream readers end quietly at a cut frame)."""
    text = HEADER + KERNEL_6_18 * 2000
    plain, _ = parse.parse_bytes(text)
    half = len(text) // 2
    skippable = (0x184D2A53).to_bytes(4, "little") + (5).to_bytes(4, "little") + b"notes"
    frames = [
        zstandard.ZstdCompressor(level=1, write_checksum=True, write_content_size=True).compress(text[:half]),
        skippable,
        zstandard.ZstdCompressor(level=19, write_content_size=False).compress(text[half:-100]),
        zstandard.ZstdCompressor(level=-5).compress(text[-100:]),  # small, fast: raw or RLE blocks
    ]
    whole = b"".join(frames)
    path = tmp_path / "trace.txt.zst"
    path.write_bytes(whole)
    table, stats = parse.parse_file(path, chunk_bytes=1 << 16)
    assert table.equals(plain) and stats.text_bytes == len(text)
    ends = [sum(len(f) for f in frames[: i + 1]) for i in range(len(frames))]
    cuts = sorted({5, 9, ends[0] - 2, ends[0] + 3, ends[1] + 7, ends[2] - 1, len(whole) - 1} - set(ends))
    for cut in cuts:
        bad = tmp_path / f"cut{cut}.txt.zst"
        bad.write_bytes(whole[:cut])
        with pytest.raises(TraceFormatError, match=re.escape(str(bad)) + ".*truncated"):
            parse.parse_file(bad)
    trailing = tmp_path / "trailing.txt.zst"
    trailing.write_bytes(whole + b"\n# appended text\n")
    with pytest.raises(TraceFormatError, match="truncated or corrupt zstd data"):
        parse.parse_file(trailing)


def test_parquet_is_written_behind_the_parser_in_order_and_failures_surface():
    written, seen = [], []

    class Writer:
        def __init__(self, fail_at=None):
            self.fail_at = fail_at

        def write_batch(self, batch):
            if batch == self.fail_at:
                raise OSError("disk full")
            written.append(batch)

    def batches():
        for b in range(6):
            seen.append(b)
            yield b

    parse._write_behind(Writer(), batches())
    assert written == list(range(6))
    written.clear()
    seen.clear()
    with pytest.raises(OSError, match="disk full"):
        parse._write_behind(Writer(fail_at=2), batches())
    assert written == [0, 1] and seen[-1] <= 4  # parsing stops soon after a failed write


def cli_in_a_fresh_process(probe: str, *args: str) -> list[str]:
    """Run the parse CLI's main(args) in a new interpreter; print rc and the `probe` expression."""
    code = f"import sys; from data.parse.tracefile import main; rc = main(sys.argv[1:]); print(rc, {probe})"
    run = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, check=True)
    return run.stdout.split()


def test_cli_never_imports_pandas(tmp_path):
    """pyarrow imports pandas (about 0.2 s) behind Array.to_numpy() and pa.array(list);
    the CLI's path from text to Parquet must not take it."""
    src = compressed(tmp_path / "trace.txt.zst", "zst", HEADER + KERNEL_6_18 * 30)
    probe = "'pandas' in sys.modules, 'pyarrow.compute' in sys.modules"
    out = cli_in_a_fresh_process(probe, str(src), "--out", str(tmp_path / "e.parquet"))
    assert out[-3:] == ["0", "False", "False"] and pq.read_table(tmp_path / "e.parquet").num_rows == 210


@pytest.mark.parametrize(
    "content",
    [b"just some text\nnot a trace - [000] at all\n", bytes(range(256)) * 4000, b"# only a comment\n\x00\x01\x02"],
)
def test_not_an_ftrace_file(tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(TraceFormatError, match=re.escape(str(path)) + ".*not an ftrace text file"):
        parse.parse_file(path)


@pytest.mark.parametrize("content", [HEADER, b""])
def test_empty_trace_is_valid(tmp_path, content, capsys):
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    table, stats = parse.parse_file(path)
    assert table.num_rows == 0 and table.schema == EVENT_SCHEMA
    assert stats.events == 0 and stats.comment_lines == content.count(b"\n")
    out = tmp_path / "empty.parquet"
    assert parse.main([str(path), "--out", str(out)]) == 1  # the CLI refuses an empty trace...
    assert "no scheduler events" in capsys.readouterr().err and not out.exists()
    assert parse.main([str(path), "--out", str(out), "--allow-empty"]) == 0  # ...unless asked
    assert pq.read_table(out).num_rows == 0


def test_cli_streams_to_parquet_with_stats(tmp_path, capsys):
    text = HEADER + KERNEL_6_18 * 300
    src = compressed(tmp_path / "trace.txt.zst", "zst", text)
    out = tmp_path / "events.parquet"
    assert parse.main([str(src), "--out", str(out)]) == 0
    assert "2,100 events" in capsys.readouterr().out
    table = pq.read_table(out)
    assert table.schema.remove_metadata() == EVENT_SCHEMA
    assert table.equals(parse.parse_bytes(text)[0])
    stats = parse.read_stats(out)
    assert stats["events"] == 2100 and stats["total_lines"] == 2106 and sum(stats["skipped"].values()) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.parquet", "trace.txt.zst"]  # no leftovers
    # several traces -> a directory of <run>.parquet
    (tmp_path / "run-a").mkdir()
    compressed(tmp_path / "run-a" / "trace.txt.gz", "gz", text)
    assert parse.main([str(src), str(tmp_path / "run-a" / "trace.txt.gz"), "--out", str(tmp_path / "all")]) == 0
    assert {p.name for p in (tmp_path / "all").iterdir()} == {f"{tmp_path.name}.parquet", "run-a.parquet"}


def test_cli_reports_bad_input(tmp_path, capsys):
    bad = tmp_path / "x.txt.gz"
    bad.write_bytes(b"plain text")
    assert parse.main([str(bad), "--out", str(tmp_path / "x.parquet")]) == 1
    assert str(bad) in capsys.readouterr().err and not (tmp_path / "x.parquet").exists()


# ----- the C core -----------------------------------------------------------------------------
def test_fallback_without_compiler(monkeypatch, capsys):
    for attr, value in (("value", None), ("reason", None), ("warned", False)):
        monkeypatch.setattr(native.CORE, attr, value)
    monkeypatch.setattr(shared_lib, "compiler", lambda: None)
    for _ in range(2):
        table, stats = parse.parse_bytes(HEADER + KERNEL_6_18)
        assert stats.engine == "python" and table.num_rows == 7
    err = capsys.readouterr().err
    assert err.count("fast C parser unavailable") == 1 and "no C compiler" in err
    with pytest.raises(RuntimeError):
        parse.parse_bytes(HEADER, engine="c")


def test_library_is_keyed_by_source(tmp_path, monkeypatch):
    cc = shared_lib.compiler()
    require(cc is not None, "a C compiler")
    before = shared_lib.library_path(cc, native.SOURCE, BUILD_DIR)
    edited = tmp_path / "_fastparse.c"
    edited.write_bytes(native.SOURCE.read_bytes() + b"\n/* edit */\n")
    assert shared_lib.library_path(cc, edited, BUILD_DIR) != before


# ----- shipped real traces --------------------------------------------------------------------
SHIPPED = sorted(p for p in (REPO / "datasets" / "traces").glob("*/trace.txt*") if not p.parent.name.startswith("."))


@pytest.mark.skipif(not SHIPPED, reason="no shipped traces under datasets/traces/")
@pytest.mark.parametrize("path", SHIPPED[:3], ids=lambda p: p.parent.name)
def test_shipped_trace_accounting(path):
    table, stats = parse.parse_file(path)
    stats.check()
    assert table.num_rows == stats.events + stats.lost_markers
    assert stats.events > 0 and stats.skipped["malformed_header"] == 0 and stats.skipped["malformed_fields"] == 0
    assert set(stats.skipped) == set(SKIP_REASONS)


@pytest.mark.slow
def test_large_input_memory_is_bounded(tmp_path):
    """~1 GB of text through the CLI: peak RSS stays far below the input size (about 300 MB
    measured, of which ~110 MB is the interpreter with numpy and pyarrow)."""
    path = tmp_path / "big.txt.zst"
    block = KERNEL_6_18 * 2000
    with open(path, "wb") as fh, zstandard.ZstdCompressor(level=1).stream_writer(fh) as w:
        for _ in range((1 << 30) // len(block)):
            w.write(block)
    # VmHWM, the peak of this process's own memory map: ru_maxrss would also count the pytest
    # process it was spawned from (Linux carries the pre-exec peak over into the new program)
    hwm = "open('/proc/self/status').read().split('VmHWM:')[1].split()[0]"
    out = cli_in_a_fresh_process(hwm, str(path), "--out", str(tmp_path / "big.parquet"))
    peak_mb = int(out[-1]) / 1024
    assert pq.read_metadata(tmp_path / "big.parquet").num_rows > 6_000_000
    assert peak_mb < 450, f"peak RSS {peak_mb:.0f} MB for ~1 GB of text"


# ----- sched_stat_runtime (data/parse/stat_runtime.py: outside the event table) ---------------
STAT_RUNTIME_LINES = [
    # 6.1's format, a comm with spaces, "pid=" and "[ns]" in it, flags of a tick in hardirq
    kernel_line(b"a pid=1 b [ns]", 41, 3, 19_632_187_000, "sched_stat_runtime",
                b"comm=a pid=1 b [ns] pid=41 runtime=1964830 [ns] vruntime=7227136921 [ns]", b"d.h1."),
    # 6.8+ dropped vruntime; the charged task is not the current one (a remote rq's curr)
    kernel_line(b"sleep", 233, 0, 19_636_172_000, "sched_stat_runtime", b"comm=init pid=9 runtime=310136 [ns]"),
]  # fmt: skip
MALFORMED_STAT_RUNTIME = [
    kernel_line(b"x", 1, 0, 1_000, "sched_stat_runtime", b"comm=x pid=1 runtime=12 vruntime=3 [ns]"),
    kernel_line(b"x", 1, 0, 1_000, "sched_stat_runtime", b"comm=x pid=1 runtime=1234567890123456789012 [ns]"),
]


def test_stat_runtime_lines_are_read_by_their_reader_and_skipped_by_the_event_parser(tmp_path):
    from data.parse import stat_runtime

    text = HEADER + b"\n".join([KERNEL_6_18.splitlines()[0], *STAT_RUNTIME_LINES, *MALFORMED_STAT_RUNTIME]) + b"\n"
    table, stats = parse_both(text)
    assert table.num_rows == 1 and stats.skipped["unknown_event"] == len(STAT_RUNTIME_LINES) + 2
    path = tmp_path / "trace.txt.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(text))
    got, counts = stat_runtime.read(path)
    assert counts.malformed == 2 and counts.first_malformed == HEADER.count(b"\n") + 4
    assert got.to_pylist() == [
        dict(ts=19_632_187_000, cpu=3, common_pid=41, comm="a pid=1 b [ns]", pid=41, runtime=1964830,
             vruntime=7227136921, line=8),
        dict(ts=19_636_172_000, cpu=0, common_pid=233, comm="init", pid=9, runtime=310136, vruntime=None, line=9),
    ]  # fmt: skip
