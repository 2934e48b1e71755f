"""Pure-Python reference parser: the specification the C core (data/parse/_fastparse.c) must match.

It is the fallback when no C compiler is available and the oracle of the tests, which assert
that both produce identical tables and counts. It favours being obviously right over speed
(~0.1M lines/s). The grammar and the task-name rules are documented in data/parse/tracefile.py.
"""

from __future__ import annotations

import codecs
import re

import pyarrow as pa

from data.parse.schema import (
    BAD_NUMBER,
    COMMENT,
    EVENT,
    EVENT_DICT,
    EVENT_KINDS,
    EVENT_SCHEMA,
    LOST,
    MALFORMED_FIELDS,
    MALFORMED_HEADER,
    TOTAL,
    UNKNOWN_EVENT,
    Progress,
)

KIND = {name: code for code, name in enumerate(EVENT_KINDS)}


# Numbers longer than 18 digits are not held; like the C core, mark them as overflowing.
OVF = (1 << 63) - 1
_RANGES = {
    pa.int16(): (-(1 << 15), (1 << 15) - 1),
    pa.int32(): (-(1 << 31), (1 << 31) - 1),
    pa.int64(): (-OVF, OVF - 1),
}
LIMITS = {f.name: _RANGES[f.type] for f in EVENT_SCHEMA if f.type in _RANGES}

# Bytes that are not valid UTF-8 become one U+FFFD each (the C core does the same).
codecs.register_error("schedlearn_fffd", lambda e: ("\ufffd" * (e.end - e.start), e.end))


def num(digits: bytes) -> int:
    """Value of an optionally signed digit string, or OVF beyond 18 digits."""
    neg = digits.startswith(b"-")
    body = digits[1:] if neg else digits
    if len(body) > 18:
        return OVF
    return -int(body) if neg else int(body)


# ----- grammar -----------------------------------------------------------------------------
_HEADER = re.compile(rb"-(\d+) +(?:\( *(?:\d+|-+)\) +)?\[(\d+)\] +")
_TS = re.compile(rb"(\d+)\.(\d+):(?= |\Z)")
_NAME = re.compile(rb" *([A-Za-z0-9_]*)")
_SPACES = re.compile(rb" *")

_SW_PREV = re.compile(rb" prev_pid=(\d+) prev_prio=(-?\d+) prev_state=([^ ]+) ==> next_comm=")
_SW_NEXT = re.compile(rb" next_pid=(\d+) next_prio=(-?\d+)\Z")
_SW_PLUGIN_NEXT = re.compile(rb":(\d+) \[(-?\d+)\]\Z")
_SW_PLUGIN_PREV = re.compile(rb":(\d+) \[(-?\d+)\] ([^ ]+) ==> ")
_WK = re.compile(rb" pid=(\d+) prio=(-?\d+)(?: success=\d+)? target_cpu=(\d+)\Z")
_WK_PLUGIN = re.compile(rb":(\d+) \[(-?\d+)\](?: success=\d+)?(?: CPU:(\d+))?\Z")
_MG = re.compile(rb" pid=(\d+) prio=(-?\d+) orig_cpu=(\d+) dest_cpu=(\d+)(?= |\Z)")
_FK_PARENT = re.compile(rb" pid=(\d+) child_comm=")
_FK_CHILD = re.compile(rb" child_pid=(\d+)\Z")
_EX = re.compile(rb" pid=(\d+) prio=(-?\d+)(?: group_dead=(true|false))?\Z")

_LOST = [
    (re.compile(rb"##### CPU (\d+) buffer started ####\Z"), False),
    (re.compile(rb"CPU:(\d+) \[LOST (\d+) EVENTS\]\Z"), True),
    (re.compile(rb"CPU:(\d+) \[(\d+) EVENTS DROPPED\]\Z"), True),
    (re.compile(rb"CPU:(\d+) \[LOST EVENTS\]\Z"), False),
    (re.compile(rb"CPU:(\d+) \[EVENTS DROPPED\]\Z"), False),
]
_PREAMBLE = re.compile(rb"cpus=\d+\Z|version = \d+\Z|CPU \d+ is empty\Z|CPU:\d+ \[SUBBUFFER START\]")


