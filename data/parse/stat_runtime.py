"""sched_stat_runtime lines of a trace -> a table (schema.STAT_RUNTIME_SCHEMA).

The guest collector records them only on request (`--extra-events sched_stat_runtime`) to check
the replay's runtime reconstruction against what the kernel charged (tests/test_stat_runtime.py).
They are not an event of the main table: the event parser counts them as unknown_event, so the
replay is unchanged by them. The header grammar is the reference parser's (reference.split_event);
only the fields are read here. Format (include/trace/events/sched.h):
6.1 `comm=%s pid=%d runtime=%Lu [ns] vruntime=%Lu [ns]`; from 6.8 without vruntime.

    python -m data.parse.stat_runtime TRACE     # rows, malformed lines, runtime per pid (top 10)
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from data import EXTRA_SCHED_EVENTS
from data.parse import reference
from data.parse.schema import STAT_RUNTIME_SCHEMA
from data.parse.tracefile import CHUNK_BYTES, TraceFormatError, _line_chunks

EVENT = "sched_stat_runtime"
assert EVENT in EXTRA_SCHED_EVENTS
_NEEDLE = f": {EVENT}: ".encode()  # 22 bytes: longer than any comm, so only the event's own name
_FIELDS = re.compile(rb" pid=(\d+) runtime=(\d+) \[ns\](?: vruntime=(\d+) \[ns\])?\Z")


@dataclass
class StatRuntimeCounts:
    """Lines carrying the event name: parsed into rows, or malformed (first one's number kept)."""

    rows: int = 0
    malformed: int = 0
    first_malformed: int = 0


def parse_line(text: bytes) -> dict | None:
    """One trace line -> a row dict, or None when it is not a well-formed sched_stat_runtime."""
    parts = reference.split_event(text.rstrip(b" \t\r"))
    if parts is None or parts[1] != EVENT:
        return None
    row, _, body = parts
    hit = body.startswith(b"comm=") and reference._leftmost(body, 5, _FIELDS)
    if not hit:
        return None
    m = hit[1]
    row.update(
        comm=body[5 : hit[0]],
        pid=reference.num(m[1]),
        runtime=reference.num(m[2]),
        vruntime=None if m[3] is None else reference.num(m[3]),
    )
    return row if reference._in_range(row) and row["runtime"] != reference.OVF else None


def read(path) -> tuple[pa.Table, StatRuntimeCounts]:
    """All sched_stat_runtime rows of a trace file (plain or compressed, as the event parser)."""
    rows, counts, line = [], StatRuntimeCounts(), 0
    for chunk in _line_chunks(Path(path), CHUNK_BYTES):
        data = bytes(chunk)
        if _NEEDLE not in data:
            line += data.count(b"\n") + (not data.endswith(b"\n"))
            continue
        for text in data.split(b"\n")[: -1 if data.endswith(b"\n") else None]:
            line += 1
            if _NEEDLE not in text or text.startswith(b"#"):
                continue
            row = parse_line(text)
            if row is None:
                counts.malformed += 1
                counts.first_malformed = counts.first_malformed or line
                continue
            row["line"] = line
            rows.append(row)
    counts.rows = len(rows)
    cols = {
        f.name: [r[f.name].decode("utf-8", "schedlearn_fffd") if f.type == pa.string() else r.get(f.name) for r in rows]
        for f in STAT_RUNTIME_SCHEMA
    }
    return pa.table(cols, schema=STAT_RUNTIME_SCHEMA), counts


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_file():
        print("usage: python -m data.parse.stat_runtime TRACE (an existing ftrace text file)", file=sys.stderr)
        return 2
    try:
        table, counts = read(args[0])
    except (TraceFormatError, OSError) as e:
        print(f"python -m data.parse.stat_runtime: {e}", file=sys.stderr)
        return 1
    print(f"{counts.rows:,} {EVENT} rows, {counts.malformed} malformed lines")
    if table.num_rows:
        per = table.group_by(["pid", "comm"]).aggregate([("runtime", "sum"), ("runtime", "count")])
        for r in per.sort_by([("runtime_sum", "descending")]).slice(0, 10).to_pylist():
            print(f"  {r['comm']:>16}-{r['pid']:<7} {r['runtime_sum'] / 1e6:10.3f} ms in {r['runtime_count']} events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
