"""Leave-one-category-out: the table built from runs' results.json (SYNTHETIC metric values
written here, so every cell can be checked by hand), the mean-over-categories row, the
significance line, the window-1 column group, and evaluate.py picking the LOCO path by itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.loco import MEAN_ROW, is_loco, loco_tables, read_results, render_loco

FOLDS = ["cpu", "io"]


def value(backbone: str, window: int, fold: str, seed: int) -> float:
    """A made-up bal_acc: lstm (window 16) is 0.1 above the MLP, seeds spread by 0.001."""
    base = {"mlp": 0.7, "lstm": 0.8 if window > 1 else 0.72}[backbone]
    return base + (0.05 if fold == "io" else 0.0) + 0.001 * seed


def write_run(root: Path, i: int, backbone: str, window: int, fold: str, seed: int) -> None:
    run = root / str(i)
    run.mkdir(parents=True)
    v = value(backbone, window, fold, seed)
    metrics = {
        "test_unseen/bal_acc": v,
        "test_unseen/ap": v / 2,
        "test_unseen/baseline/logreg/bal_acc": 0.75,
        "test_unseen/baseline/logreg/ap": 0.3,
        "test_unseen/baseline/always_stay/bal_acc": 0.5,
        "test_unseen/baseline/always_stay/ap": 0.01,
    }
    config = {
        "seed": seed,
        "data": {"dataset_dir": "datasets/sample", "window": window, "unseen": [fold]},
        "model": {"_target_": f"models.network.{backbone}"},
        "paths": {"output_dir": str(run)},
    }
    (run / "results.json").write_text(
        json.dumps(
            {
                "task": "migration",
                "backbone": backbone,
                "seed": seed,
                "window": window,
                "metrics": metrics,
                "config": config,
                "split": {"unseen": [fold]},
            }
        )
    )


@pytest.fixture
def sweep(tmp_path) -> Path:
    i = 0
    for fold in FOLDS:
        for seed in (1, 2, 3):
            for backbone, window in (("mlp", 1), ("lstm", 16), ("lstm", 1)):
                write_run(tmp_path / "sweep", i, backbone, window, fold, seed)
                i += 1
    return tmp_path / "sweep"


def test_per_category_table_mean_row_and_significance(sweep):
    results = read_results(sweep)
    assert len(results) == 18 and is_loco(results)
    (t,) = loco_tables(results)
    assert t["folds"] == FOLDS and t["metrics"] == ["bal_acc", "ap"]
    assert t["columns"] == ["mlp", "lstm window=16", "lstm window=1", "baseline: always_stay", "baseline: logreg"]
    cell = t["cells"]["bal_acc"]["io"]["lstm window=16"]
    assert cell["n"] == 3 and cell["mean"] == pytest.approx(0.852) and cell["std"] == pytest.approx(0.001)
    # per seed the mean over the two categories (0.825 + 0.001 s), then mean and std over seeds
    mean = t["mean"]["bal_acc"]["lstm window=16"]
    assert mean["mean"] == pytest.approx(0.827) and mean["std"] == pytest.approx(0.001) and mean["n"] == 3
    assert t["mean"]["bal_acc"]["baseline: logreg"] == {"mean": pytest.approx(0.75), "std": 0.0, "n": 3}
    sig = t["significance"][MEAN_ROW]
    assert sig["verdict"] == "beats" and sig["sequence"] == "lstm window=16" and sig["reference"] == "baseline: logreg"
    (w,) = t["window_comparison"]
    assert (
        w["long"] == "lstm window=16" and w["one"] == "lstm window=1" and w["verdict"] == "longer window beats window 1"
    )
    text = render_loco([t])
    for s in (
        "### bal_acc (test_unseen)",
        "### ap (test_unseen)",
        f"**{MEAN_ROW}**",
        "0.8270 ± 0.0010 (n=3)",
        "significance",
        "Window 1 against the default window",
    ):
        assert s in text


def test_spread_larger_than_the_margin_is_no_significant_difference(sweep):
    results = read_results(sweep)
    for r in results:  # widen the lstm's seed spread to 0.1
        if r["backbone"] == "lstm" and r["window"] == 16:
            r["metrics"]["test_unseen/bal_acc"] += 0.1 * (r["seed"] - 2)
    (t,) = loco_tables(results)
    assert t["significance"][MEAN_ROW]["verdict"] == "no significant difference"
    assert t["significance"]["cpu"]["verdict"] == "no significant difference"
    for r in results:  # now below the MLP and logistic regression in every fold
        if r["backbone"] == "lstm" and r["window"] == 16:
            r["metrics"]["test_unseen/bal_acc"] -= 0.5
    (t,) = loco_tables(results)
    assert {s["verdict"] for s in t["significance"].values()} == {"below"}


def test_evaluate_picks_the_loco_path_from_results(sweep, tmp_path):
    from hydra import compose, initialize_config_dir

    from evaluation.runner import evaluate
    from tests.conftest import REPO

    with initialize_config_dir(version_base="1.3", config_dir=str(REPO / "conf")):
        cfg = compose("eval", overrides=[f"runs={sweep}", f"paths.output_dir={tmp_path / 'eval'}"])
    result = evaluate(cfg)  # no checkpoint exists: only results.json is read
    assert result["loco"][0]["task"] == "migration" and len(result["runs"]) == 18
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "Leave-one-category-out: migration" in report and "lstm window=16 beats baseline: logreg" in report
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["loco"][0]["folds"] == FOLDS


def test_a_tie_or_a_gap_within_the_spread_is_no_difference():
    """'below' needs the reference ahead by more than both spreads, like 'beats'."""
    from evaluation.loco import _significance
    from evaluation.seeds import NO_DIFFERENCE

    kinds = {"lstm": "sequence", "mlp": "mlp", "baseline: logreg": "logreg"}

    def row(lstm, mlp, sd=0.0):
        return {
            "lstm": {"mean": lstm, "std": sd, "n": 3},
            "mlp": {"mean": mlp, "std": sd, "n": 3},
            "baseline: logreg": {"mean": 0.5, "std": 0.0, "n": 3},
        }

    assert _significance(row(1.0, 1.0), kinds, "migration")["verdict"] == NO_DIFFERENCE
    assert _significance(row(0.90, 0.91, sd=0.01), kinds, "migration")["verdict"] == NO_DIFFERENCE
    assert _significance(row(0.80, 0.91, sd=0.01), kinds, "migration")["verdict"] == "below"
    assert _significance(row(0.95, 0.91, sd=0.01), kinds, "migration")["verdict"] == "beats"


def test_rare_can_migrate_labels_add_ap_and_f1(sweep):
    """forced / forced_future: AP and F1 beside bal_acc (issue 22 reports all three); the
    kernel's verdict label keeps bal_acc alone."""
    results = read_results(sweep)
    for r in results:
        r["task"] = "can_migrate"
        r["config"]["data"]["label"] = "forced_future"
        r["metrics"]["test_unseen/f1"] = r["metrics"]["test_unseen/bal_acc"] / 4
    (t,) = loco_tables(results)
    assert t["metrics"] == ["bal_acc", "ap", "f1"]
    assert t["cells"]["f1"]["io"]["mlp"]["mean"] == pytest.approx(value("mlp", 16, "io", 2) / 4)
    for r in results:
        r["config"]["data"]["label"] = "can_migrate"
    assert loco_tables(results)[0]["metrics"] == ["bal_acc"]


def test_no_balancer_split_gets_its_own_table(sweep):
    """Runs tested on test_unseen/no_balancer too (loco_migration_state) give a second table of
    that split, with its own cells and baselines; runs without it give only test_unseen's."""
    results = read_results(sweep)
    assert [t["split"] for t in loco_tables(results)] == ["test_unseen"]
    for r in results:
        for k, v in list(r["metrics"].items()):
            r["metrics"][k.replace("test_unseen/", "test_unseen/no_balancer/", 1)] = v + 0.01
    plain, without = loco_tables(results)
    assert (plain["split"], without["split"]) == ("test_unseen", "test_unseen/no_balancer")
    assert without["columns"] == plain["columns"]
    mlp = next(c for c in plain["columns"] if c.startswith("mlp"))
    for f in FOLDS:
        assert without["cells"]["bal_acc"][f][mlp]["mean"] == pytest.approx(
            plain["cells"]["bal_acc"][f][mlp]["mean"] + 0.01
        )
    assert without["cells"]["ap"]["io"]["baseline: logreg"]["mean"] == pytest.approx(0.31)
    assert "## Leave-one-category-out: migration on `datasets/sample`, test_unseen/no_balancer" in render_loco(
        [without]
    )
