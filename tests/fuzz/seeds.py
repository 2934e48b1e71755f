"""Writes the seed corpora of the parse and replay targets from the shipped traces in datasets/
(small slices, a few KB each). Run once by hand when the harness input formats change:
`python -m tests.fuzz.seeds`; the blob corpus comes from tests/fuzz/blob_model/ (see README.md).

The replay seeds are real event slices, parsed by data.parse and encoded in fuzz_replay.c's
input format; one has a LOST marker put in (no shipped trace has one)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import zstandard

from data.dataset.tables import prev_state_array, task_context_array
from data.parse.tracefile import parse_bytes
from plumbing.atomic import write_atomic

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# (run, byte offset of the slice): host ftrace, a qemu guest, a foreign machine's trace
SOURCES = (
    ("datasets/traces/hackbench-pipe-r01", 200_000),
    ("datasets/guest_runs/hackbench-pipe-r01", 100_000),
    ("datasets/guest_runs/oversub-sleep-r01", 50_000),
    ("datasets/foreign_traces/gcc-make-r01", 0),
    ("datasets/foreign_traces/httpd-curl-r01", 30_000),
)
PARSE_BYTES = 3000  # per parse seed
REPLAY_EVENTS = 200  # per replay seed: 16 bytes each
EVENT_CODES = {"sched_switch": 0, "sched_waking": 1, "sched_wakeup": 2, "sched_wakeup_new": 3}


def text(run: str) -> bytes:
    with open(REPO / run / "trace.txt.zst", "rb") as fh:
        return zstandard.ZstdDecompressor().stream_reader(fh).read()


def whole_lines(data: bytes, start: int, size: int) -> bytes:
    """data[start:start+size] cut to whole lines."""
    if start:
        start = data.index(b"\n", start) + 1
    end = data.rfind(b"\n", start, start + size) + 1
    return data[start:end]


def cpu_byte(cpu: int) -> int:
    """fuzz_replay.c cpu_of(): bytes below 0xe0 are CPUs 0-7, 0xff null."""
    if cpu < 0:
        return 0xFF
    if cpu > 7:
        raise ValueError(f"CPU {cpu}: the seeds use CPUs 0-7")
    return cpu


def encode_events(data: bytes, lost_at: int | None) -> bytes:
    """fuzz_replay.c's input: 4 header bytes, then 16 bytes per event (pids renumbered densely)."""
    table, _ = parse_bytes(data, engine="c")
    table = table.slice(0, REPLAY_EVENTS)
    cols = {c: table.column(c).to_numpy(zero_copy_only=False) for c in table.column_names if c != "event"}
    events = table.column("event").cast("string").to_pylist()
    state = prev_state_array(table)
    ctx = task_context_array(table)
    dense: dict[int, int] = {0: 0}

    def pid(v) -> int:
        if v is None or v != v:  # null
            return 0xFFFF
        return dense.setdefault(int(v), len(dense))

    out = bytearray([2, 1, 4, 1])  # default warmup, SMT pairs, nodes of 4, flat
    prev_ts = int(cols["ts"][0])
    for i, name in enumerate(events):
        code = {"sched_migrate_task": 4, "sched_process_fork": 5, "sched_process_exit": 6, "lost": 7}.get(
            name, EVENT_CODES.get(name, -1)
        )
        a = cols["prev_pid"][i] if code == 0 else cols["child_pid"][i] if code == 5 else cols["pid"][i]
        b = cols["next_pid"][i] if code == 0 else None
        step = int(np.clip((int(cols["ts"][i]) - prev_ts) // 1000, -32767, 32767))
        prev_ts = int(cols["ts"][i])
        target = cols["target_cpu"][i]
        dest = cols["dest_cpu"][i]
        out += struct.pack(
            "<BBHHHhbBBBH",
            code + 1,
            cpu_byte(int(cols["cpu"][i])),
            pid(cols["common_pid"][i]),
            pid(a),
            pid(b),
            step,
            int(state[i]) + 1,
            cpu_byte(-1 if target != target or target is None else int(target)),
            cpu_byte(-1 if dest != dest or dest is None else int(dest)),
            int(ctx[i]),
            0,
        )
        if lost_at == i:
            out += struct.pack("<BBHHHhbBBBH", 8, 0, 0xFFFF, 0xFFFF, 0xFFFF, 0, 0, 0xFF, 0xFF, 0, 0)
    return bytes(out)


def main() -> None:
    for k, (run, offset) in enumerate(SOURCES):
        data = text(run)
        name = f"{Path(run).parent.name}-{Path(run).name}"
        parse_seed = whole_lines(data, offset, PARSE_BYTES)
        write_atomic(HERE / "corpus" / "parse" / f"{name}.txt", parse_seed)
        replay_seed = encode_events(whole_lines(data, offset, 150 * REPLAY_EVENTS), lost_at=100 if k == 1 else None)
        write_atomic(HERE / "corpus" / "replay" / f"{name}{'-lost' if k == 1 else ''}.bin", replay_seed)
    # a slice with a LOST marker and a buffer-start line put in, as the parser meets them
    data = whole_lines(text(SOURCES[0][0]), 400_000, PARSE_BYTES).split(b"\n")
    data.insert(10, b"CPU:1 [LOST 42 EVENTS]")
    data.insert(20, b"##### CPU 0 buffer started ####")
    write_atomic(HERE / "corpus" / "parse" / "lost-markers.txt", b"\n".join(data))


if __name__ == "__main__":
    main()
