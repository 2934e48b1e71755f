"""The libFuzzer targets of tests/fuzz/ (issue 23): every corpus and regression input through each
harness as an ordinary test (the plain driver build: any compiler with ASan/UBSan), their
outcomes beside the Python references, and a 30 s libFuzzer run per target (marker `fuzz`;
needs clang-19 and libclang-rt-19-dev)."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest

from export import blob_format
from plumbing import fuzz
from tests.conftest import require

BLOB_MODEL = fuzz.FUZZ / "blob_model"
HDR = blob_format.HDR.size
MAX_MACS = 1 << 20  # SLM_BLOB_MAX_MACS, export/blob_check.h: the module's max_macs default


@pytest.fixture(scope="module")
def drivers():
    require(fuzz.driver_compiler() is not None, "a C compiler (clang-19 or gcc) for the fuzz drivers")
    return {name: fuzz.build(name, fuzzer=False) for name in fuzz.TARGETS}


def lines_by_input(stdout: str, name: str) -> dict[str, str]:
    """The driver's outcome line of each input, keyed by its path."""
    out = {}
    for line in stdout.splitlines():
        words = line.split()
        path = words[1] if name == "blob" else words[0]
        out[path] = line
    return out


@pytest.mark.parametrize("name", tuple(fuzz.TARGETS))
def test_corpus_and_regression_inputs_pass_the_harness(drivers, name):
    r = fuzz.regress(name, exe=drivers[name])
    assert r.returncode == 0, r.stderr[-3000:]
    seen = lines_by_input(r.stdout, name)
    assert sorted(seen) == sorted(str(p) for p in fuzz.inputs(name))
    assert len(list(fuzz.corpus(name).iterdir())) >= 3  # a handful of seeds per target


def test_parser_counts_equal_the_reference_parser(drivers):
    """The C core's outcome counts on each input (they add up to its lines: the harness checks)
    are the pure-Python reference parser's."""
    from data.parse.schema import OUTCOMES
    from data.parse.tracefile import TraceFormatError, parse_bytes

    r = fuzz.regress("parse", exe=drivers["parse"])
    assert r.returncode == 0, r.stderr[-3000:]
    compared = 0
    for path, line in lines_by_input(r.stdout, "parse").items():
        counts = [int(x) for x in line.split("counts=")[1].split(",")]
        data = open(path, "rb").read()
        assert counts[0] == data.count(b"\n") + (bool(data) and not data.endswith(b"\n"))
        try:
            _, stats = parse_bytes(data, path, engine="python")
        except TraceFormatError:  # no event line at all: the reference stops there, as the CLI does
            continue
        want = dict(zip(OUTCOMES, counts, strict=True))
        assert (stats.total_lines, stats.comment_lines, stats.events, stats.lost_markers) == (
            want["total"],
            want["comment"],
            want["event"],
            want["lost"],
        ), path
        assert stats.skipped == {k: want[k] for k in stats.skipped}, path
        compared += 1
    assert compared >= 3


def python_verdict(blob: bytes, status: dict) -> bool:
    """The Python-side validator of a push (kernel/push_model.py) against this model."""
    from kernel import push_model as pm

    try:
        header = pm.parse(blob)
        pm.check_target(header, status)
        pm.check_cost(header, MAX_MACS)
    except pm.BlobError:
        return False
    return True


def test_accepted_blobs_load_and_decide_as_the_python_reference(drivers, tmp_path):
    """Each blob input as the fuzz build sees it (crc32 recomputed): accepted by the module's C
    check exactly when the Python validator accepts it, and an accepted blob's outputs on random
    inputs are those of export's integer reference with that blob's params."""
    from export.intref import IntRef, Stream
    from kernel import cm_parity

    report = json.loads((BLOB_MODEL / "report.json").read_text())
    status = {k: report[k] for k in ("n_in", "n_out", "window", "macs")}
    status |= {"arch": report["arch_hash"], "params_size": (BLOB_MODEL / "model.blob").stat().st_size - HDR}
    rng = np.random.default_rng(0)
    x = rng.integers(-(1 << 16), 1 << 16, (48, report["n_in"])).astype("<i4")
    (tmp_path / "in.bin").write_bytes(x.tobytes())
    r = fuzz.regress("blob", {"FUZZ_BLOB_INPUTS": str(tmp_path / "in.bin")}, exe=drivers["blob"])
    assert r.returncode == 0, r.stderr[-3000:]
    verdicts = {True: 0, False: 0}
    for path, line in lines_by_input(r.stdout, "blob").items():
        blob = bytearray(open(path, "rb").read()[1:])
        if len(blob) > HDR:  # SLM_FUZZ_FIX_CRC
            crc_at = HDR - 4  # crc32: the header's last u32 (BlobHeader)
            blob[crc_at:HDR] = zlib.crc32(bytes(blob[HDR:])).to_bytes(4, "little")
        accepted = line.startswith("accept ")
        assert accepted == python_verdict(bytes(blob), status), line[:200]
        verdicts[accepted] += 1
        if not accepted:
            continue
        (tmp_path / "model.blob").write_bytes(blob)
        q = cm_parity.load_export(BLOB_MODEL, tmp_path / "model.blob")
        want = Stream(IntRef(q), 1).run(x[None].astype(np.int64))[0]
        got = np.array([int(v) for v in line.split("out=")[1].split(",")]).reshape(want.shape)
        np.testing.assert_array_equal(got, want, err_msg=path)
    assert verdicts[True] >= 2 and verdicts[False] >= 2  # both ways are exercised


def test_missing_clang_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(fuzz, "CLANG", "clang-19-not-installed")
    assert fuzz.main(["build", "parse"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "clang-19-not-installed not found" in err[0] and "libclang-rt-19-dev" in err[0]


@pytest.mark.fuzz
@pytest.mark.parametrize("name", tuple(fuzz.TARGETS))
def test_fuzz_30_seconds_without_a_crash(name):
    why = fuzz.missing()
    require(why is None, why or "")
    res = fuzz.run(name, seconds=30)
    assert res.crashes == [] and res.returncode == 0, res.log[-4000:]
    assert res.execs > 1000 and res.edges > 0, res.line(name)
