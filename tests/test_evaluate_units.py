"""Units of models/evaluation: analytic MAC counts, the Pareto front, the winner rule, labels."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from models.backbones import LSTM, MLP, TCN
from models.evaluation.cost import macs_per_decision, parameter_count
from models.evaluation.latency import summarise
from models.evaluation.plots import pareto_front
from models.evaluation.sources import assign_labels
from models.evaluation.winner import pick_winners
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


def model(label, task, value, macs, p99=None, test=0.0):
    """A model entry: `value` on the validation rows, `test` (never used to choose) on test_unseen."""
    return {"label": label, "task": task, "ckpt_path": f"{label}.ckpt", "macs": macs,
            "validation": {"bal_acc": value, "top1": value, "n": 100} if value is not None else {"n": 0},
            "splits": {"test_unseen": {"bal_acc": test, "top1": test}},
            "latency": {"onnxruntime": {"p99_us": p99}} if p99 is not None else None}


def test_winner_is_best_validation_metric_within_mac_budget():
    models = [model("a", "migration", 0.9, 500_000, test=1.0), model("b", "migration", 0.8, 5_000, p99=300),
              model("c", "migration", 0.8, 4_000, p99=900), model("d", "migration", None, 10, test=1.0),
              model("e", "next_task", 0.3, 1_000_000)]
    w = pick_winners(models, {"migration": "bal_acc", "next_task": "top1"}, 100_000, "onnxruntime")
    # a is over budget, d has no validation rows; b and c tie, c costs fewer MACs; latency and the
    # test split (where a and d are best) play no part
    assert w["winners"]["migration"]["winner"] == "c" and w["winners"]["migration"]["p99_us"] == 900
    assert w["split"] == "val" and "validation" in w["split_note"]
    none = w["winners"]["next_task"]
    assert none["winner"] is None and "e (1,000,000 MACs)" in none["reason"] and "100,000 MACs" in none["reason"]
    assert "100,000 MACs" in w["rule"] and len(w["winners"]["migration"]["candidates"]) == 4
    # the same models under any latency give the same verdict
    for m in models:
        m["latency"] = {"onnxruntime": {"p99_us": 1e6}}
    assert pick_winners(models, {"migration": "bal_acc"}, 100_000, "onnxruntime")["winners"]["migration"]["winner"] == "c"
    assert "winner.metric" in pick_winners(models, {"migration": "bal_acc"}, 100_000, "onnxruntime")["winners"]["next_task"]["reason"]


def test_labels_are_unique_per_task():
    def cand(task, backbone, n, run):
        return SimpleNamespace(task=task, backbone=backbone, input_features=list(range(n)), run_dir=Path(run), label="")
    cs = [cand("migration", "mlp", 1, "0"), cand("migration", "mlp", 4, "1"), cand("migration", "tcn", 4, "2"),
          cand("next_task", "mlp", 5, "3"), cand("next_task", "mlp", 5, "4")]
    assign_labels(cs)
    assert [c.label for c in cs] == ["mlp-1f", "mlp-4f", "tcn", "mlp-3", "mlp-4"]


def test_baselines_are_refitted_when_their_training_rows_differ():
    """Checkpoints on the same dataset but another validation tail or synthetic source must not
    share fitted baselines."""
    from types import SimpleNamespace

    from models.evaluation.metrics import baseline_key

    def cand(val_fraction, source=None):
        meta = {"task": "can_migrate", "feature_names": ["a", "b"], "label": "can_migrate"}
        if source:
            meta["source"] = source
        return SimpleNamespace(meta=meta, dm=SimpleNamespace(dataset_dir="d", val_fraction=val_fraction))

    assert baseline_key(cand(0.15)) == baseline_key(cand(0.15))
    assert baseline_key(cand(0.15)) != baseline_key(cand(0.3))
    assert baseline_key(cand(0.15, "synthetic")) != baseline_key(cand(0.15, "both"))
