"""`python -m export` on a candidate scorer (task next_task_candidates, issue 21 item 5): the
per-candidate windows checked bit-exact in C, top-1 over each decision float vs integer, the C
decisions against the integer reference's argmax, ns per decision of 8 and 32 candidates, and
the kernel module's refusal. A tiny MLP trained a few steps on four shipped host traces (their
first 20,000 events, built with --runnable)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data.dataset.build import main as build_main
from export import __main__ as cli
from export import cbuild, pipeline, vectors
from export.evaluate import chosen_slots
from export.pipeline import DECISION_SIZES
from export.source import Decisions, from_checkpoint
from tests.conftest import REPO, require
from tests.export_synthetic import trained_source
from tests.tiny_checkpoint import tiny_checkpoint

TRACES = REPO / "datasets" / "traces"
RUNS = [f"hackbench-pipe-r0{i}" for i in (1, 2, 3)] + ["io-mix-r01"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint, datamodule) of an MLP scorer trained 20 steps on a small --runnable dataset."""
    from data.dataset.candidates import NextTaskCandidatesDataModule
    from models.tasks import NextTaskCandidatesModule

    tmp = tmp_path_factory.mktemp("export_cand")
    ds = tmp / "ds"
    args = ["--traces", *(str(TRACES / r) for r in RUNS), "--out", str(ds), "--unseen", "io", "--no-events"]
    assert build_main([*args, "--max-events", "20000", "--runnable"]) == 0
    data_cfg = {
        "_target_": "data.dataset.candidates.NextTaskCandidatesDataModule",
        "dataset_dir": str(ds),
        "window": 4,
        "val_category": None,
    }
    dm = NextTaskCandidatesDataModule(dataset_dir=str(ds), window=4, val_category=None)
    dm.prepare_data()
    dm.setup("fit")
    ckpt = tiny_checkpoint(
        NextTaskCandidatesModule,
        dm,
        {"_target_": "models.network.mlp", "width": 8, "depth": 1},
        data_cfg,
        tmp / "cand.ckpt",
        steps=20,
        monitor="val/top1",
        optimizer="torch.optim.AdamW",
    )
    return ckpt, dm


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    require(cbuild.have_gcc(), "gcc, objdump and nm")
    ckpt, _ = trained
    out = tmp_path_factory.mktemp("export_cand_out") / "export"
    code = cli.main_in_process([f"ckpt_path={ckpt}", f"out={out}", "vectors=4000", "time_calls=4000"])
    return code, out, json.loads((out / "report.json").read_text())


def test_source_has_one_window_per_candidate_grouped_by_decision(trained):
    ckpt, dm = trained
    src = from_checkpoint(str(ckpt), splits=["test_seen"])
    split, cs = src.evals[0], dm.get_split("test_seen")
    d = split.decisions
    assert src.max_candidates == dm.max_candidates and split.start is None and split.rows_x is None
    assert split.x.shape == (int(cs.counts().sum()), dm.meta["window"], dm.meta["n_features"])
    assert len(d.y) == len(cs) and np.array_equal(np.bincount(d.owner, minlength=len(cs)), cs.counts().numpy())
    assert len(src.input_names) == dm.meta["n_features"]
    # the slots of a decision are 0..n-1 in order, and a target is one of them or the miss slot
    first = np.r_[0, np.flatnonzero(np.diff(d.owner)) + 1]
    assert (d.slot[first] == 0).all() and (np.diff(d.owner) >= 0).all()
    assert ((d.y < cs.counts().numpy()) | (d.y == dm.max_candidates)).all()


def test_chosen_slots_is_the_first_best_of_each_decision():
    d = Decisions(np.array([0, 0, 0, 2, 2]), np.array([0, 1, 2, 0, 1]), np.array([1, 3, 1]))
    got = chosen_slots(np.array([0.5, 2.0, 2.0, -1.0, 3.0]), d)
    assert got.tolist() == [1, -1, 1]  # a tie goes to the first slot; decision 1 has no candidate


