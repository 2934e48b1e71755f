"""Kernel ftrace text -> typed event table (data/schema.py), fast, streaming, nothing lost silently.

    python -m data.parse TRACE... --out events.parquet

Inputs: the text of tracefs `trace` and `trace_pipe`, and `trace-cmd report` output (kernel
print formats, or the libtraceevent sched plugin's "comm:pid [prio]" formats), plain or
.gz/.xz/.zst, decompressed as a stream and parsed in chunks of whole lines.

Line grammar (one line -> one outcome, counted in ParseStats):
  * comment: `#` in column 0, blank lines, trace-cmd preamble (`cpus=2`, `version = 6`,
    `CPU 0 is empty`, `CPU:0 [SUBBUFFER START]`).
  * lost marker -> a "lost" row: `CPU:1 [LOST 12 EVENTS]`, `CPU:1 [LOST EVENTS]`,
    `CPU:1 [12 EVENTS DROPPED]`, `CPU:1 [EVENTS DROPPED]` (trace-cmd) and
    `##### CPU 1 buffer started ####` (older events of that CPU were overwritten); lost_count
    is null when the marker gives no number, ts is that of the previous event (or -1).
  * event: `COMM-PID [(TGID)] [CPU] [FLAGS] SECS.FRAC: NAME: FIELDS`, with 6 or 9 fraction
    digits (converted to int64 ns exactly, without floats).
  * skipped, by reason: unknown_event (a valid header, but not one of the seven sched events,
    e.g. other tracepoints or function-tracer lines), malformed_header, malformed_fields (one
    of our events whose fields do not match its format), bad_number (a value outside its
    column type).
Invariant: total_lines == comment_lines + events + lost_markers + sum(skipped).
Not supported (lines are counted as skipped): latency-format output, counter trace clocks
(integer timestamps), trace-cmd's -l / --ts-diff columns.

Task names (comm, at most 15 bytes) may contain spaces, dashes, brackets, `=`, `:`, `==>`.
Rules, each provably right for comms of at most 15 bytes:
  * Header: the pid is taken at the leftmost dash from which the whole header layout
    `-PID +[(TGID) +][CPU] +[FLAGS +]SECS.FRAC: ` matches. A false match starting inside the
    comm would have to hold all of `-0 [000] 0.000000: ` (19 bytes) within the comm, or
    straddle into the real header, which is impossible because every token boundary of the
    layout would then have to line up with the real one. Leading spaces of the header comm
    cannot be told from the kernel's right-aligned padding and are dropped (field comms are
    exact).
  * Fields (kernel formats): each comm ends at the leftmost space from which the rest of the
    event's key sequence matches, through to the end of the line for the last comm (e.g.
    ` prev_pid=N prev_prio=N prev_state=S ==> next_comm=` then ` next_pid=N next_prio=N$`).
    A match starting inside the comm must either fit in it (every such key sequence is
    longer than 15 bytes, or is anchored at the line end) or straddle into the real keys,
    where its literal ` key=` pieces cannot line up with different real ones.
  * trace-cmd plugin formats: sched_wakeup* fields are parsed from the line end
    (`:PID [PRIO][ success=N][ CPU:NNN]`); for sched_switch (`PREV:PID [PRIO] STATE ==>
    NEXT:PID [PRIO]`) the prev comm ends at the leftmost `:` whose fields match and whose pid
    equals the header pid (the switch runs in prev's context). This text is ambiguous for
    some crafted names; the kernel's own format is not.
  * A comm containing a newline splits its line in two; both halves are counted as skipped.
  * Bytes that are not UTF-8 become U+FFFD, one per byte.

API: parse_file(path) -> (pyarrow.Table, ParseStats); iter_batches(path, stats) streams
record batches; parse_bytes(text) for text in memory; write_parquet(path, out) streams to
Parquet with the stats JSON under schema metadata key STATS_KEY (read_stats reads it back).
Errors: TraceFormatError (truncated/corrupt compressed input, not ftrace text), naming the file.

The C core (data/_fastparse.c via data/native.py) does the parsing; data/parse_ref.py is the
pure-Python reference with the same rules, used when no C compiler is available (one warning
line) and as the test oracle.
"""
from __future__ import annotations

