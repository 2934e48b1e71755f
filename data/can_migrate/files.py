"""can_migrate record files on disk -> decoded records (DataFrame of `cm_record.records_frame`).

A run keeps its records as `can_migrate.parquet` (the collector's decoded table) and/or the
loader's raw stream (`can_migrate.bin` or `records.bin`, possibly zstd-compressed as
`.bin.zst`). The builder and evaluate.py read both through `read_records`.
"""

from __future__ import annotations

import json
from pathlib import Path

from data.can_migrate.record import RecordFormatError, decode, frame_columns, records_frame, upgrade_frame, v1_columns
from plumbing.atomic import atomic_path

RECORD_FILES = ("can_migrate.parquet", "can_migrate.bin.zst", "can_migrate.bin", "records.bin.zst", "records.bin")
SUFFIXES = (".parquet", ".bin", ".bin.zst")


def is_record_file(path: Path) -> bool:
    name = Path(path).name
    return name.endswith(SUFFIXES) and not name.endswith(".txt.zst")


def run_records(run_dir: Path) -> Path | None:
    """The record file of a run directory (parquet first), or None."""
    return next((run_dir / n for n in RECORD_FILES if (run_dir / n).is_file()), None)


def write_records_parquet(records, path: Path, level: int = 19) -> Path:
    """The one way a run's decoded records (`records_frame`) become can_migrate.parquet, written
    atomically: zstd, BYTE_STREAM_SPLIT for the numeric columns (timestamps, loads and vruntimes
    compress about a fifth smaller split by byte than dictionary-coded), and no pandas or Arrow
    schema copy and no statistics in the footer (28 KB of a 124 KB run; Parquet's own types give
    the same dtypes back). Lossless: `record.to_records` rebuilds the loader's bytes from it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(records, preserve_index=False).replace_schema_metadata(None)
    numeric = [f.name for f in table.schema if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)]
    with atomic_path(path) as tmp:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            compression_level=level,
            use_dictionary=[f.name for f in table.schema if f.name not in numeric],
            column_encoding={c: "BYTE_STREAM_SPLIT" for c in numeric},
            write_statistics=False,
            store_schema=False,
        )
    return Path(path)


def read_meta(path: Path) -> dict | None:
    """A run's meta.json (None where there is none); RecordFormatError when it is unreadable."""
    path = Path(path)
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError) as e:
        raise RecordFormatError(f"{path}: unreadable meta.json ({e})") from e


def read_records(path: Path):
    """Decoded records of one file. Raises RecordFormatError (one line, naming the file) on a
    damaged stream, a parquet without the record columns, or an unknown file type."""
    import pandas as pd

    path = Path(path)
    name = path.name
    if name.endswith(".parquet"):
        df = pd.read_parquet(path)
        missing = [c for c in v1_columns() if c not in df.columns]
        if missing:
            raise RecordFormatError(
                f"{path}: not a can_migrate record table (missing "
                f"{', '.join(missing[:4])}{'...' if len(missing) > 4 else ''})"
            )
        df = upgrade_frame(df)  # a version 1 table (written before CMR2) gains the new columns
        return df[frame_columns() + [c for c in df.columns if c not in frame_columns()]].reset_index(drop=True)
    if name.endswith(".bin.zst"):
        import zstandard

        data, parts = path.read_bytes(), []
        while data:  # one or more concatenated frames, each of which must end
            dobj = zstandard.ZstdDecompressor().decompressobj()
            try:
                parts.append(dobj.decompress(data))
            except zstandard.ZstdError as e:
                raise RecordFormatError(f"{path}: bad zstd stream: {e}") from e
            if not dobj.eof:
                raise RecordFormatError(f"{path}: truncated zstd stream (the frame does not end)")
            data = dobj.unused_data
        buf = b"".join(parts)
    elif name.endswith(".bin"):
        buf = path.read_bytes()
    else:
        raise RecordFormatError(f"{path}: not a record file (expected {', '.join(SUFFIXES)})")
    return records_frame(decode(buf, str(path)))
