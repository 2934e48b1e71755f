"""What every argparse command line of the project shares: a usage error is one line
("PROG: error: ..., see --help") and exit 2, not argparse's usage block plus a line; and the
one-line text of an OSError ("PATH: reason")."""

from __future__ import annotations

import argparse
import sys


class ArgParser(argparse.ArgumentParser):
    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def os_error(e: OSError) -> str:
    """'PATH: No such file or directory' (or the message alone when no file is named)."""
    if e.filename is not None and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return e.strerror or str(e)


def unwritable(path) -> str | None:
    """Why `path` (a file or folder to create) cannot be written, or None. A probe file is
    created and removed: access() says yes to root even on read-only or virtual filesystems."""
    import tempfile
    from pathlib import Path

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
    import json
    from pathlib import Path

    for p in sorted(Path(folder).rglob(name)):
        try:
            json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            return f"{p} is not readable JSON ({str(e).splitlines()[0][:120]})"
    return None