import argparse
import gzip
import json
import lzma
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import zstandard

from data import native
from data.parse_ref import (COMMENT, EVENT, KIND, LOST, MALFORMED_HEADER, OUTCOMES, SKIP_REASONS,
                            TOTAL, Progress, RefParser)
from data.schema import EVENT_KINDS, EVENT_SCHEMA

__all__ = ["TraceFormatError", "ParseStats", "parse_file", "parse_bytes", "iter_batches",
           "write_parquet", "read_stats", "STATS_KEY"]

STATS_KEY = b"schedlearn.parse_stats"
CHUNK_BYTES = 16 << 20  # text per parsing step: bounds memory, amortises the C call
MAX_LINE = 1 << 20  # a longer "line" means binary data, not ftrace text
_MAGIC = {b"\x1f\x8b": "gzip", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
_SUFFIX = {".gz": "gzip", ".xz": "xz", ".zst": "zstd"}
_READ = 1 << 20
_ZSTD_FEED = 1 << 9  # bounds the output of one call (a few MB even for extreme ratios)


class TraceFormatError(ValueError):
    """The input is not (or no longer) readable ftrace text; the message names the file."""


@dataclass
class ParseStats:
    """What happened to every line of one input. Invariant: see `check()`."""

    source: str = ""
    engine: str = ""
    text_bytes: int = 0  # uncompressed
    total_lines: int = 0
    comment_lines: int = 0
    events: int = 0
    lost_markers: int = 0
    lost_events: int = 0  # sum of the counts the markers give
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SKIP_REASONS, 0))
    events_by_kind: dict[str, int] = field(default_factory=lambda: dict.fromkeys(EVENT_KINDS[:-1], 0))
    first_line: dict[str, int] = field(default_factory=dict)  # first line of each skip reason

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        accounted = self.comment_lines + self.events + self.lost_markers + sum(self.skipped.values())
        if accounted != self.total_lines:
            raise AssertionError(f"{self.source}: {self.total_lines} lines but {accounted} accounted for")

    def _absorb(self, prog: Progress) -> None:
        c = prog.counts
        self.total_lines, self.comment_lines = int(c[TOTAL]), int(c[COMMENT])
        self.events, self.lost_markers = int(c[EVENT]), int(c[LOST])
        self.skipped = {r: int(c[OUTCOMES.index(r)]) for r in SKIP_REASONS}
        self.first_line = {r: int(prog.first[OUTCOMES.index(r)]) for r in SKIP_REASONS if c[OUTCOMES.index(r)]}

    def _count_batch(self, batch: pa.RecordBatch) -> None:
        codes = np.bincount(batch.column("event").indices.to_numpy(), minlength=len(EVENT_KINDS))
        for kind in self.events_by_kind:
            self.events_by_kind[kind] += int(codes[KIND[kind]])
        self.lost_events += int(pc.sum(batch.column("lost_count")).as_py() or 0)

    def summary(self) -> str:
        kinds = ", ".join(f"{k[6:]} {v:,}" for k, v in self.events_by_kind.items() if v)
        skipped = ", ".join(f"{k} {v:,} (first at line {self.first_line[k]})" for k, v in self.skipped.items() if v)
        return (f"{self.total_lines:,} lines: {self.events:,} events ({kinds or 'none'}), "
                f"{self.lost_markers:,} lost markers ({self.lost_events:,} events lost), "
                f"{self.comment_lines:,} comment lines, skipped {sum(self.skipped.values()):,}"
                + (f": {skipped}" if skipped else ""))


# ----- input --------------------------------------------------------------------------------
def _compression(path: Path, head: bytes) -> str | None:
    kind = next((k for magic, k in _MAGIC.items() if head.startswith(magic)), None)
    expected = _SUFFIX.get(path.suffix)
    if expected and kind != expected:
        raise TraceFormatError(f"{path}: named like {expected} data but does not start like it "
                               f"(truncated, or not compressed?)")
    return kind


def _zstd_blocks(fh) -> Iterator[bytes]:
    """Decompress all zstd frames; a frame cut short raises (zstandard's readers would not).
    Input goes in small pieces because each call returns all the output of its input."""
    dctx = zstandard.ZstdDecompressor()
    obj, fed = dctx.decompressobj(), False
    while data := fh.read(_ZSTD_FEED):
        while data:
            fed = True
            yield obj.decompress(data)
            data = b""
            if obj.eof:
                data, obj, fed = obj.unused_data, dctx.decompressobj(), False
    if fed and not obj.eof:
        raise EOFError("zstd frame ends before its end marker")


