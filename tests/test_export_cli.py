"""`python -m export ckpt_path=... out=...` on a real (tiny) training checkpoint: outputs,
one-line errors, and an export interrupted midway leaving `out` as it was."""

import hashlib
import json
import re
import signal
import subprocess
import sys
import time
import zlib

import pytest

from export import __main__ as cli
from export import cbuild
from plumbing.hydra_cli import UserError
from tests.conftest import REPO, require
from tests.synthetic_dataset import write_synthetic_dataset
from tests.tiny_checkpoint import tiny_checkpoint


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint, datamodule) of a 5-step TCN on the SYNTHETIC fixture dataset."""
    from data.dataset.datamodule import MigrationDataModule
    from models.tasks import MigrationModule

    tmp = tmp_path_factory.mktemp("export_cli")
    ds = write_synthetic_dataset(tmp / "ds", migration_rows=400)
    data_cfg = {"_target_": "data.dataset.datamodule.MigrationDataModule", "dataset_dir": str(ds), "window": 8}
    dm = MigrationDataModule(dataset_dir=str(ds), window=8)
    dm.setup("fit")
    ckpt = tiny_checkpoint(
        MigrationModule,
        dm,
        {"_target_": "models.network.tcn", "width": 4, "depth": 1},
        data_cfg,
        tmp / "m.ckpt",
        steps=5,
    )
    return ckpt, dm


def tree(folder):
    """{relative path: sha256} of every file under `folder`."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_cli_rejects_bad_settings(trained, tmp_path):
    ckpt, _ = trained
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("old")
    cases = [
        ([f"out={tmp_path / 'o'}"], "ckpt_path= is required"),
        ([f"ckpt_path={tmp_path / 'none.ckpt'}", f"out={tmp_path / 'o'}"], "ckpt_path=.*no such file"),
        ([f"ckpt_path={ckpt}", f"out={tmp_path / 'o'}", "vectors=abc"], "vectors='abc': expected an integer"),
        ([f"ckpt_path={ckpt}", f"out={ckpt}"], "out=.*exists and is not a folder"),
        ([f"ckpt_path={ckpt}", f"out={full}"], "out=.*not empty .force=true"),
        ([f"ckpt_path={ckpt}", f"out={tmp_path / 'o'}", "prefix=1x"], "prefix='1x'"),
        ([f"ckpt_path={ckpt}", f"out={tmp_path / 'o'}", f"like={tmp_path}"], "like=.*not an export folder"),
        ([f"ckpt_path={ckpt}", f"out={tmp_path / 'o'}", "verify=maybe"], "verify='maybe': expected true or false"),
        ([f"ckpt_path={ckpt}", f"out={tmp_path / 'o'}", "vectors=0"], "vectors=0: must be >= 1"),
        ([f"ckpt_path={ckpt}", f"out={tmp_path / 'o'}", "colour=red"], "Could not override 'colour'"),
        (
            [f"ckpt_path={ckpt}", f"out={tmp_path / 'o'}", "+colour=red"],
            "unknown setting.s. colour: known are ckpt_path",
        ),
        ([f"ckpt_path={ckpt}", f"out={tmp_path / 'o'}", "splits=3"], "splits=3: expected a list"),
    ]
    for overrides, message in cases:
        with pytest.raises(UserError, match=message):
            cli.main_in_process(overrides)
    assert not (tmp_path / "o").exists() and (full / "x").read_text() == "old"