def _leftmost(line: bytes, start: int, tail: re.Pattern):
    """First space at or after `start` where `tail` matches: (comm end, match) or None."""
    c = line.find(b" ", start)
    while c >= 0:
        m = tail.match(line, c)
        if m:
            return c, m
        c = line.find(b" ", c + 1)
    return None


def _timestamp(line: bytes, p: int):
    m = _TS.match(line, p)
    if not m or len(m.group(2)) not in (6, 9):
        return None
    secs, frac = num(m.group(1)), num(m.group(2))
    ns = OVF if secs > 9_000_000_000 else secs * 1_000_000_000 + (frac * 1000 if len(m.group(2)) == 6 else frac)
    return ns, m.end()


def _header_at(line: bytes, d: int):
    """Header fields from the dash at d, and the position after "TS:"; None if no match."""
    m = _HEADER.match(line, d)
    if not m:
        return None
    p, flags = m.end(), None
    t = _timestamp(line, p)
    if t is None:
        f = line.find(b" ", p)
        if f <= p:
            return None
        t = _timestamp(line, _SPACES.match(line, f).end())
        if t is None:
            return None
        flags = line[p:f]
    row = {"common_pid": num(m.group(1)), "cpu": num(m.group(2)), "ts": t[0], "flags": flags}
    return row, t[1]


def _body(kind: str, b: bytes, row: dict) -> bool:
    """Parse the fields of a known event into row; False when they do not match."""
    if kind == "sched_switch":
        return _switch_kernel(b, row) or _switch_plugin(b, row)
    if kind in ("sched_waking", "sched_wakeup", "sched_wakeup_new"):
        return _wakeup_kernel(b, row) or _wakeup_plugin(b, row)
    if not b.startswith(b"comm="):
        return False
    if kind == "sched_migrate_task":
        hit = _leftmost(b, 5, _MG)
        if not hit:
            return False
        m = hit[1]
        row.update(comm=b[5 : hit[0]], pid=num(m[1]), prio=num(m[2]), orig_cpu=num(m[3]), dest_cpu=num(m[4]))
        return True
    if kind == "sched_process_fork":
        hit = _leftmost(b, 5, _FK_PARENT)
        hit2 = hit and _leftmost(b, hit[1].end(), _FK_CHILD)
        if not hit2:
            return False
        row.update(
            parent_comm=b[5 : hit[0]],
            parent_pid=num(hit[1][1]),
            child_comm=b[hit[1].end() : hit2[0]],
            child_pid=num(hit2[1][1]),
        )
        return True
    hit = _leftmost(b, 5, _EX)  # sched_process_exit
    if not hit:
        return False
    m = hit[1]
    row.update(comm=b[5 : hit[0]], pid=num(m[1]), prio=num(m[2]), group_dead=None if m[3] is None else m[3] == b"true")
    return True


def _switch_kernel(b: bytes, row: dict) -> bool:
    if not b.startswith(b"prev_comm="):
        return False
    hit = _leftmost(b, 10, _SW_PREV)
    hit2 = hit and _leftmost(b, hit[1].end(), _SW_NEXT)
    if not hit2:
        return False
    m, m2 = hit[1], hit2[1]
    row.update(
        prev_comm=b[10 : hit[0]],
        prev_pid=num(m[1]),
        prev_prio=num(m[2]),
        prev_state=m[3],
        next_comm=b[m.end() : hit2[0]],
        next_pid=num(m2[1]),
        next_prio=num(m2[2]),
    )
    return True


def _switch_plugin(b: bytes, row: dict) -> bool:
    nxt = _SW_PLUGIN_NEXT.search(b)
    if not nxt:
        return False
    colon = nxt.start()
    c = b.find(b":", 0, colon)
    while c >= 0:
        m = _SW_PLUGIN_PREV.match(b, c, colon)
        if m and num(m[1]) == row["common_pid"]:
            row.update(
                prev_comm=b[:c],
                prev_pid=num(m[1]),
                prev_prio=num(m[2]),
                prev_state=m[3],
                next_comm=b[m.end() : colon],
                next_pid=num(nxt[1]),
                next_prio=num(nxt[2]),
            )
            return True
        c = b.find(b":", c + 1, colon)
    return False