def _blocks(path: Path) -> Iterator[bytes]:
    """Decompressed bytes of the file, in blocks; errors name the file."""
    with open(path, "rb") as fh:
        kind = _compression(path, fh.read(6))
        fh.seek(0)
        if kind is None:
            while block := fh.read(_READ):
                yield block
            return
        try:
            if kind == "zstd":
                yield from _zstd_blocks(fh)
                return
            stream = gzip.GzipFile(fileobj=fh) if kind == "gzip" else lzma.LZMAFile(fh)
            while block := stream.read(_READ):
                yield block
        except (EOFError, OSError, lzma.LZMAError, zstandard.ZstdError) as e:
            raise TraceFormatError(f"{path}: truncated or corrupt {kind} data: {e}") from None


def _line_chunks(blocks: Iterable[bytes], name: str, chunk_bytes: int) -> Iterator[bytes]:
    """Regroup blocks into chunks of about chunk_bytes that end at a line boundary."""
    parts, size = [], 0
    for block in blocks:
        parts.append(block)
        size += len(block)
        if size < chunk_bytes:
            continue
        buf = b"".join(parts)
        cut = buf.rfind(b"\n") + 1
        if cut == 0 and len(buf) > MAX_LINE:
            raise TraceFormatError(f"{name}: a line longer than {MAX_LINE} bytes: not an ftrace text file")
        if cut:
            yield buf[:cut]
        parts, size = [buf[cut:]], len(buf) - cut
    if size:
        yield b"".join(parts)


def _bytes_chunks(data: bytes, chunk_bytes: int) -> Iterator[memoryview]:
    view, start = memoryview(data), 0
    while start < len(data):
        end = start + chunk_bytes
        if end < len(data):
            nl = data.rfind(b"\n", start, end)
            nl = nl if nl >= 0 else data.find(b"\n", end)
            end = nl + 1 if nl >= 0 else len(data)
        yield view[start:end]
        start = end


# ----- parsing ------------------------------------------------------------------------------
_warned = False


def _parser(engine: str):
    global _warned
    if engine == "python":
        return RefParser()
    core = native.load()
    if core is not None:
        return native.CParser(core)
    if engine == "c":
        raise RuntimeError(f"C parser unavailable: {native.unavailable_reason()}")
    if not _warned:
        print(f"warning: fast C parser unavailable ({native.unavailable_reason()}); "
              f"using the pure-Python parser (about 100x slower)", file=sys.stderr)
        _warned = True
    return RefParser()


def _first_bad_line(chunk, first_line_of_chunk: int, line: int) -> str:
    text = bytes(chunk).split(b"\n", line - first_line_of_chunk + 1)[line - first_line_of_chunk]
    return text[:120].decode("utf-8", "replace")


def _run(chunks: Iterable, name: str, stats: ParseStats, engine: str) -> Iterator[pa.RecordBatch]:
    parser = _parser(engine)
    stats.source, stats.engine = name, parser.name
    prog = Progress()
    for chunk in chunks:
        line0 = prog.line + 1
        stats.text_bytes += len(chunk)
        for batch in parser.parse(chunk, prog):
            stats._count_batch(batch)
            yield batch
        stats._absorb(prog)
        c = prog.counts
        if c[MALFORMED_HEADER] and c[TOTAL] == c[COMMENT] + c[MALFORMED_HEADER]:
            bad = int(prog.first[MALFORMED_HEADER])
            raise TraceFormatError(
                f"{name}: not an ftrace text file: no event lines (line {bad}: "
                f"{_first_bad_line(chunk, line0, bad)!r})")
    stats.check()


def iter_batches(path, stats: ParseStats | None = None, *, engine: str = "auto",
                 chunk_bytes: int = CHUNK_BYTES) -> Iterator[pa.RecordBatch]:
    """Stream a trace file as EVENT_SCHEMA record batches; `stats` (if given) fills as it goes
    and is complete when the iterator is exhausted. engine: "auto" | "c" | "python"."""
    path = Path(path)
    stats = ParseStats() if stats is None else stats
    return _run(_line_chunks(_blocks(path), str(path), chunk_bytes), str(path), stats, engine)


