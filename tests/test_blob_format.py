"""The model blob's header is defined once in Python and once in C (export/blob_format.py, .h).

The two must agree field for field, and no third definition may creep in: the source tree is
scanned for the magic and the header layout outside the two definition files. This file is
the one other place that spells the version-1 values out, so that changing both definitions
together still fails here.
"""

import dataclasses
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from export import blob_format
from tests.conftest import REPO, require

DEFINITIONS = {"export/blob_format.py", "export/blob_format.h"}
THIS = Path(__file__).resolve().relative_to(REPO).as_posix()
SOURCE_SUFFIXES = (".py", ".c", ".h")
# The magic as a number (either byte order) or as a 4-character string literal, any case.
MAGIC_RE = re.compile(r"0x4d4c4353|0x53434c4d|[\"']SCLM[\"']", re.IGNORECASE)
# The header layout: its struct format, or a 36-byte header size written as a number.
LAYOUT_RE = re.compile(
    r"IHHIIIIIII|I2H7I"
    r"|\w*(?:hdr|header)\w*[^\n\d]{0,12}\b36\b"
    r"|\b(?:len|size)\w*\s*(?:<|<=|>|>=|==|!=)\s*36\b"
    r"|\b36[- ]byte header",
    re.IGNORECASE,
)


def in_a_virtualenv(path: str) -> bool:
    """Under a Python virtual environment made inside the checkout (any name: its folder holds
    pyvenv.cfg), whose installed packages are not the project's source."""
    parts = path.split("/")
    return any((REPO.joinpath(*parts[:i]) / "pyvenv.cfg").is_file() for i in range(1, len(parts)))


def source_files() -> list[str]:
    """Tracked and new (not ignored) .py/.c/.h files, shipped data and virtual environments excluded."""
    ls = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if ls.returncode:
        pytest.skip(f"not a git checkout: {ls.stderr.strip()}")
    return sorted(
        {
            f
            for f in ls.stdout.splitlines()
            if f.endswith(SOURCE_SUFFIXES)
            and not f.startswith("datasets/")
            and not in_a_virtualenv(f)
            and (REPO / f).is_file()
        }
    )


def hits(text: str) -> dict[str, list[str]]:
    return {
        "magic": [m.group(0) for m in MAGIC_RE.finditer(text)],
        "layout": [m.group(0) for m in LAYOUT_RE.finditer(text)],
    }


def test_the_scan_recognises_definitions():
    """What the scan below looks for: a copy of either definition is found, other numbers are not."""
    copies = [
        '#define BLOB_MAGIC 0x4d4c4353u\t/* "SCLM" */',
        'MAGIC = 0x4D4C4353  # "SCLM" little endian',
        "assert data[:4] == b'sclm'",
        'HDR_FMT = "<IHHIIIIIII"',
        "#define BLOB_HDR 36",
        "if (len < 36 || rd32(b) != BLOB_MAGIC)",
        "hdr_size != 36",
        "HEADER_SIZE = 36",
        "shorter than the 36-byte header",
    ]
    for line in copies:
        assert any(hits(line).values()), line
    for line in ('#define VEC_MAGIC 0x564d4c53u\t/* "SLMV" */', "n_samples = 36", "struct.Struct('<QQ')"):
        assert not any(hits(line).values()), line


def test_blob_format_is_defined_once():
    files = source_files()
    assert DEFINITIONS <= set(files), "the two definitions are part of the tree"
    for name in DEFINITIONS:  # the scan finds what it is after
        found = hits((REPO / name).read_text())
        assert found["magic"] and found["layout"], (name, found)
    elsewhere = {}
    for name in files:
        if name in DEFINITIONS or name == THIS:
            continue
        found = {kind: h for kind, h in hits((REPO / name).read_text(errors="replace")).items() if h}
        if found:
            elsewhere[name] = found
    assert not elsewhere, (
        f"blob magic or header layout outside {sorted(DEFINITIONS)}: {elsewhere} "
        "(import export.blob_format / include blob_format.h instead)"
    )


