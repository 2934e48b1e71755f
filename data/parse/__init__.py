"""Parsing: ftrace text into the typed event table (schema.py), fast and losslessly.

    python -m data.parse TRACE [--out events.parquet]

tracefile.py (the CLI, input handling, counted outcomes), native.py (the C core
_fastparse.c through ctypes), reference.py (the pure-Python parser: the specification, the
fallback without a C compiler, and the tests' oracle)."""