def _table(batches: Iterable[pa.RecordBatch]) -> pa.Table:
    return pa.Table.from_batches(list(batches), schema=EVENT_SCHEMA)


def parse_file(path, *, engine: str = "auto", chunk_bytes: int = CHUNK_BYTES) -> tuple[pa.Table, ParseStats]:
    """The whole trace as one table (chunked arrays, one chunk per parsing step) and its stats."""
    stats = ParseStats()
    return _table(iter_batches(path, stats, engine=engine, chunk_bytes=chunk_bytes)), stats


def parse_bytes(data: bytes, name: str = "<bytes>", *, engine: str = "auto",
                chunk_bytes: int = CHUNK_BYTES) -> tuple[pa.Table, ParseStats]:
    """Like parse_file, for uncompressed text already in memory."""
    stats = ParseStats()
    return _table(_run(_bytes_chunks(data, chunk_bytes), name, stats, engine)), stats


def write_parquet(path, out, *, engine: str = "auto", chunk_bytes: int = CHUNK_BYTES) -> ParseStats:
    """Parse `path` into the Parquet file `out` with bounded memory; the stats JSON goes into
    the schema metadata (STATS_KEY). Batches are staged in a temporary Arrow IPC file because
    the stats are known only at the end and Parquet writes its schema first."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stats = ParseStats()
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staged, final = Path(tmp) / "events.arrow", Path(tmp) / "events.parquet"
        lz4 = pa.ipc.IpcWriteOptions(compression="lz4" if pa.Codec.is_available("lz4") else None)
        with pa.OSFile(str(staged), "wb") as sink, pa.ipc.new_file(sink, EVENT_SCHEMA, options=lz4) as writer:
            for batch in iter_batches(path, stats, engine=engine, chunk_bytes=chunk_bytes):
                writer.write_batch(batch)
        schema = EVENT_SCHEMA.with_metadata({STATS_KEY: json.dumps(stats.to_dict())})
        with pa.OSFile(str(staged)) as src, pq.ParquetWriter(final, schema) as pw:
            reader = pa.ipc.open_file(src)
            for i in range(reader.num_record_batches):
                pw.write_batch(reader.get_batch(i))
        os.replace(final, out)
    return stats


def read_stats(parquet_path) -> dict:
    """The ParseStats dict stored by write_parquet."""
    return json.loads(pq.read_schema(parquet_path).metadata[STATS_KEY])


# ----- CLI ----------------------------------------------------------------------------------
def _output_names(traces: list[Path], out: Path) -> list[Path]:
    """One trace: --out is the file. Several: --out is a directory of <run>.parquet, where
    <run> is the file name without .txt/.zst/... or, for trace.txt*, its directory's name."""
    if len(traces) == 1 and not out.is_dir():
        return [out]
    names = []
    for t in traces:
        stem = t.name
        while Path(stem).suffix in (".gz", ".xz", ".zst", ".txt", ".trace"):
            stem = Path(stem).stem
        names.append(out / f"{t.resolve().parent.name if stem == 'trace' else stem}.parquet")
    if len(set(names)) != len(names):
        raise SystemExit(f"error: output names collide: {[str(n) for n in names]}")
    return names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data.parse", description=__doc__.split("\n")[0])
    ap.add_argument("traces", nargs="+", type=Path, metavar="TRACE")
    ap.add_argument("--out", type=Path, required=True, help="Parquet file (one TRACE) or directory")
    ap.add_argument("--engine", choices=("auto", "c", "python"), default="auto")
    args = ap.parse_args(argv)
    status = 0
    for trace, out in zip(args.traces, _output_names(args.traces, args.out)):
        t0 = time.perf_counter()
        try:
            stats = write_parquet(trace, out, engine=args.engine)
        except (TraceFormatError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            status = 1
            continue
        print(f"{trace}: {stats.summary()} -> {out} [{stats.engine}, {time.perf_counter() - t0:.2f} s]")
        if stats.events == 0:
            print(f"warning: {trace}: no scheduler events (empty trace)", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
