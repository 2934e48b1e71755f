"""`python -m export` of forced_future checkpoints (issue 22, item 4): models whose inputs and
state belong to a task. The C must be bit-exact, the report must give the bytes a caller keeps
per task and the ns per streaming step, and the kernel module's tooling must refuse the export."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from data.dataset.forced_future import FORCED_FUTURE
from export import __main__ as cli
from export import cbuild, encode
from kernel import push_model
from tests.conftest import require
from tests.test_forced_future import KW, write_dataset
from tests.tiny_checkpoint import tiny_checkpoint

U64 = 8  # the caller's u64 time of the task's previous call (log_dt_prev_call, has_prev_call)
S16, U32 = 2, 4


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("ffx") / "ds")


def checkpoint(dataset, tmp, backbone: dict, window: int, inputs: str):
    """A 2-step forced_future checkpoint (windows by task) of `backbone`."""
    from data.dataset.datamodule import CanMigrateDataModule
    from models.tasks import CanMigrateModule

    kw = {**KW, "inputs": inputs}
    dm = CanMigrateDataModule(str(dataset), window=window, window_by="task", **kw)
    dm.setup("fit")
    data_cfg = {"_target_": "data.dataset.datamodule.CanMigrateDataModule", "dataset_dir": str(dataset)}
    run_data = {**data_cfg, **kw, "window": window, "window_by": "task"}
    ckpt = tiny_checkpoint(CanMigrateModule, dm, backbone, run_data, tmp / "m.ckpt", steps=2)
    return ckpt, dm.meta


def exported(dataset, tmp, backbone, window, inputs):
    ckpt, meta = checkpoint(dataset, tmp, backbone, window, inputs)
    assert meta["label"] == FORCED_FUTURE and meta["window_by"] == "task"
    out = tmp / "export"
    code = cli.main_in_process([f"ckpt_path={ckpt}", f"out={out}", "vectors=2000", "time_calls=6400"])
    return code, out, json.loads((out / "report.json").read_text()), meta


def struct_fields(model_h: str) -> str:
    return re.search(r"struct slm_state \{(.*?)\};", model_h, re.S).group(1)


CASES = {
    # backbone, window, inputs, history bytes computed from the sizes alone
    "lstm": ({"_target_": "models.network.lstm", "width": 3, "depth": 1}, 4, "extended", 2 * 3 * S16),  # h, c
    # one block, kernel 2, dilation 1: t, the input and the block's rings of 2 steps (the head reads
    # the last step only, so a 1x1 residual adds no ring)
    "tcn": ({"_target_": "models.network.tcn", "width": 2, "depth": 1, "kernel_size": 2}, 4, "chen", None),
    "mlp": ({"_target_": "models.network.mlp", "width": 4, "depth": 1}, 1, "chen", 0),  # the current call only
}


@pytest.mark.parametrize("kind", list(CASES))
def test_forced_future_exports_with_its_per_task_state(dataset, tmp_path, kind, capsys):
    require(cbuild.have_gcc(), "gcc, objdump and nm")
    backbone, window, inputs, history = CASES[kind]
    code, out, rep, meta = exported(dataset, tmp_path, backbone, window, inputs)
    assert code == 0, capsys.readouterr().out[-2000:]
    assert rep["c_bit_exact"]["total"]["mismatches"] == 0 and rep["c_bit_exact"]["total"]["vectors"] >= 2000
    assert rep["selftest"]["ok"] and rep["kernel_object"]["ok"]

    task = rep["per_task_state"]
    hdr = (out / "model.h").read_text()
    if history is None:  # TCN: one u32 step counter + every ring, read off model.h's declarations
        rings = re.findall(r"s16 (\w+)\[(\d+)\]\[(\d+)\];\t/\* ring of past steps", struct_fields(hdr))
        assert rings and all(int(n) == 2 for _, n, _ in rings)  # kernel 2, dilation 1: 2 steps
        widths = sorted(int(w) for _, _, w in rings)
        assert widths == sorted([len(meta["feature_names"]), backbone["width"]])
        history = U32 + sum(S16 * 2 * w for w in widths)
    assert task["history_bytes"] == history
    assert task["caller_bytes"] == U64 and [c["field"] for c in task["caller"]] == ["u64 prev_call_ns"]
    assert sorted(task["caller"][0]["columns"]) == ["dt_prev_call_ns", "has_prev_call"]
    assert task["bytes_per_task"] == history + U64
    # the trained window exactly instead: the task's last `window` s16 inputs and a u32 slot
    replay = U32 + window * len(meta["feature_names"]) * S16 + U64 if window > 1 else None
    assert task["window_replay_bytes_per_task"] == replay
    # sizeof(struct slm_state) as gcc lays it out: history + per-step scratch (+ padding)
    exe = cbuild.build_harness(out, tmp_path / "h")
    assert task["state_struct_bytes"] == cbuild.state_size(exe) >= history + task["scratch_bytes"]
    assert task["bytes_per_task_whole_struct"] == task["state_struct_bytes"] + U64

    ns = rep["step_ns"]
    assert ns["one_task"]["tasks"] == 1 and ns["interleaved"]["tasks"] == 1024
    for fig in (ns["one_task"], ns["interleaved"]):
        assert 0 < fig["min_ns"] <= fig["p50_ns"] <= fig["p99_ns"]

    md = (out / "report.md").read_text()
    assert "## Per-task state" in md and f"**{history + U64}**" in md
    assert "## ns per call of the streaming step" in md and "| 1024 |" in md

    km = rep["kernel_module"]
    assert km["ok"] is False and any("dt_prev_call_ns, has_prev_call need per-task history" in r for r in km["reasons"])
    assert any("windows by task" in r for r in km["reasons"]) == (history > 0)
    assert any("data.inputs=extended" in r for r in km["reasons"]) == (inputs == "extended")

    # who encodes: the chen + per-task inputs have an exact integer encoder; extended ones do not
    if inputs == "chen":
        assert rep["inputs"]["encoded_by"] == "slm_encode" and "#define SLM_HAVE_ENCODE 1" in hdr
        assert rep["encoder"]["c_bit_exact"]["mismatches"] == 0
        assert "log_dt_prev_call: log1p_us" in rep["encoder"]["inputs"]
    else:
        assert rep["inputs"]["encoded_by"] == "caller" and "HAVE_ENCODE" not in hdr and "encoder" not in rep
        assert "util_avg: identity of column util_avg, which has no integer contract" in rep["inputs"]["pre_encoded"]
        assert "## Inputs: encoded by the caller" in md

    # the module's tooling refuses the export in one line, --check-only included
    for extra in (["--check-only"], ["--dev", str(tmp_path / "no-dev")]):
        capsys.readouterr()
        assert push_model.main([str(out / "model.blob"), *extra]) == 1
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "its export is not for the kernel module" in err, err


def test_contract_divisors_stay_with_chen_columns_beside_per_task_inputs():
    """A can_migrate model on Chen's 15 + log_dt_prev_call: src_load keeps the contract's divisor
    (the kernel passes load * divisor), the per-task inputs have none; outside can_migrate no
    column has one."""
    from data.can_migrate.int_features import FEATURES

    cols = ["src_load", "delta_hot", "dt_prev_call_ns", "has_prev_call", "valid"]
    divisor = dict(FEATURES)["src_load"]
    assert divisor > 1
    assert encode.column_divisors(cols, contract=True) == [divisor, 1, 1, 1, 1]
    assert encode.column_divisors(cols, contract=False) == [1] * 5
    specs = [{"name": "util_avg", "column": "util_avg", "transform": "identity"}]
    assert encode.unencodable({"specs": specs}, contract=True) == [
        "util_avg: identity of column util_avg, which has no integer contract"
    ]
    assert encode.unencodable({"specs": specs}, contract=False) == []
    enc = encode.make_encoder(
        {
            "specs": [{"name": "src_load", "column": "src_load", "transform": "identity"}],
            "mean": [2.0],
            "std": [4.0],
            "names": ["src_load"],
        },
        10,
        1,
        contract=True,
    )
    raw = np.array([[6 * divisor]])  # the kernel's integer for a trained src_load of 6
    assert encode.encode_ref(enc, raw, False)[0, 0] == round((6 - 2.0) / 4.0 * 2**10)


def test_push_model_passes_an_export_the_module_can_serve(tmp_path, capsys):
    """No report.json, or one whose kernel_module is ok: the blob is judged on its own."""
    from export.blob_format import pack

    blob = tmp_path / "model.blob"
    blob.write_bytes(pack(b"\0" * 8, arch_hash=1, n_in=1, n_out=1, window=1, macs=1))
    assert push_model.main([str(blob), "--check-only"]) == 0
    (tmp_path / "report.json").write_text(json.dumps({"kernel_module": {"ok": True, "reasons": []}}))
    assert push_model.main([str(blob), "--check-only"]) == 0
    (tmp_path / "report.json").write_text(json.dumps({"kernel_module": {"ok": False, "reasons": ["why"]}}))
    capsys.readouterr()
    assert push_model.main([str(blob), "--check-only"]) == 1
    assert "its export is not for the kernel module: why" in capsys.readouterr().err
