"""Baselines and the metrics they share with the models (hand-built splits, no trace data)."""

import numpy as np
import pandas as pd
import pytest
import torch

from data.dataset.encoding import TokenLayout
from data.dataset.windows import SplitData
from models.baselines import (
    Constant,
    LoadHeuristic,
    LogisticRegression,
    Markov,
    MostFrequent,
    RepeatTwoBack,
)
from models.tasks.metrics import BinaryBalancedAccuracy, BinaryMCC, TargetRate
from models.tasks.migration import BinaryDecisionModule
from models.tasks.next_task import NextTaskModule


def binary_split(x: np.ndarray, y: np.ndarray, rows: pd.DataFrame | None = None) -> SplitData:
    n, f = x.shape
    steps = torch.zeros(n + 1, f + 1)
    steps[:-1, :-1] = torch.as_tensor(x, dtype=torch.float32)
    steps[:-1, -1] = 1
    return SplitData(
        "t",
        steps,
        torch.arange(n)[:, None],
        torch.as_tensor(y, dtype=torch.float32),
        rows=rows if rows is not None else pd.DataFrame(index=range(n)),
    )


def score_binary(baseline, split) -> dict[str, float]:
    metrics = BinaryDecisionModule.make_metrics(None)
    preds = torch.sigmoid(baseline.logits(split, slice(None)).squeeze(-1))
    return {k: float(v) for k, v in metrics(preds, split.target.long()).items()}


def test_always_stay_scores_chance():
    split = binary_split(np.zeros((10, 1)), np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1]))
    m = score_binary(Constant(False, "always_stay").fit(split, {}), split)
    assert m["bal_acc"] == 0.5 and m["f1"] == 0.0 and m["mcc"] == 0.0 and m["acc"] == pytest.approx(0.8)
    assert m["ap"] == pytest.approx(0.2)  # PR-AUC of a constant score = positive rate


def test_load_heuristic_needs_an_idle_cpu_and_a_cold_task():
    rows = pd.DataFrame({"other_idle": [1, 1, 0, 0], "since_last_ran_ns": [600_000, 100_000, 600_000, 0]})
    split = binary_split(np.zeros((4, 1)), np.array([1, 0, 0, 0]), rows)
    logits = LoadHeuristic().fit(split, {}).logits(split, slice(None)).squeeze(-1)
    assert (logits > 0).tolist() == [True, False, False, False]


def test_logistic_regression_learns_a_linear_rule():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    y = (x[:, 0] - 0.5 * x[:, 2] > 1.0).astype(float)  # ~20% positives
    split = binary_split(x, y)
    m = score_binary(LogisticRegression().fit(split, {}), split)
    assert m["bal_acc"] > 0.9 and m["ap"] > 0.9


def token_split(tokens: list[int], k: int) -> SplitData:
    """One CPU stream of tokens; sample i predicts tokens[i+1] (built like NextTaskDataModule)."""
    lay = TokenLayout(k)
    t = np.array(tokens)
    pad = lay.pad
    rows = pd.DataFrame(
        {
            "token": t[:-1],
            "target": t[1:],
            "ctx1": np.r_[pad, t[:-2]],
            "ctx2": np.r_[pad, pad, t[:-3]],
            "two_back": np.r_[lay.unknown, t[:-2]],
        }
    )
    return SplitData(
        "t",
        torch.zeros(len(t) + 1, 1),
        torch.arange(len(t) - 1)[:, None],
        torch.as_tensor(t[1:]),
        tokens=torch.as_tensor(np.r_[t, pad]),
        rows=rows,
    )


def next_task_meta(k: int) -> dict:
    lay = TokenLayout(k)
    return {"task": "next_task", "n_out": lay.n_classes, "n_tokens": lay.n_tokens, "unknown_token": lay.unknown}


def score_tokens(baseline, split, meta) -> dict[str, float]:
    module = NextTaskModule.__new__(NextTaskModule)
    module.meta = meta
    metrics = NextTaskModule.make_metrics(module)
    preds = NextTaskModule.metric_inputs(module, baseline.logits(split, slice(None)))
    return {k: float(v) for k, v in metrics(preds, split.target).items()}


def test_markov_and_repeat_2_back_learn_a_ping_pong():
    k = 4
    seq = [0, 1] * 40  # a token stream alternating between two values
    split, meta = token_split(seq, k), next_task_meta(k)
    assert score_tokens(Markov(3).fit(split, meta), split, meta)["top1"] == 1.0
    assert score_tokens(RepeatTwoBack().fit(split, meta), split, meta)["top1"] == pytest.approx(1.0, abs=0.02)
    assert score_tokens(MostFrequent().fit(split, meta), split, meta)["top1"] == pytest.approx(0.5, abs=0.02)


def test_not_in_list_never_counts_as_correct():
    k = 3
    lay = TokenLayout(k)
    seq = [lay.unknown] * 30  # every target is "not in list"; every predictor must score 0
    split, meta = token_split(seq, k), next_task_meta(k)
    for baseline in (MostFrequent(), RepeatTwoBack(), Markov(3)):
        m = score_tokens(baseline.fit(split, meta), split, meta)
        assert m["top1"] == 0.0 and m["top3"] == 0.0
        assert m["not_in_list"] == 1.0 and m["ceiling"] == 0.0


def test_balanced_accuracy_and_mcc_match_their_definitions():
    y = torch.tensor([1, 1, 0, 0, 0, 0])
    p = torch.tensor([0.9, 0.2, 0.7, 0.1, 0.1, 0.1])
    assert float(BinaryBalancedAccuracy()(p, y)) == pytest.approx((0.5 + 0.75) / 2)
    # tp=1 fn=1 fp=1 tn=3: (3 - 1) / sqrt(2*2*4*4)
    assert float(BinaryMCC()(p, y)) == pytest.approx(2 / 8)
    assert float(TargetRate(0)(p, y)) == pytest.approx(4 / 6)