def _wakeup_kernel(b: bytes, row: dict) -> bool:
    hit = b.startswith(b"comm=") and _leftmost(b, 5, _WK)
    if not hit:
        return False
    m = hit[1]
    row.update(comm=b[5 : hit[0]], pid=num(m[1]), prio=num(m[2]), target_cpu=num(m[3]))
    return True


def _wakeup_plugin(b: bytes, row: dict) -> bool:
    m = _WK_PLUGIN.search(b)
    if not m:
        return False
    row.update(comm=b[: m.start()], pid=num(m[1]), prio=num(m[2]), target_cpu=None if m[3] is None else num(m[3]))
    return True


def parse_line(line: bytes, prev_ts: int):
    """(outcome, row dict or None) for one line without its newline."""
    line = line.rstrip(b" \t\r")
    if not line.strip(b" "):
        return COMMENT, None
    for pattern, counted in _LOST:
        m = pattern.match(line)
        if m:
            return LOST, {
                "event": "lost",
                "cpu": num(m[1]),
                "ts": prev_ts,
                "lost_count": num(m[2]) if counted else None,
            }
    if line.startswith(b"#") or _PREAMBLE.match(line):
        return COMMENT, None
    parts = split_event(line)
    if parts is None:
        return MALFORMED_HEADER, None
    row, kind, body = parts
    if kind not in KIND or kind == "lost":
        return UNKNOWN_EVENT, None
    row["event"] = kind
    return (EVENT, row) if _body(kind, body, row) else (MALFORMED_FIELDS, None)


def split_event(line: bytes):
    """(header fields with common_comm, event name or "" when there is none, fields text) of an
    event line without trailing whitespace; None when no header matches. Shared with readers of
    events outside EVENT_KINDS (data.parse.stat_runtime)."""
    d = line.find(b"-")
    while d >= 0:
        hit = _header_at(line, d)
        if hit:
            break
        d = line.find(b"-", d + 1)
    else:
        return None
    row, p = hit
    row["common_comm"] = line[:d].lstrip(b" ")
    m = _NAME.match(line, p)
    name, q = m[1], m.end()
    if not name or line[q : q + 1] != b":" or line[q + 1 : q + 2] not in (b"", b" "):
        return row, "", b""
    return row, name.decode(), line[_SPACES.match(line, q + 1).end() :]


def _in_range(row: dict) -> bool:
    for name, v in row.items():
        lim = LIMITS.get(name)
        if lim and v is not None and not lim[0] <= v <= lim[1]:
            return False
    return True


def _column(f: pa.Field, values: list) -> pa.Array:
    if f.name == "event":
        return pa.DictionaryArray.from_arrays(pa.array([KIND[v] for v in values], pa.int8()), EVENT_DICT)
    if f.type == pa.string():
        values = [None if v is None else v.decode("utf-8", "schedlearn_fffd") for v in values]
    return pa.array(values, f.type)


class RefParser:
    """Parses chunks of whole lines into record batches (same interface as native.CParser)."""

    name = "python"

    def parse(self, buf, prog: Progress) -> list[pa.RecordBatch]:
        rows = []
        lines = bytes(buf).split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        for text in lines:
            prog.line += 1
            outcome, row = parse_line(text, prog.prev_ts)
            if row is not None and not _in_range(row):
                outcome, row = BAD_NUMBER, None
            if row is not None:
                row["line"] = prog.line
                rows.append(row)
                if outcome == EVENT:
                    prog.prev_ts = row["ts"]
            prog.counts[TOTAL] += 1
            prog.counts[outcome] += 1
            if not prog.first[outcome]:
                prog.first[outcome] = prog.line
        if not rows:
            return []
        cols = [_column(f, [r.get(f.name) for r in rows]) for f in EVENT_SCHEMA]
        return [pa.RecordBatch.from_arrays(cols, schema=EVENT_SCHEMA)]
