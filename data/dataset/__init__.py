"""Datasets: the scheduler state replayed from events, workload-split Parquet tables, and
the windows and DataModules that training reads.

    python -m data.build TRACE_DIR... --out DIR --unseen CATEGORY

replay.py (C core _replay.c; replay_reference.py is its specification), build.py,
splits.py (the one train/validation/test rule), windows.py, encoding.py, datamodule.py."""