def test_cli_exports_a_checkpoint(trained, tmp_path, capsys):
    require(cbuild.have_gcc(), "gcc, objdump and nm")
    ckpt, dm = trained
    out = tmp_path / "export"
    assert (
        cli.main_in_process([f"ckpt_path={ckpt}", f"out={out}", "vectors=20000"]) == 0
    )  # in-process: imports are warm
    last = capsys.readouterr().out.strip().splitlines()[-1]
    for name in (
        "model.onnx",
        "parity.json",
        "parity.md",
        "calibration.json",
        "calibration.md",
        "model.h",
        "model_vectors.h",
        "model.blob",
        "vectors.bin",
        "vectors_expected.bin",
        "report.json",
        "report.md",
    ):
        assert (out / name).stat().st_size > 0, name
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no staging folder left beside it
    rep = json.loads((out / "report.json").read_text())
    assert rep["c_bit_exact"]["total"]["mismatches"] == 0 and rep["kernel_object"]["ok"]
    assert set(rep["float_vs_int"]) == {"test_seen", "test_unseen"}
    # what it learned from: the training runs and their collectors (synthetic runs name none)
    assert rep["trained_on"]["train_runs"] == dm.split["runs"]["train"]
    assert rep["trained_on"]["collectors"] == ["unknown"]
    # the last line names both MAC counts and each split's overflows and worst logit difference
    assert f"{rep['macs']:,} MACs per step ({rep['macs_per_decision']:,} MACs per decision (window 8))" in last
    for split, r in rep["float_vs_int"].items():
        worst = max(m["max_abs_logit_diff"] for m in r.values() if isinstance(m, dict))
        assert f"{split}: {rep['overflow_totals'][split]} overflows, max logit difference {worst:.4g}" in last
    # a TCN streams: a decision over the window costs about window x a step (the head once)
    assert 7 * rep["macs"] < rep["macs_per_decision"] <= 8 * rep["macs"]
    # a migration model: nothing per task, servable by the module; its step timed in the C harness
    assert rep["kernel_module"] == {"ok": True, "reasons": []}
    assert rep["per_task_state"]["window_by"] == "cpu" and rep["per_task_state"]["caller_bytes"] == 0
    assert rep["per_task_state"]["history_bytes"] > 0  # a TCN's rings
    assert rep["step_ns"]["one_task"]["p50_ns"] > 0 and rep["step_ns"]["interleaved"]["tasks"] == 1024
    assert "NOT for the kernel module" not in last and "per task" not in last
    enc = rep["encoder"]  # migration features are known: slm_encode is generated and checked
    assert enc["c_bit_exact"]["mismatches"] == 0 and enc["max_error_lsb"] < 1.0, enc
    # report.md: Markdown tables, not JSON
    md = (out / "report.md").read_text()
    assert md.count("\n|---|") >= 4 and "{" not in md, md
    assert f"0x{rep['arch_hash']:08x}" in md and "| test_unseen |" in md
    # the input layout for the module's fair.c hook: columns per input, names' crc32
    hdr = (out / "model.h").read_text()
    names = dm.meta["feature_names"]
    columns = [f["column"] for f in dm.meta["features"]] + ["valid"]
    assert names[-1] == "valid" and "kind" in columns
    assert "#define SLM_HAVE_IN_COLUMNS 1" in hdr
    assert f"#define SLM_N_IN_COLUMNS {len(names)}" in hdr
    assert f"#define SLM_IN_LAYOUT_HASH 0x{zlib.crc32(','.join(names).encode()):08x}u" in hdr
    table = re.search(r"slm_in_column\[SLM_N_IN_COLUMNS\][^=]*= \{(.*?)\};", hdr, re.S).group(1)
    assert re.findall(r'"([^"]*)"', table) == columns
    ko = cbuild.kernel_object(out, tmp_path / "obj")  # now with slm_encode compiled in
    assert ko["ok"], ko
    assert "slm_obj_encode" in subprocess.run(["nm", ko["object"]], capture_output=True, text=True).stdout
    cal = json.loads((out / "calibration.json").read_text())
    assert {"train", "test_seen", "test_unseen"} <= set(cal["overflow_totals"])
    assert all({"range", "frac", "overflow"} <= set(t) for t in cal["tensors"])


def test_summary_line_says_what_to_do_about_overflows(tmp_path):
    from export.pipeline import summary_line

    rep = {
        "arch_hash": 1,
        "macs": 2520,
        "macs_per_decision": 40110,
        "window": 16,
        "headroom_bits": 1,
        "overflow_totals": {"train": 0, "test_seen": 39},
        "float_vs_int": {"test_seen": {"windows": 9, "window": {"max_abs_logit_diff": 304.7}}},
        "c_bit_exact": {"total": {"mismatches": 0}},
        "kernel_object": {"ok": True},
    }
    line = summary_line(rep, tmp_path)
    assert "2,520 MACs per step (40,110 MACs per decision (window 16))" in line
    assert "test_seen: 39 overflows, max logit difference 304.7" in line and "train: 0 overflows" in line
    assert "OVERFLOWS" in line and "headroom=2 (now 1 bit(s)" in line
    rep["overflow_totals"]["test_seen"] = 0
    assert "headroom" not in summary_line(rep, tmp_path)


def start_export(*overrides):
    return subprocess.Popen(
        [sys.executable, "-m", "export", *overrides],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(proc, marker: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    for line in proc.stdout:
        if marker in line:
            return
        assert time.monotonic() < deadline, f"no {marker!r} in time"
    raise AssertionError(f"export ended before {marker!r}: {proc.wait()} {proc.stderr.read()}")


def test_interrupted_export_leaves_out_as_it_was(trained, tmp_path):
    """A re-export into a complete folder, killed (SIGKILL) and interrupted (SIGINT) midway:
    `out` keeps the old export byte for byte; a completed re-export replaces it whole."""
    ckpt, _ = trained
    out = tmp_path / "out"
    assert cli.main_in_process([f"ckpt_path={ckpt}", f"out={out}", "vectors=2000", "verify=false"]) == 0
    before = tree(out)
    args = [f"ckpt_path={ckpt}", f"out={out}", "force=true", "vectors=3000", "verify=false"]

    p = start_export(*args)
    wait_for(p, "parity:")  # model.onnx and parity.json are written by now
    p.kill()
    p.wait(timeout=30)
    assert tree(out) == before

    p = start_export(*args)
    wait_for(p, "parity:")
    p.send_signal(signal.SIGINT)
    p.stdout.read()
    err = p.stderr.read()
    assert p.wait(timeout=60) == 130
    assert err.strip().splitlines() == ["python -m export: interrupted"], err
    assert tree(out) == before

    # the killed export's staging folder is cleared by the next export; that one completes
    assert cli.main_in_process(args) == 0
    after = tree(out)
    assert set(after) == set(before) and after != before  # 3000 vectors, not 2000: all new
    assert json.loads((out / "report.json").read_text())["vectors"]["total"] >= 3000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_help_prints_usage():
    r = subprocess.run(
        [sys.executable, "-m", "export", "--help"], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and "python -m export ckpt_path=PATH out=DIR" in r.stdout and "vectors:" in r.stdout
