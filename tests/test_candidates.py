"""next_task as candidate scoring (task next_task_candidates): the builder's --runnable files, the
DataModule's samples, slots and label-blind cut, the module's metrics, the candidate baselines, and
train.py / evaluate.py end to end. A small dataset built from seven shipped host traces (their
first 20,000 events)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from data.dataset.build import candidates_file, main
from data.dataset.candidates import CandidateSplit, NextTaskCandidatesDataModule, mtf_positions
from data.dataset.datamodule import NextTaskDataModule
from data.dataset.encoding import FeatureSpec, apply_specs, mtf_encode
from models.baselines import CandidateMarkov, LongestWait, MinVruntime
from models.tasks.next_task_candidates import MISS_LOGIT, NextTaskCandidatesModule, slot_logits
from tests.conftest import REPO

TRACES = REPO / "datasets" / "traces"
RUNS = [f"{w}-r0{i}" for w in ("hackbench-pipe", "oversub-sleep") for i in (1, 2, 3)] + ["io-mix-r01"]
SPLITS = ("train", "test_seen", "test_unseen")
QUIET = [
    "extras.print_config=false",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "hydra.job_logging.root.level=INFO",
]


def build(out: Path, *extra: str) -> Path:
    args = ["--traces", *(str(TRACES / r) for r in RUNS), "--out", str(out), "--unseen", "io", "--no-events"]
    assert main([*args, "--max-events", "20000", *extra]) == 0
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("cand") / "ds", "--runnable")


@pytest.fixture(scope="module")
def dm(dataset) -> NextTaskCandidatesDataModule:
    d = NextTaskCandidatesDataModule(str(dataset), window=4)
    d.prepare_data()
    d.setup("fit")
    return d


def run_py(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, script, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_runnable_build_writes_candidate_files_and_card(dataset):
    card = json.loads((dataset / "meta.json").read_text())
    assert card["candidates"] is True
    for split in SPLITS:
        cands = pd.read_parquet(dataset / "next_task" / candidates_file(split))
        nt = pd.read_parquet(dataset / "next_task" / f"{split}.parquet")
        assert set(cands["run_id"]) <= set(nt["run_id"]) and set(cands["run_id"]) <= set(card["splits"][split])
        assert card["candidate_counts"][split] == {"rows": len(cands), "switches": int(cands["chosen"].sum())}
        # every chosen row is the switch's next_tid in that run's next_task table (`row` = its index there)
        chosen = cands[cands["chosen"] == 1]
        for run, rows in chosen.groupby("run_id"):
            table = nt[nt["run_id"] == run].reset_index(drop=True)
            assert (table["next_tid"].to_numpy()[rows["row"].to_numpy()] == rows["tid"].to_numpy()).all()
    assert card["candidate_counts"]["train"]["rows"] > 0


def test_default_build_writes_no_candidates(tmp_path):
    out = build(tmp_path / "plain")
    assert json.loads((out / "meta.json").read_text())["candidates"] is False
    assert not list((out / "next_task").glob("candidates_*"))


def test_samples_are_next_task_switches_to_a_task(dataset, dm):
    nt = NextTaskDataModule(str(dataset), window=4)
    nt.setup("fit")
    for name in ("train", "val", "test_seen", "test_unseen"):
        split, tokens = dm.get_split(name), nt.get_split(name)
        to_task = tokens.target != nt.meta["idle_token"]
        assert len(split) == int(to_task.sum()) > 0
        assert torch.equal(split.index, tokens.index[to_task])  # the same windows


def test_chosen_slot_features_are_the_candidate_table_row(dataset, dm):
    split = dm.get_split("test_seen")
    files = pd.read_parquet(dataset / "next_task" / candidates_file("test_seen"))
    chosen = files[files["chosen"] == 1].set_index(["run_id", "row"])
    hit = torch.nonzero(split.target < split.max_candidates).flatten()
    assert len(hit) > 100
    samples = hit[torch.randperm(len(hit), generator=torch.Generator().manual_seed(0))[:300]]
    batch = split.batch(samples)
    specs = [FeatureSpec(**d) for d in dm.meta["candidate_features"]]
    n_step = dm.meta["n_step_features"]
    mean, std = np.asarray(dm.meta["candidate_mean"]), np.asarray(dm.meta["candidate_std"])
    for j, s in enumerate(samples.tolist()):
        r = split.rows.iloc[s]
        row = chosen.loc[(r["run_id"], r["next_row"])]
        at = torch.nonzero((batch["owner"] == j) & (batch["slot"] == batch["y"][j])).flatten()
        assert len(at) == 1
        x = batch["x"][at[0]].numpy()
        got = x[-1, n_step + 2 :] * std + mean
        named = {sp.name: k for k, sp in enumerate(specs)}
        raw = [sp for sp in specs if sp.column in files]  # the replay's own columns
        want = apply_specs(pd.DataFrame([row]), raw)[0]
        assert len(raw) >= 5
        for sp, value in zip(raw, want, strict=True):
            assert got[named[sp.name]] == pytest.approx(value, abs=1e-4), sp.name
        # its MTF position is the MTF token of the switch (data.dataset.encoding.mtf_encode)
        assert got[named[f"mtf_{r['target']}"]] == pytest.approx(1.0)
        assert (x[:, n_step + 2 :] == x[-1:, n_step + 2 :]).all()  # broadcast over the steps
        assert split.cand_tid[split.start[s] + batch["y"][j]] == row["tid"]


def test_mtf_positions_match_mtf_encode():
    rng = np.random.default_rng(3)
    tids = rng.choice([0, 1, 2, 3, 4, 5, 6, 7], size=400)
    starts = np.zeros(len(tids), dtype=bool)
    starts[[0, 150]] = True
    k = 4
    tokens = np.concatenate([mtf_encode(tids[:150], k)[0], mtf_encode(tids[150:], k)[0]])
    at = np.flatnonzero(tids != 0)
    pos = mtf_positions(tids, starts, at, tids[at], k)
    assert (pos == tokens[at]).all()


def test_the_cut_reads_waits_not_the_label(dataset):
    cut = NextTaskCandidatesDataModule(str(dataset), window=4, max_candidates=3)
    cut.setup("test")
    split = cut.get_split("test_seen")
    files = pd.read_parquet(dataset / "next_task" / candidates_file("test_seen"))
    nt = pd.read_parquet(dataset / "next_task" / "test_seen.parquet")
    nt["row"] = nt.groupby("run_id").cumcount()
    outgoing = nt.set_index(["run_id", "row"])["prev_tid"]
    sets = files.groupby(["run_id", "row"])
    large = kept_chosen = cut_chosen = 0
    for s in range(len(split)):
        r = split.rows.iloc[s]
        key = (r["run_id"], r["next_row"])
        if key not in sets.groups:
            continue
        full = sets.get_group(key)
        full = full[full["tid"] != outgoing.loc[key]]
        kept = set(full.sort_values(["wait_ns", "tid"], ascending=[False, True])["tid"].head(3))
        got = set(split.cand_tid[split.start[s] : split.start[s + 1]].tolist())
        assert got == kept
        if len(full) > 3:
            large += 1
            chosen = int(full.loc[full["chosen"] == 1, "tid"].iloc[0])
            if chosen in kept:
                kept_chosen += 1
                assert split.cand_tid[split.start[s] + split.target[s]] == chosen
            else:
                cut_chosen += 1
                assert split.target[s] == 3  # the miss slot
    assert large > 0 and kept_chosen + cut_chosen == large


class Pick(nn.Module):
    """A scorer that reads the last step's first input as the candidate's score."""

    def forward(self, x, tokens=None):
        return x[:, -1, :1]


def crafted_module(c: int = 4) -> NextTaskCandidatesModule:
    meta = {"task": "next_task_candidates", "n_features": 3, "window": 2, "n_out": 1, "max_candidates": c}
    backbone = {"_target_": "models.network.mlp", "width": 4, "depth": 1}
    module = NextTaskCandidatesModule(backbone, {"_target_": "torch.optim.AdamW", "_partial_": True}, meta)
    module.net = Pick()
    return module


def test_module_metrics_on_a_crafted_batch():
    module = crafted_module()
    scores = [[0.1, 0.9], [0.5], [0.7, 0.2, 0.1], []]  # per sample, in slot order
    y = torch.tensor([1, 0, 2, 4])  # 4: the miss slot (chosen task not in the set)
    owner = torch.tensor([i for i, s in enumerate(scores) for _ in s])
    slot = torch.tensor([j for s in scores for j in range(len(s))])
    x = torch.zeros(len(owner), 2, 3)
    x[:, -1, 0] = torch.tensor([v for s in scores for v in s])
    logits = module({"x": x, "owner": owner, "slot": slot, "y": y})
    assert logits.shape == (4, 5) and (logits[:, 4] == MISS_LOGIT).all()
    best = [int(np.argmax(s)) if s else -1 for s in scores]
    top3 = [sorted(range(len(s)), key=lambda j: -s[j])[:3] for s in scores]
    n = len(scores)
    want = {
        "top1": sum(b == t for b, t in zip(best, y.tolist(), strict=True)) / n,
        "top3": sum(t in t3 for t3, t in zip(top3, y.tolist(), strict=True)) / n,
        "single": sum(len(s) == 1 for s in scores) / n,
        "ceiling": sum(t < 4 for t in y.tolist()) / n,
        "top1_multi": np.mean([b == t for b, t, s in zip(best, y.tolist(), scores, strict=True) if len(s) >= 2]),
    }
    got = {k: float(v) for k, v in module.make_metrics()(module.metric_inputs(logits), y).items()}
    assert got == pytest.approx(want)
    assert got["top1"] < got["top3"] < 1.0
    loss = module.loss(logits, y)  # the miss sample carries no gradient, the rest a finite loss
    assert torch.isfinite(loss) and loss > 0


def hand_split(rows: pd.DataFrame, cands: pd.DataFrame, c: int = 4) -> CandidateSplit:
    n = len(rows)
    sample = cands["sample"].to_numpy()
    return CandidateSplit(
        "hand",
        torch.zeros(1, 1),
        torch.zeros(n, 1, dtype=torch.long),
        torch.as_tensor(rows["chosen_slot"].to_numpy(copy=True)),
        rows=rows,
        start=torch.from_numpy(np.searchsorted(sample, np.arange(n + 1)).astype(np.int64)),
        candidates=cands,
        max_candidates=c,
    )


def test_markov3_names_the_candidate_at_its_guessed_position():
    k = 16  # MTF list length: mtf_pos 16 = not in the list
    meta = {"k": k, "token_classes": k + 2, "token_count": k + 3}
    ctx = {"ctx2": 0, "ctx1": 1, "token": 0}
    train_rows = pd.DataFrame([{**ctx, "target": t, "chosen_slot": 0} for t in [1] * 5 + [3] * 2])
    train_cands = pd.DataFrame({"sample": range(7), "mtf_pos": train_rows["target"], "tid": 1})
    markov = CandidateMarkov(3).fit(hand_split(train_rows, train_cands), meta)
    test_rows = pd.DataFrame([{**ctx, "target": 1, "chosen_slot": 2}])
    test_cands = pd.DataFrame({"sample": 0, "mtf_pos": [3, k, 1], "tid": [10, 11, 12]})
    logits = markov.logits(hand_split(test_rows, test_cands), slice(0, 1))
    # the chain's guesses for this context: 1 (5 times), then 3 (twice); "not in the list" last
    assert logits[0, :3].argsort(descending=True).tolist() == [2, 0, 1]
    assert (logits[0, 3:] < logits[0, :3].min()).all()


def test_rule_baselines_rank_by_their_proxy():
    rows = pd.DataFrame([{"chosen_slot": 0}, {"chosen_slot": 1}])
    cands = pd.DataFrame(
        {"sample": [0, 0, 0, 1, 1], "wait_ns": [5, 9, 1, 7, 3], "vruntime_proxy": [4, 0, 2, 0, 8], "tid": range(5)}
    )
    split = hand_split(rows, cands)
    for rule, column, sign in ((LongestWait(), "wait_ns", -1), (MinVruntime(), "vruntime_proxy", 1)):
        top = rule.logits(split, slice(0, 2)).argmax(-1).tolist()
        for s, t in enumerate(top):
            own = cands[cands["sample"] == s][column].to_numpy()
            assert t == int(np.argmin(sign * own))


def test_slot_logits_leave_padding_below_candidates_and_the_miss_lowest():
    out = slot_logits(torch.tensor([-50.0, 3.0]), torch.tensor([0, 1]), torch.tensor([0, 0]), 2, 3)
    assert out.shape == (2, 4)
    assert (out[:, 3] < out[:, 1]).all() and (out[:, 1] < out[:, 0]).all()


def test_train_cli_then_evaluate_on_a_foreign_trace(dataset, tmp_path):
    out = tmp_path / "run"
    run_py(
        "train.py",
        "task=next_task_candidates",
        "model=mlp",
        "model.width=8",
        "model.depth=1",
        "trainer.max_epochs=1",
        f"paths.dataset_dir={dataset}",
        f"hydra.run.dir={out}",
        *QUIET,
    )
    metrics = json.loads((out / "test_metrics.json").read_text())
    for split in ("test_seen", "test_unseen"):
        for m in ("top1", "top3", "top1_multi", "single", "ceiling"):
            assert 0.0 <= metrics[f"{split}/{m}"] <= 1.0
        for b in ("min_vruntime", "longest_wait", "prev_if_preempted", "markov3"):
            assert metrics[f"{split}/baseline/{b}/top1"] <= metrics[f"{split}/ceiling"] + 1e-6
        assert metrics[f"{split}/top1"] <= metrics[f"{split}/top3"] <= metrics[f"{split}/ceiling"] + 1e-6
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "next_task_candidates" and results["macs"] > 0
    trace = REPO / "datasets" / "foreign_traces" / "perl-strings-r01"
    ev = tmp_path / "eval"
    run_py(
        "evaluate.py",
        f"runs={out}",
        f"traces=[{trace}]",
        "workloads=false",
        "latency.enabled=false",
        "importance.enabled=false",
        "plots=false",
        f"hydra.run.dir={ev}",
    )
    model = json.loads((ev / "metrics.json").read_text())["models"][0]
    name = next(s for s in model["splits"] if s.startswith("trace/"))
    assert model["splits"][name]["n"] > 0 and 0.0 <= model["splits"][name]["top1"] <= 1.0
    assert set(model["baselines"][name]) == {"min_vruntime", "longest_wait", "prev_if_preempted", "markov3"}


def test_a_dataset_without_candidates_is_one_line_naming_the_build_flag(tmp_path):
    plain = build(tmp_path / "plain")
    proc = run_py(
        "train.py",
        "task=next_task_candidates",
        f"paths.dataset_dir={plain}",
        f"hydra.run.dir={tmp_path}/r",
        check=False,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("train.py: error: ") and "--runnable" in lines[0], proc.stderr[-2000:]
    assert lines[1:] == ["  python -m data.build --traces DIR --out DATASET --runnable"], proc.stderr[-2000:]
