"""What every command line of the project shares: one error format and a few checks.

A failure is one line on stderr, `PROG: error: MESSAGE`, and Ctrl-C is `PROG: interrupted...`,
where PROG is what the user typed (`python -m data.build`, `train.py`, ...), so every CLI's
messages read alike. A usage error is that one line plus exit 2, not argparse's usage block
plus a line. Also: the one-line text of an OSError ("PATH: reason") and checks of the paths a
user gives.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def fail(prog: str, message: str, code: int = 1) -> int:
    """Print `PROG: error: MESSAGE` on stderr and return `code` (for `return fail(...)`)."""
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code


def interrupted(prog: str, detail: str = "", code: int = 130, by: str | None = None) -> int:
    """Print `PROG: interrupted[ (by)][; detail]` on stderr and return `code` (130: Ctrl-C)."""
    print(f"{prog}: interrupted{f' ({by})' if by else ''}{f'; {detail}' if detail else ''}", file=sys.stderr)
    return code


class ArgParser(argparse.ArgumentParser):
    def error(self, message: str):
        sys.exit(fail(self.prog, f"{message} (see --help)", 2))


def os_error(e: OSError) -> str:
    """'PATH: No such file or directory' (or the message alone when no file is named)."""
    if e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return e.strerror or str(e)


def unwritable(path) -> str | None:
    """Why `path` (a file or folder to create) cannot be written, or None. A probe file is
    created and removed: access() says yes to root even on read-only or virtual filesystems."""
    parent = Path(path).absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a folder"
    try:
        tempfile.TemporaryFile(dir=parent).close()
    except OSError as e:
        return f"cannot write in {parent} ({e.strerror})"
    return None


def bad_json(folder, name: str = "meta.json") -> str | None:
    """The first `name` under `folder` that is not readable JSON, with the reason, or None."""
    for p in sorted(Path(folder).rglob(name)):
        try:
            json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            return f"{p} is not readable JSON ({str(e).splitlines()[0][:120]})"
    return None
