"""Build the module out of tree with kbuild, in a scratch directory.

The sources are copied next to the generated headers so that the repository stays
free of build outputs and any export output directory can be compiled in.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from export.blob_format import C_HEADER as BLOB_HEADER

HERE = Path(__file__).resolve().parent
SOURCES = ("schedlearn.c", "Kbuild", "sched_lb_model.h", "slm_cm_input.h")
# the can_migrate feature contract, shared with the BPF collector (one floor down)
CONTRACT = HERE.parent / "data" / "collect" / "bcc" / "cm_features.h"
# headers from the floors below, copied beside the sources: the contract, the blob format and its rules
SHARED_HEADERS = (CONTRACT, BLOB_HEADER, BLOB_HEADER.with_name("blob_check.h"))
GENERATED = ("model.h", "model_vectors.h")


def find_headers(release: str | None = None) -> Path | None:
    """Debian's linux-headers for `release` (e.g. 6.1.0-56-amd64), else the newest 6.1 ABI."""
    if release:
        headers = Path(f"/usr/src/linux-headers-{release}")
        return headers if headers.is_dir() else None
    found = sorted(glob.glob("/usr/src/linux-headers-6.1.0-*-amd64"), key=lambda path: int(path.split("-")[3]))
    return Path(found[-1]) if found else None


@dataclass
class Build:
    ko: Path
    log: str  # make's stdout + stderr
    returncode: int

    @property
    def warnings(self) -> list[str]:
        return [line for line in self.log.splitlines() if "warning:" in line or "error:" in line]


def build_module(gen_dir: Path, build_dir: Path, headers: Path, timeout: float = 300) -> Build:
    """make -C <headers> M=<build_dir> W=1 modules with gen_dir's model.h compiled in."""
    build_dir.mkdir(parents=True, exist_ok=True)
    for name in SOURCES:
        shutil.copy2(HERE / name, build_dir / name)
    for header in SHARED_HEADERS:
        shutil.copy2(header, build_dir / header.name)
    gen = build_dir / "gen"
    gen.mkdir(exist_ok=True)
    for name in GENERATED:
        shutil.copy2(Path(gen_dir) / name, gen / name)
    make = subprocess.run(
        ["make", "-C", str(headers), f"M={build_dir}", "W=1", "modules"],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Build(build_dir / "schedlearn.ko", make.stdout + make.stderr, make.returncode)
