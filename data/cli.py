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