def test_version_1_values():
    """The on-disk format itself: changing it is a new version, not an edit."""
    data = blob_format.pack(b"\1\2\3", arch_hash=5, n_in=1, n_out=1, window=1, macs=1)
    assert data[:4] == b"SCLM" and blob_format.MAGIC == 0x4D4C4353
    assert blob_format.VERSION == 1 and blob_format.HDR.size == 36 and blob_format.HDR.format == "<IHHIIIIIII"
    assert len(data) == 36 + 3


def test_pack_parse_round_trip():
    params = bytes(range(200))
    shape = dict(arch_hash=0xCAFEF00D, n_in=15, n_out=2, window=8, macs=1234)
    data = blob_format.pack(params, **shape)
    header, image = blob_format.split(data)
    assert image == params and blob_format.parse(data) == header
    assert dataclasses.asdict(header) == {
        "magic": blob_format.MAGIC,
        "version": blob_format.VERSION,
        "hdr_size": blob_format.HDR.size,
        **shape,
        "params_size": len(params),
        "crc32": zlib.crc32(params),
    }
    assert blob_format.pack(image, **{k: getattr(header, k) for k in shape}) == data
    with pytest.raises(blob_format.BlobError, match="corrupt"):
        blob_format.parse(data[:-1] + bytes([data[-1] ^ 1]))
    assert issubclass(blob_format.BlobError, ValueError)  # callers that catch ValueError keep working


def python_layout() -> list[tuple[str, int, int]]:
    """(field, offset, size) of every header field, from the struct format."""
    order, codes = blob_format.HDR.format[0], blob_format.HDR.format[1:]
    names = [f.name for f in dataclasses.fields(blob_format.BlobHeader)]
    assert len(names) == len(codes), "one struct code per BlobHeader field"
    return [
        (name, struct.calcsize(order + codes[:k]), struct.calcsize(order + code))
        for k, (name, code) in enumerate(zip(names, codes, strict=True))
    ]


def test_c_header_matches_python(tmp_path):
    """sizeof, every offsetof and field size, magic and version, compiled from blob_format.h."""
    require(shutil.which("gcc") is not None, "gcc (to compile blob_format.h)")
    fields = python_layout()
    show = "\n".join(
        f'\tprintf("{name} %zu %zu\\n", offsetof(struct schedlearn_blob_hdr, {name}), '
        f"sizeof(((struct schedlearn_blob_hdr *)0)->{name}));"
        for name, _, _ in fields
    )
    src = tmp_path / "layout.c"
    src.write_text(
        '#include <stddef.h>\n#include <stdio.h>\n\n#include "blob_format.h"\n\n'
        "int main(void)\n{\n"
        '\tprintf("sizeof %zu\\nSLM_BLOB_MAGIC %u\\nSLM_BLOB_VERSION %u\\n", '
        "sizeof(struct schedlearn_blob_hdr), SLM_BLOB_MAGIC, SLM_BLOB_VERSION);\n"
        f"{show}\n\treturn 0;\n}}\n"
    )
    exe = tmp_path / "layout"
    cmd = ["gcc", "-std=gnu11", "-Wall", "-Werror", "-I", str(blob_format.C_HEADER.parent), str(src), "-o", str(exe)]
    gcc = subprocess.run(cmd, capture_output=True, text=True)
    assert gcc.returncode == 0, gcc.stderr
    lines = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines()
    values = dict(line.split(" ", 1) for line in lines)
    assert int(values["sizeof"]) == blob_format.HDR.size
    assert int(values["SLM_BLOB_MAGIC"]) == blob_format.MAGIC
    assert int(values["SLM_BLOB_VERSION"]) == blob_format.VERSION
    got = [(name, *map(int, values[name].split())) for name, _, _ in fields]
    assert got == fields
