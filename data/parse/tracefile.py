"""Kernel ftrace text -> typed event table (data/parse/schema.py), fast, streaming, nothing lost silently.

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
    cannot be told from the kernel's right-aligned padding and are dropped (field comms of
    the kernel formats are exact; trace-cmd's short formats start a comm after its padding,
    so there too leading spaces are dropped).
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

The C core (data/parse/_fastparse.c via data/parse/native.py) does the parsing; data/parse/reference.py is the
pure-Python reference with the same rules, used when no C compiler is available (one warning
line) and as the test oracle.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from plumbing.atomic import atomic_path
from plumbing.cli import ArgParser, fail, interrupted, os_error, unwritable

# numpy, pyarrow, the parsers (data.parse.native, data.parse.reference) and the decompressors are imported
# where they are used: importing this module, and the CLI up to its argument checks, stays
# cheap (`python -m data.parse --help`, whose start-up bench/bench_parse.py measures). The
# path from text to Parquet never imports pandas (see _count_batch): it is most of the fixed
# cost of a small trace otherwise.

__all__ = [
    "TraceFormatError",
    "ParseStats",
    "parse_file",
    "parse_bytes",
    "iter_batches",
    "write_parquet",
    "read_stats",
    "STATS_KEY",
]

STATS_KEY = b"schedlearn.parse_stats"
CHUNK_BYTES = 16 << 20  # text per parsing step: bounds memory, amortises the C call
MAX_LINE = 1 << 20  # a longer "line" means binary data, not ftrace text
_MAGIC = {b"\x1f\x8b": "gzip", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
_SUFFIX = {".gz": "gzip", ".xz": "xz", ".zst": "zstd"}
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
    skipped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_schema().SKIP_REASONS, 0))
    events_by_kind: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_schema().EVENT_KINDS[:-1], 0))
    first_line: dict[str, int] = field(default_factory=dict)  # first line of each skip reason

    def to_dict(self) -> dict:
        return asdict(self)

    def check(self) -> None:
        accounted = self.comment_lines + self.events + self.lost_markers + sum(self.skipped.values())
        if accounted != self.total_lines:
            raise AssertionError(f"{self.source}: {self.total_lines} lines but {accounted} accounted for")

    def _absorb(self, prog) -> None:
        schema = _schema()
        TOTAL, COMMENT, EVENT, LOST, OUTCOMES = schema.TOTAL, schema.COMMENT, schema.EVENT, schema.LOST, schema.OUTCOMES
        c = prog.counts
        self.total_lines, self.comment_lines = int(c[TOTAL]), int(c[COMMENT])
        self.events, self.lost_markers = int(c[EVENT]), int(c[LOST])
        self.skipped = {r: int(c[OUTCOMES.index(r)]) for r in schema.SKIP_REASONS}
        self.first_line = {r: int(prog.first[OUTCOMES.index(r)]) for r in schema.SKIP_REASONS if c[OUTCOMES.index(r)]}

    def _count_batch(self, batch) -> None:
        import numpy as np

        kinds = _schema().EVENT_KINDS
        # the codes straight from the Arrow buffer: Array.to_numpy() makes pyarrow import pandas
        # and pyarrow.compute (about 0.2 s, more than all other imports of `python -m data.parse`)
        idx = batch.column("event").indices
        codes = np.frombuffer(idx.buffers()[1], np.int8)[idx.offset : idx.offset + len(idx)]
        codes = np.bincount(codes, minlength=len(kinds))
        for kind in self.events_by_kind:
            self.events_by_kind[kind] += int(codes[kinds.index(kind)])
        lost = batch.column("lost_count")
        if lost.null_count < len(lost):  # rare: sum the valid values (numpy, not pyarrow.compute)
            values = np.frombuffer(lost.buffers()[1], np.int64)[lost.offset : lost.offset + len(lost)]
            valid = (
                np.ones(len(lost), bool)
                if lost.buffers()[0] is None
                else np.unpackbits(np.frombuffer(lost.buffers()[0], np.uint8), bitorder="little")[
                    lost.offset : lost.offset + len(lost)
                ]
            )
            self.lost_events += int(values[valid.astype(bool)].sum())

    def summary(self) -> str:
        kinds = ", ".join(f"{k[6:]} {v:,}" for k, v in self.events_by_kind.items() if v)
        skipped = ", ".join(f"{k} {v:,} (first at line {self.first_line[k]})" for k, v in self.skipped.items() if v)
        return (
            f"{self.total_lines:,} lines: {self.events:,} events ({kinds or 'none'}), "
            f"{self.lost_markers:,} lost markers ({self.lost_events:,} events lost), "
            f"{self.comment_lines:,} comment lines, skipped {sum(self.skipped.values()):,}"
            + (f": {skipped}" if skipped else "")
        )


def _schema():
    """data.parse.schema, imported when first needed: it brings numpy and pyarrow, which
    `--help` and usage errors never need."""
    from data.parse import schema

    return schema


# ----- input --------------------------------------------------------------------------------
def _compression(path: Path, head: bytes) -> str | None:
    kind = next((k for magic, k in _MAGIC.items() if head.startswith(magic)), None)
    expected = _SUFFIX.get(path.suffix)
    if expected and kind != expected:
        raise TraceFormatError(
            f"{path}: named like {expected} data but does not start like it (truncated, or not compressed?)"
        )
    return kind


class _ZstdReader:
    """readinto() over all zstd frames of a file; a frame cut short raises (zstandard's own
    readers would not). Input goes in small pieces because each call returns all its output."""

    def __init__(self, fh):
        import zstandard

        self.fh, self.dctx = fh, zstandard.ZstdDecompressor()
        self.obj, self.fed, self.pending, self.at = self.dctx.decompressobj(), False, b"", 0

    def readinto(self, view) -> int:
        """Fill `view` as far as the input goes; 0 only at the end."""
        done = 0
        while done < len(view):
            if self.at == len(self.pending):
                data = self.fh.read(_ZSTD_FEED)
                if not data:
                    if self.fed and not self.obj.eof:
                        raise EOFError("zstd frame ends before its end marker")
                    break
                self.fed = True
                self.pending, self.at = self.obj.decompress(data), 0
                if self.obj.eof:
                    self.pending += self._next_frame(self.obj.unused_data)
                continue
            n = min(len(view) - done, len(self.pending) - self.at)
            view[done : done + n] = memoryview(self.pending)[self.at : self.at + n]
            self.at += n
            done += n
        return done

    def _next_frame(self, rest: bytes) -> bytes:
        out = b""
        while True:
            self.obj, self.fed = self.dctx.decompressobj(), False
            if not rest:
                return out
            self.fed = True
            out += self.obj.decompress(rest)
            if not self.obj.eof:
                return out
            rest = self.obj.unused_data


def _errors(kind: str) -> tuple:
    """The exceptions that mean truncated or corrupt `kind` data."""
    if kind == "zstd":
        import zstandard

        return EOFError, OSError, zstandard.ZstdError
    if kind == "xz":
        import lzma

        return EOFError, OSError, lzma.LZMAError
    return EOFError, OSError


def _line_chunks(path: Path, chunk_bytes: int) -> Iterator[memoryview]:
    """Chunks of about chunk_bytes of decompressed text that end at a line boundary.

    The text is read straight into one reused buffer (readinto), and each chunk is a view of
    it: no joins or slices of the text. A chunk is consumed (parsed into batches that own
    their memory) before the next read overwrites the buffer. Errors name the file."""
    name = str(path)
    with open(path, "rb", buffering=0) as fh:
        kind = _compression(path, fh.read(6))
        fh.seek(0)
        if kind is None:
            reader = fh
        elif kind == "zstd":
            reader = _ZstdReader(fh)
        elif kind == "gzip":
            import gzip

            reader = gzip.GzipFile(fileobj=fh)
        else:
            import lzma

            reader = lzma.LZMAFile(fh)
        errors = _errors(kind) if kind else ()
        buf, filled = bytearray(max(chunk_bytes, 1 << 12)), 0
        while True:
            try:
                n = reader.readinto(memoryview(buf)[filled:])
            except errors as e:
                raise TraceFormatError(f"{path}: truncated or corrupt {kind} data: {e}") from None
            filled += n
            if n and filled < len(buf):
                continue
            if not n:  # end of input
                if filled:
                    yield memoryview(buf)[:filled]
                return
            cut = buf.rfind(b"\n", 0, filled) + 1
            if cut == 0:  # one line fills the buffer: grow it, up to MAX_LINE
                if filled > MAX_LINE:
                    raise TraceFormatError(f"{name}: a line longer than {MAX_LINE} bytes: not an ftrace text file")
                grown = bytearray(2 * len(buf))  # new memory: views of the old buffer stay valid
                grown[:filled] = buf
                buf = grown
                continue
            yield memoryview(buf)[:cut]
            rest = buf[cut:filled]
            if len(buf) > max(chunk_bytes, 1 << 12):  # grown for a long line: back to size
                buf = bytearray(max(chunk_bytes, 1 << 12, len(rest) + 1))
            buf[: len(rest)] = rest
            filled = len(rest)


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
def _parser(engine: str):
    # deferred like _schema(): the parsers bring numpy and pyarrow (and the reference's
    # regular expressions, a few ms of compiling, are needed only without the C core)
    from data.parse import native

    core = native.CORE.select(engine)
    if core is not None:
        return native.CParser(core)
    from data.parse.reference import RefParser

    return RefParser()


def _first_bad_line(chunk, first_line_of_chunk: int, line: int) -> str:
    text = bytes(chunk).split(b"\n", line - first_line_of_chunk + 1)[line - first_line_of_chunk]
    return text[:120].decode("utf-8", "replace")


def _run(chunks: Iterable, name: str, stats: ParseStats, engine: str) -> Iterator:
    schema = _schema()
    TOTAL, COMMENT, MALFORMED_HEADER = schema.TOTAL, schema.COMMENT, schema.MALFORMED_HEADER
    parser = _parser(engine)
    stats.source, stats.engine = name, parser.name
    prog = schema.Progress()
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
                f"{name}: not an ftrace text file: no event lines (line {bad}: {_first_bad_line(chunk, line0, bad)!r})"
            )
    stats.check()


def iter_batches(
    path, stats: ParseStats | None = None, *, engine: str = "auto", chunk_bytes: int = CHUNK_BYTES
) -> Iterator:
    """Stream a trace file as EVENT_SCHEMA record batches; `stats` (if given) fills as it goes
    and is complete when the iterator is exhausted. engine: "auto" | "c" | "python"."""
    path = Path(path)
    stats = ParseStats() if stats is None else stats
    return _run(_line_chunks(path, chunk_bytes), str(path), stats, engine)


def _table(batches: Iterable):
    import pyarrow as pa

    return pa.Table.from_batches(list(batches), schema=_schema().EVENT_SCHEMA)


def parse_file(path, *, engine: str = "auto", chunk_bytes: int = CHUNK_BYTES) -> tuple:
    """The whole trace as one table (chunked arrays, one chunk per parsing step) and its stats."""
    stats = ParseStats()
    return _table(iter_batches(path, stats, engine=engine, chunk_bytes=chunk_bytes)), stats


def parse_bytes(data: bytes, name: str = "<bytes>", *, engine: str = "auto", chunk_bytes: int = CHUNK_BYTES) -> tuple:
    """Like parse_file, for uncompressed text already in memory."""
    stats = ParseStats()
    return _table(_run(_bytes_chunks(data, chunk_bytes), name, stats, engine)), stats


# Parquet layout of write_parquet, chosen by measurement (bench/bench_parse.py --parquet-sweep,
# a 708,829-event hackbench trace, CPU seconds of writing / MB on disk): pyarrow's defaults
# (snappy, dictionary on every column, statistics) 0.26 s / 11.5 MB; uncompressed, dictionary
# on strings, no statistics 0.15 s / 39.7 MB; the choice below 0.16 s / 6.3 MB (zstd level 1
# instead of lz4: 0.20 s / 3.7 MB). Task names and flags repeat, so strings are dictionary
# encoded, and so is `event`, which must be: it keeps its whole EVENT_KINDS dictionary (the
# codes) only when written as a dictionary. Timestamps and line numbers grow, so they are delta
# encoded; every other column is a small integer, cheaper plain than dictionary-encoded.
# Column statistics are left out: nothing filters events by row group, and they cost about 15%
# of the write.
def parquet_options() -> dict:
    """pq.ParquetWriter keyword arguments of write_parquet (also data.parse.tracefile.PARQUET_OPTIONS)."""
    dictionary = [f.name for f in _schema().EVENT_SCHEMA if str(f.type) == "string" or f.name == "event"]
    return dict(
        compression="lz4",
        use_dictionary=dictionary,
        write_statistics=False,
        column_encoding={"ts": "DELTA_BINARY_PACKED", "line": "DELTA_BINARY_PACKED"},
    )


def __getattr__(name: str):
    if name == "PARQUET_OPTIONS":  # computed on use: it needs the schema, hence pyarrow
        return parquet_options()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _write_behind(writer, batches: Iterable) -> None:
    """writer.write_batch(b) for each batch, in a second thread while the next batch is parsed:
    the C parser (ctypes) and pyarrow's Parquet writer both release the GIL, so the two overlap.
    The same batches in the same order (the same file), one more batch in memory. A failed
    write raises here."""
    failed: list[BaseException] = []
    thread = None

    def write(batch) -> None:
        try:
            writer.write_batch(batch)
        except BaseException as e:  # re-raised in the caller's thread
            failed.append(e)

    try:
        for batch in batches:
            if thread is not None:
                thread.join()
            if failed:
                break
            thread = threading.Thread(target=write, args=(batch,), name="parquet-writer")
            thread.start()
    finally:
        if thread is not None:
            thread.join()
    if failed:
        raise failed[0]


def write_parquet(path, out, *, engine: str = "auto", chunk_bytes: int = CHUNK_BYTES) -> ParseStats:
    """Parse `path` into the Parquet file `out` (written atomically) with bounded memory: each
    batch goes to the file as it is parsed. The stats are known only at the end, so the Arrow
    schema (with the stats JSON under STATS_KEY, what read_stats and pq.read_schema return) is
    stored in the footer's key-value metadata when the file closes, instead of by the writer
    when it opens; readers see the same schema, metadata and rows either way."""
    import base64

    import pyarrow.parquet as pq

    event_schema = _schema().EVENT_SCHEMA
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stats = ParseStats()
    with atomic_path(out) as tmp:
        with pq.ParquetWriter(tmp, event_schema, store_schema=False, **parquet_options()) as writer:
            _write_behind(writer, iter_batches(path, stats, engine=engine, chunk_bytes=chunk_bytes))
            stats_json = json.dumps(stats.to_dict()).encode()
            schema = event_schema.with_metadata({STATS_KEY: stats_json})
            writer.add_key_value_metadata(
                {b"ARROW:schema": base64.b64encode(schema.serialize().to_pybytes()), STATS_KEY: stats_json}
            )
    return stats


def read_stats(parquet_path) -> dict:
    """The ParseStats dict stored by write_parquet."""
    import pyarrow.parquet as pq

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
        raise SystemExit(f"python -m data.parse: error: output names collide: {[str(n) for n in names]}")
    return names


def _one_line_error(trace: Path, e: Exception) -> str:
    """The error for the user: one short line (a binary file's bytes are not echoed)."""
    if isinstance(e, OSError):
        return os_error(e)
    msg = str(e)
    if "\\x" in msg or "\ufffd" in msg or len(msg) > 300:
        head = msg.split(" (line ")[0] if " (line " in msg else f"{trace}: not an ftrace text file"
        msg = f"{head[:200]} (binary data)"
    return msg


class EmptyTrace(ValueError):
    pass


def main(argv: list[str] | None = None) -> int:
    ap = ArgParser(prog="python -m data.parse", description=__doc__.split("\n")[0])
    ap.add_argument("traces", nargs="+", type=Path, metavar="TRACE")
    ap.add_argument("--out", type=Path, required=True, help="Parquet file (one TRACE) or directory")
    ap.add_argument("--engine", choices=("auto", "c", "python"), default="auto")
    ap.add_argument(
        "--allow-empty",
        action="store_true",
        help="write a 0-row table for a trace without scheduler events (an error otherwise)",
    )
    args = ap.parse_args(argv)
    for trace in args.traces:
        if not trace.exists() or trace.is_dir():
            ap.error(f"TRACE {trace}: {'is a folder' if trace.is_dir() else 'no such file'}")
        if not trace.is_file():
            ap.error(f"TRACE {trace}: not a regular file (pipes and devices are not read: save the trace first)")
    if len(args.traces) > 1 and args.out.exists() and not args.out.is_dir():
        ap.error(f"--out {args.out}: several traces need a folder, and this is a file")
    outs = _output_names(args.traces, args.out)
    for out in outs:
        if why := unwritable(out):
            ap.error(f"--out {args.out}: {why}")
    status = 0
    try:
        for trace, out in zip(args.traces, outs, strict=False):
            t0 = time.perf_counter()
            try:
                with atomic_path(out) as tmp:  # `out` appears only if the trace is accepted
                    stats = write_parquet(trace, tmp, engine=args.engine)
                    if stats.events == 0 and not args.allow_empty:
                        raise EmptyTrace(
                            f"{trace}: no scheduler events ({stats.total_lines} lines); "
                            f"nothing written (--allow-empty writes an empty table)"
                        )
            except (TraceFormatError, OSError, EmptyTrace) as e:
                status = fail(ap.prog, _one_line_error(trace, e))
                continue
            print(f"{trace}: {stats.summary()} -> {out} [{stats.engine}, {time.perf_counter() - t0:.2f} s]")
    except KeyboardInterrupt:
        return interrupted(ap.prog, "the table being written was discarded")
    return status
