"""Units of evaluation: analytic MAC counts, the Pareto front, the winner rule, labels."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from evaluation.latency import summarise
from evaluation.plots import pareto_front
from evaluation.sources import assign_labels
from evaluation.winner import pick_winners
from models.backbones import LSTM, MLP, TCN
from models.cost import macs_per_decision, parameter_count
from models.network import SchedNet


def test_macs_mlp_is_one_pass_over_the_flattened_window():
    net = SchedNet(MLP(5, 4, [8, 6]), n_out=1)
    assert macs_per_decision(net, torch.zeros(1, 4, 5), None) == 20 * 8 + 8 * 6 + 6 * 1


def test_macs_lstm_counts_every_step_of_the_window():
    net = SchedNet(LSTM(5 + 3, 7, num_layers=2), n_out=4, n_tokens=6, embed_dim=3)
    per_step = 4 * 7 * (8 + 7) + 4 * 7 * (7 + 7)
    assert macs_per_decision(net, torch.zeros(1, 10, 5), torch.zeros(1, 10, dtype=torch.long)) == 10 * per_step + 7 * 4


def test_macs_tcn_counts_convolutions_per_output_step():
    net = SchedNet(TCN(3, [4], kernel_size=2), n_out=1)
    window = 6
    # conv1 3->4 k2, conv2 4->4 k2, downsample 3->4 k1, each over `window` output steps; head 4->1
    expected = window * (4 * 3 * 2 + 4 * 4 * 2 + 4 * 3) + 4
    assert macs_per_decision(net, torch.zeros(1, window, 3), None) == expected
    assert parameter_count(net) == sum(p.numel() for p in net.parameters())


def test_latency_summary_percentiles():
    s = summarise(torch.arange(1, 101).numpy() * 1000)
    assert s["calls"] == 100 and s["p50_us"] == pytest.approx(50.5) and s["p99_us"] == pytest.approx(99.01)


def test_pareto_front():
    pts = [(10, 0.5), (20, 0.7), (15, 0.4), (30, 0.7), (5, 0.3)]
    assert pareto_front(pts) == [4, 0, 1]


def group(label, task, mean, macs, std=0.01, n=3, p99=None):
    """A seed group: `mean` ± `std` over `n` seeds on the validation rows."""
    val = (
        {"mean": mean, "std": std if n > 1 else None, "n": n}
        if mean is not None
        else {"mean": None, "std": None, "n": 0}
    )
    return {
        "label": label,
        "task": task,
        "macs": macs,
        "ckpt_paths": [f"{label}-{i}.ckpt" for i in range(n)],
        "seeds": list(range(1, n + 1)),
        "validation": {"bal_acc": val, "top1": val},
        "latency": {"onnxruntime": {"p99_us": p99}} if p99 is not None else None,
    }


RULE = ({"migration": "bal_acc", "next_task": "top1"}, 100_000, "onnxruntime")


def test_winner_needs_a_margin_larger_than_the_spread():
    # a is over budget, d has no validation rows; b beats c by 0.05 > 0.01 + 0.01
    groups = [
        group("a", "migration", 0.99, 500_000),
        group("b", "migration", 0.85, 5_000, p99=300),
        group("c", "migration", 0.80, 4_000),
        group("d", "migration", None, 10),
        group("e", "next_task", 0.3, 1_000_000),
    ]
    w = pick_winners(groups, *RULE)
    mig = w["winners"]["migration"]
    assert mig["winner"] == "b" and mig["verdict"] == "significant" and mig["p99_us"] == 300 and mig["n"] == 3
    assert w["split"] == "val" and "validation" in w["split_note"] and "std_best + std_runner_up" in w["rule"]
    none = w["winners"]["next_task"]
    assert none["winner"] is None and "e (1,000,000 MACs)" in none["reason"] and "100,000 MACs" in none["reason"]
    # the same means with a larger spread: no winner, both listed as tied
    groups[1]["validation"]["bal_acc"]["std"] = groups[2]["validation"]["bal_acc"]["std"] = 0.03
    mig = pick_winners(groups, *RULE)["winners"]["migration"]
    assert mig["winner"] is None and mig["verdict"] == "no significant difference" and mig["tied"] == ["b", "c"]
    assert "no significant difference" in mig["reason"]


def test_single_seed_groups_declare_nothing():
    groups = [group("b", "migration", 0.9, 5_000, n=1), group("c", "migration", 0.5, 4_000, n=3)]
    mig = pick_winners(groups, *RULE)["winners"]["migration"]
    assert mig["winner"] is None and mig["verdict"] == "1 seed: spread unknown" and "spread unknown" in mig["reason"]
    only = pick_winners(groups[:1], *RULE)["winners"]["migration"]
    assert only["winner"] == "b" and only["verdict"] == "only candidate"


def test_seed_groups_mean_and_sample_std():
    from evaluation.seeds import aggregate, beats, group_setups, mean_std

    s = mean_std([0.8, 0.9, 1.0])
    assert s["mean"] == pytest.approx(0.9) and s["std"] == pytest.approx(0.1) and s["n"] == 3  # ddof=1
    assert mean_std([0.5]) == {"mean": 0.5, "std": None, "n": 1}
    assert beats({"mean": 0.9, "std": 0.01}, {"mean": 0.85, "std": 0.01}) is True
    assert beats({"mean": 0.9, "std": 0.03}, {"mean": 0.85, "std": 0.03}) is False
    assert beats({"mean": 0.9, "std": None}, {"mean": 0.85, "std": 0.0}) is None

    def cfg(seed, window, out):
        return {
            "seed": seed,
            "data": {"window": window, "dataset_dir": "d", "num_workers": 0},
            "model": {"_target_": "models.network.lstm", "width": 16},
            "paths": {"output_dir": out},
        }

    items = [
        {"task": "migration", "backbone": "lstm", "config": cfg(s, w, f"run{i}")}
        for i, (s, w) in enumerate([(1, 16), (2, 16), (3, 16), (1, 1), (2, 1)])
    ]
    groups = group_setups(items)
    assert [g["members"] for g in groups] == [[0, 1, 2], [3, 4]]
    assert [g["label"] for g in groups] == ["lstm window=16", "lstm window=1"]
    models = [
        {
            "label": f"m{i}",
            "seed": it["config"]["seed"],
            "metric_names": ["bal_acc"],
            "validation": {"bal_acc": 0.7 + 0.1 * i},
            "splits": {"test_unseen": {"bal_acc": 0.5}},
            "baselines": {"test_unseen": {"logreg": {"bal_acc": 0.6}}},
        }
        for i, it in enumerate(items)
    ]
    agg = aggregate(models, groups)
    assert agg[0]["n"] == 3 and agg[0]["seeds"] == [1, 2, 3]
    assert agg[0]["validation"]["bal_acc"]["mean"] == pytest.approx(0.8)
    assert agg[0]["validation"]["bal_acc"]["std"] == pytest.approx(0.1)
    assert agg[1]["baselines"]["test_unseen"]["logreg"]["bal_acc"] == {"mean": pytest.approx(0.6), "std": 0.0, "n": 2}
    assert "branches" not in agg[0]
    # can_migrate: accuracy per branch of the kernel's rule, mean ± std over the group's seeds
    for i, m in enumerate(models):
        m["branches"] = {"test_unseen": {"cold": {"n": 10, "share": 1.0, "positive": 1.0, "acc": 0.7 + 0.1 * i}}}
    cold = aggregate(models, groups)[0]["branches"]["test_unseen"]["cold"]
    assert cold["n"] == 10 and cold["acc"]["mean"] == pytest.approx(0.8) and cold["acc"]["std"] == pytest.approx(0.1)


def test_labels_are_unique_per_task():
    def cand(task, backbone, n, run):
        return SimpleNamespace(task=task, backbone=backbone, input_features=list(range(n)), run_dir=Path(run), label="")

    cs = [
        cand("migration", "mlp", 1, "0"),
        cand("migration", "mlp", 4, "1"),
        cand("migration", "tcn", 4, "2"),
        cand("next_task", "mlp", 5, "3"),
        cand("next_task", "mlp", 5, "4"),
    ]
    assign_labels(cs)
    assert [c.label for c in cs] == ["mlp-1f", "mlp-4f", "tcn", "mlp-3", "mlp-4"]


def test_baselines_are_refitted_when_their_training_rows_differ():
    """Checkpoints on the same dataset but another split (other validation or training runs) or
    synthetic source must not share fitted baselines."""
    from types import SimpleNamespace

    from evaluation.metrics import baseline_key

    def cand(val_runs, source=None):
        meta = {
            "task": "can_migrate",
            "feature_names": ["a", "b"],
            "label": "can_migrate",
            "split": {"unseen": ["io"], "val_runs": val_runs, "runs": {"val": [f"w-r{val_runs:02d}"]}},
        }
        if source:
            meta["source"] = source
        return SimpleNamespace(meta=meta, dm=SimpleNamespace(dataset_dir="d"))

    assert baseline_key(cand(1)) == baseline_key(cand(1))
    assert baseline_key(cand(1)) != baseline_key(cand(2))
    assert baseline_key(cand(1, "synthetic")) != baseline_key(cand(1, "both"))


def test_the_verdict_agrees_with_the_rule_and_shows_rounded_values():
    """A lone single-seed group wins as "only candidate", which the rule itself states (it does
    not claim significance); the line shows the value rounded, the spread as unknown and the cost
    as MACs per decision with its window."""
    from evaluation.report import winner_line
    from evaluation.winner import describe

    lone = group("tcn", "migration", 0.7836886644363403, 40_110, n=1)
    lone["window"] = 16
    w = pick_winners([lone], *RULE)
    mig = w["winners"]["migration"]
    assert mig["winner"] == "tcn" and mig["verdict"] == "only candidate" and mig["window"] == 16
    assert "a lone group wins as the only candidate (nothing compared, no significance claimed)" in w["rule"]
    assert "with one seed in either the spread is unknown and no winner is declared" in w["rule"]
    line = describe("migration", mig, w["latency_engine"])
    assert "validation bal_acc 0.7837 (n=1 seed: spread unknown)" in line and "0.78368" not in line
    assert "only candidate: nothing compared" in line and "40,110 MACs per decision (window 16)" in line
    assert winner_line("migration", mig, w["latency_engine"]).startswith("- **migration**: tcn (only candidate")
    # two groups, one of them with one seed: no winner, and the line says why
    rival = group("lstm", "migration", 0.70, 50_000, n=3)
    tied = pick_winners([lone, rival], *RULE)["winners"]["migration"]
    assert tied["winner"] is None and describe("migration", tied, "onnxruntime").startswith(
        "migration: no winner (1 seed: spread unknown"
    )


def test_every_mac_count_is_named_with_what_it_counts():
    from evaluation.report import models_table
    from models.cost import RELATION, per_decision

    model = {"label": "tcn", "task": "migration", "backbone": "tcn", "window": 16, "n_inputs": 14, "params": 900}
    table = models_table([{**model, "macs": 40_110, "latency": None, "ckpt_path": "x.ckpt"}])
    assert "MACs per decision (window W)" in table.splitlines()[0]
    assert per_decision(16) == "MACs per decision (window 16)" and "MACs per step" in RELATION


def test_branch_table_has_one_table_per_distinct_test_set():
    """A shift experiment's two directions test on different rows under one split name: their
    branch counts must not share a table."""
    from evaluation.report import branch_table

    def model(label, n_cold, acc):
        return {
            "label": label,
            "branches": {"test_unseen": {"cold": {"n": n_cold, "share": 1.0, "positive": 1.0, "acc": acc}}},
        }

    out = branch_table([model("a", 10, 0.5), model("b", 10, 0.75), model("c", 99, 1.0)], "test_unseen")
    first, second = out.split("\n\n")
    assert "| cold | 10 |" in first and "0.5000" in first and "0.7500" in first and "| c |" not in first
    assert "| cold | 99 |" in second and second.splitlines()[0].endswith("| c |")
    assert branch_table([{"label": "x"}], "test_unseen") is None
