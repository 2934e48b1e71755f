"""kernel/push_model.py: blob validation before a push (no kernel needed)."""

import struct
import subprocess
import sys
import zlib

import pytest

from export.blob_format import HDR, MAGIC, VERSION
from kernel import push_model as pm
from tests.conftest import REPO

PARAMS = bytes(range(256)) * 3
SHAPE = dict(arch_hash=0x1234ABCD, n_in=9, n_out=1, window=4, macs=600)
STATUS = (
    "gen=0 crc32=0x01020304 arch=0x1234abcd n_in=9 n_out=1 window=4 macs=600 params_size=768\n"
    "vectors=2048 match_builtin=2048 out_crc32=0xdeadbeef ns_per_forward=120\n"
    "hook=off mode=shadow calls=0 agree=0 model_migrate=0 cfs_migrate=0\n"
)


def blob(**kw):
    return pm.pack(PARAMS, **{**SHAPE, **kw})


def test_pack_parse_roundtrip_matches_contract_layout():
    data = blob()
    header = pm.parse(data)
    assert (header.magic, header.version, header.hdr_size) == (MAGIC, VERSION, HDR.size)
    assert (header.arch_hash, header.n_in, header.n_out, header.window, header.macs) == tuple(SHAPE.values())
    assert header.params_size == len(PARAMS) and header.crc32 == zlib.crc32(PARAMS)
    assert len(data) == HDR.size + len(PARAMS)


@pytest.mark.parametrize(
    "data, why",
    [
        (blob()[:4], f"shorter than the {HDR.size}-byte header"),
        (b"XXXX" + blob()[4:], "bad magic"),
        (blob(version=2), "format version 2"),
        (blob()[:-1], "truncated or trailing"),
        (blob() + b"\0", "truncated or trailing"),
        (blob(crc32=0), "corrupt"),
        (blob()[:40] + bytes([blob()[40] ^ 1]) + blob()[41:], "corrupt"),
    ],
    ids=["short", "magic", "version", "truncated", "trailing", "crc-field", "flipped-param"],
)
def test_parse_rejects_with_reason(data, why):
    with pytest.raises(pm.BlobError, match=why):
        pm.parse(data)


def test_parse_rejects_other_header_size():
    data = bytearray(blob())
    struct.pack_into("<H", data, 6, 40)
    with pytest.raises(pm.BlobError, match="header size 40"):
        pm.parse(bytes(data))


def test_status_parsing_and_target_check():
    st = pm.parse_status(STATUS)
    assert st["arch"] == 0x1234ABCD and st["mode"] == "shadow" and st["params_size"] == 768
    pm.check_target(pm.parse(blob()), st)  # matches: no error
    for field, bad in [("arch_hash", 1), ("n_in", 8), ("window", 2), ("macs", 601)]:
        with pytest.raises(pm.BlobError, match=f"{field} .* built for"):
            pm.check_target(pm.parse(blob(**{field: bad})), st)
    with pytest.raises(pm.BlobError, match="params_size"):
        pm.check_target(pm.parse(pm.pack(PARAMS[:-4], **SHAPE)), st)
    with pytest.raises(pm.BlobError, match="not a schedlearn module"):
        pm.check_target(pm.parse(blob()), {})


def test_cost_bound():
    header = pm.parse(blob())
    pm.check_cost(header, None)
    pm.check_cost(header, 600)
    with pytest.raises(pm.BlobError, match="600 MACs .* bound 599"):
        pm.check_cost(header, 599)


def test_cli_check_only(tmp_path, capsys):
    good, bad = tmp_path / "good.blob", tmp_path / "bad.blob"
    good.write_bytes(blob())
    bad.write_bytes(blob(crc32=7))
    assert pm.main([str(good), "--check-only"]) == 0
    assert "valid" in capsys.readouterr().out
    assert pm.main([str(bad), "--check-only"]) == 1
    assert "corrupt" in capsys.readouterr().err
    assert pm.main([str(good), "--check-only", "--max-macs", "10"]) == 1


def test_push_reports_missing_device(tmp_path):
    with pytest.raises(pm.BlobError, match="cannot open"):
        pm.push(blob(), str(tmp_path / "no-such-dev"))
    target = tmp_path / "sink"
    target.write_bytes(b"")
    pm.push(blob(), str(target))  # one write of the whole blob
    assert target.read_bytes() == blob()


def test_push_model_stays_standard_library_only():
    """It runs where numpy is not installed: importing it (and the blob format) loads no numpy or torch."""
    code = "import sys, kernel.push_model; print(sorted(m for m in ('numpy', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
