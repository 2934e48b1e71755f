"""The fixed inputs of bench_parse.py and bench_replay.py: the largest shipped trace, and the same
trace ten times over, generated once into a cache file.

The large input keeps the small one's comment header once, then its event lines REPEAT times;
repetition k has every timestamp moved k * STEP seconds later (STEP: the trace's span in whole
seconds, plus one), so the file stays in time order and replay sees one long run of the same
tasks rather than time going backwards. It is zstd-compressed like the shipped traces, so the
parser's path (decompression included) is the one a user's `python -m data.parse` takes.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path

from plumbing.atomic import atomic_path

REPO = Path(__file__).resolve().parents[1]
SMALL = REPO / "datasets" / "traces" / "stress-ng-yield-r03" / "trace.txt.zst"
REPEAT = 10
CACHE = Path(tempfile.gettempdir()) / "schedlearn-bench"
# " SECS.FRAC: " of an event header (6 or 9 fraction digits); no field of a sched event has it.
_TS = re.compile(rb"( )(\d+)(\.\d{6}: |\.\d{9}: )")


def _read_zst(path: Path) -> bytes:
    import zstandard

    with open(path, "rb") as fh, zstandard.ZstdDecompressor().stream_reader(fh, read_across_frames=True) as r:
        return r.read()


def large(small: Path = SMALL, repeat: int = REPEAT, cache: Path = CACHE) -> Path:
    """The repeated trace (`small` x `repeat`, .txt.zst), generated on first use (about 10 s)."""
    import zstandard

    key = hashlib.sha256(small.read_bytes() + b"%d" % repeat + Path(__file__).read_bytes()).hexdigest()[:12]
    out = cache / f"{small.parent.name}-x{repeat}-{key}.txt.zst"
    if out.exists():
        return out
    text = _read_zst(small) if small.suffix == ".zst" else small.read_bytes()
    lines = text.splitlines(keepends=True)
    n_head = next((i for i, line in enumerate(lines) if not line.startswith(b"#")), len(lines))
    head, body = b"".join(lines[:n_head]), b"".join(lines[n_head:])
    parts = _TS.split(body)  # [text, " ", secs, ".frac: ", text, " ", secs, ...]
    secs = parts[2::4]
    if len(secs) != len(lines) - n_head:
        raise SystemExit(f"{small}: {len(secs)} timestamps in {len(lines) - n_head} event lines; cannot repeat it")
    step = int(max(secs, key=int)) - int(min(secs, key=int)) + 1
    cache.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp, open(tmp, "wb") as fh:
        with zstandard.ZstdCompressor(level=3).stream_writer(fh, closefd=False) as w:
            w.write(head)
            for k in range(repeat):
                moved = {s: b"%d" % (int(s) + k * step) for s in set(secs)}
                parts[2::4] = [moved[s] for s in secs]
                w.write(b"".join(parts))
    for stale in cache.glob(f"{small.parent.name}-x{repeat}-*.txt.zst"):
        if stale != out:
            stale.unlink(missing_ok=True)
    return out