def test_candidate_export_is_bit_exact_and_decides_in_c(exported, trained):
    code, out, rep = exported
    assert code == 0
    assert rep["c_bit_exact"]["total"]["mismatches"] == 0 and rep["c_bit_exact"]["held_out"]["vectors"] > 0
    assert rep["kernel_object"]["ok"]
    for n in DECISION_SIZES:
        checked = rep["c_decisions"][str(n)]
        assert checked["decisions"] >= 1 and checked["mismatches"] == 0
    # the MLP evaluates a window whole: L - 1 pushes (no layers) and one step
    assert "#define SLM_HAVE_PUSH 1" in (out / "model.h").read_text()
    for name, r in rep["float_vs_int"].items():
        w = r["window"]
        assert "stream" not in r, name  # a candidate's window has no stream form
        assert w["decisions"] == len(trained[1].get_split(name)) and 0 < w["decisions_with_choice"] <= w["decisions"]
        assert 0.0 <= w["argmax_agreement"] <= 1.0 and 0.0 <= w["top1_int"] <= 1.0
        assert w["top1_drop_points"] == pytest.approx(100 * (w["top1_float"] - w["top1_int"]))
    seen = rep["float_vs_int"]["test_seen"]["window"]
    assert seen["argmax_agreement"] > 0.9  # a handful of decisions may flip on a near tie


def test_float_top1_is_the_trained_modules(exported, trained):
    """top1_float of the export's decisions is the module's own top1 on the split."""
    import torch

    from models.tasks import load_from_checkpoint

    module, _, _ = load_from_checkpoint(str(trained[0]))
    split = trained[1].get_split("test_seen")
    batch = split.batch(torch.arange(len(split)))
    with torch.no_grad():
        hits = int((module(batch).argmax(-1) == batch["y"]).sum())
    assert round(exported[2]["float_vs_int"]["test_seen"]["window"]["top1_float"] * len(split)) == hits


def test_decision_timing_and_kernel_verdict(exported):
    _, out, rep = exported
    dec = rep["decision_ns"]
    for n in DECISION_SIZES:
        t = dec[str(n)]
        assert t["candidates"] == n and t["decisions"] >= 100
        assert 0 < t["min_ns"] <= t["p50_ns"] <= t["p99_ns"]
        assert t["p50_ns_per_candidate"] == pytest.approx(t["p50_ns"] / n, abs=0.01)
    assert "slm_push()" in dec["what"]
    km = rep["kernel_module"]
    assert not km["ok"] and any("next_task_candidates" in r for r in km["reasons"])
    assert rep["inputs"]["encoded_by"] == "caller" and len(rep["inputs"]["pre_encoded"]) == rep["n_in"]
    md = (out / "report.md").read_text()
    assert "## ns per decision of the candidate scorer" in md and "## C decisions vs the integer" in md


def test_push_then_step_is_stepping_all_along(tmp_path):
    """An MLP's <p>_push() (the window kept, no layers) L - 1 times and one <p>_step() give what L
    steps give: the harness's decide, which pushes, against the integer reference's streamed
    outputs of held-out windows, on a model with tokens (an embedding before the window)."""
    require(cbuild.have_gcc(), "gcc, objdump and nm")
    src = trained_source("mlp", window=4, vocab=6, steps=20, width=8, depth=1)
    out = tmp_path / "export"
    rep = pipeline.run(src, out, n_vectors=2000)
    assert rep["c_bit_exact"]["total"]["mismatches"] == 0
    assert "#define SLM_HAVE_PUSH 1" in (out / "model.h").read_text()
    n = rep["vectors"]["held_out"]  # the first set of vectors.bin: windows of L steps from reset
    held = vectors.StreamSet(
        "held_out",
        vectors.read_vectors(out / "vectors.bin")[:n].reshape(-1, 4, rep["n_in"]),
        np.fromfile(out / "vectors_expected.bin", "<i4")[:n].astype(np.int64).reshape(-1, 4, 1),
    )
    win = tmp_path / "windows.bin"
    vectors.write_vectors(win, [held])
    exe = cbuild.build_harness(out, tmp_path / "build")
    for k in (1, 3):
        got = cbuild.run_decisions(exe, win, k, tmp_path)
        assert len(got) == len(held.inputs) // k
        assert pipeline.decision_check(got, held, k)["mismatches"] == 0
    # and the check can fail: a wrong score is caught
    got[0, 1] += 1
    assert pipeline.decision_check(got, held, 3)["mismatches"] == 1
