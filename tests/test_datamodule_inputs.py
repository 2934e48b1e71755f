"""data.inputs: the can_migrate feature set a model trains on (data.can_migrate.features.FEATURE_SETS),
on a dataset built here from shipped guest runs, and the kernel module tooling's refusal of an
export of any set but Chen's 15."""

import json
import shutil

import pytest
import pytorch_lightning as pl

from data.can_migrate.features import CHEN_FEATURES, FEATURE_SETS, FLAG_FEATURES
from data.dataset.datamodule import DEFAULT_INPUTS, CanMigrateDataModule
from models.config import CAN_MIGRATE_INPUTS, KERNEL_INPUTS
from tests.conftest import REPO

WORKLOADS = ("stress-ng-yield", "stress-ng-mq", "io-mix")  # small real guest runs, 3 each


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Built from datasets/guest_runs by data.build, so the can_migrate table has every input
    column can_migrate_table computes (their records are version 1: the record-v2 inputs are the
    documented fill values there)."""
    from data.dataset.build import build

    tmp = tmp_path_factory.mktemp("inputs")
    for w in WORKLOADS:
        for i in (1, 2, 3):
            shutil.copytree(REPO / "datasets" / "guest_runs" / f"{w}-r0{i}", tmp / "runs" / f"{w}-r0{i}")
    build([tmp / "runs"], tmp / "ds", ["io"], events=False, trace_seconds=0.2)
    return tmp / "ds"


def test_the_schema_names_the_feature_sets():
    assert tuple(FEATURE_SETS) == CAN_MIGRATE_INPUTS and KERNEL_INPUTS == DEFAULT_INPUTS == "chen"
    assert FEATURE_SETS[KERNEL_INPUTS] == CHEN_FEATURES


@pytest.mark.parametrize("inputs", list(FEATURE_SETS))
def test_each_feature_set_is_the_models_inputs(dataset, inputs):
    dm = CanMigrateDataModule(dataset, window=1, inputs=inputs)
    dm.setup("fit")
    assert dm.meta["inputs"] == inputs
    assert dm.meta["feature_names"] == [*FEATURE_SETS[inputs], "valid"]
    for spec in dm.meta["features"]:  # 0/1 flags as flags, every other input standardised
        assert spec["transform"] == ("flag" if spec["column"] in FLAG_FEATURES else "identity"), spec
    assert {s["column"] for s in dm.meta["features"] if s["transform"] == "flag"} >= {"delta_hot", "cpu_idle"}
    steps = dm.get_split("train").steps
    assert steps.shape[1] == len(FEATURE_SETS[inputs]) + 1
    again = CanMigrateDataModule(dataset, data_meta=dm.meta, inputs="chen")  # the checkpoint's set wins
    assert again.inputs == inputs and again.get_split("test_seen").steps.shape[1] == steps.shape[1]


def test_features_narrow_the_set_and_stay_inside_it(dataset):
    dm = CanMigrateDataModule(dataset, window=1, inputs="extended", features=["util_avg", "sd_llc", "src_len"])
    dm.setup("fit")
    assert dm.meta["feature_names"] == ["src_len", "sd_llc", "util_avg", "valid"]  # the set's order
    assert [s["transform"] for s in dm.meta["features"]] == ["identity", "flag", "identity"]
    with pytest.raises(ValueError, match=r"data.features: unknown \['sd_llc'\]"):
        CanMigrateDataModule(dataset, window=1, features=["sd_llc", "src_len"]).setup("fit")  # not in chen


def test_a_table_without_the_sets_columns_says_to_rebuild():
    shipped = REPO / "datasets" / "sample_guest"  # built before the record-v2 columns
    with pytest.raises(ValueError) as e:
        CanMigrateDataModule(shipped, window=1, inputs="chen_level").setup("fit")
    msg = str(e.value)
    assert msg.startswith("data.inputs=chen_level: the training rows have no sd_smt, sd_llc") and "\n" not in msg
    assert "python -m data.build" in msg
    with pytest.raises(
        ValueError, match=r"data.inputs=pinto: no such feature set \(known: chen, chen_level, extended\)"
    ):
        CanMigrateDataModule(shipped, inputs="pinto")


def test_export_of_a_model_of_other_inputs_than_the_kernels_is_refused_by_the_module_tooling(dataset, tmp_path, capsys):
    """The kernel computes Chen's 15 only: python -m export exports the model and says so in
    report.json; kernel.push_model refuses its blob in one line."""
    from export import __main__ as cli
    from kernel import push_model
    from models.tasks import CanMigrateModule

    dm = CanMigrateDataModule(dataset, window=1, inputs="chen_level")
    dm.setup("fit")
    data_cfg = {"_target_": "data.dataset.datamodule.CanMigrateDataModule", "dataset_dir": str(dataset)}
    module = CanMigrateModule(
        backbone={"_target_": "models.network.mlp", "width": 4, "depth": 1},
        optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01},
        data_meta=dm.meta,
        monitor="val/bal_acc",
        run_config={"data": {**data_cfg, "window": 1, "inputs": "chen_level"}},
    )
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.fit(module, datamodule=dm)
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    out = tmp_path / "out"
    assert cli.main_in_process([f"ckpt_path={ckpt}", f"out={out}", "vectors=500", "verify=false"]) == 0
    km = json.loads((out / "report.json").read_text())["kernel_module"]
    assert km == {
        "ok": False,
        "reasons": ["trained on data.inputs=chen_level; the module computes Chen's 15 inputs only (data.inputs=chen)"],
    }
    capsys.readouterr()
    assert push_model.main([str(out / "model.blob"), "--check-only"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "not for the kernel module: trained on data.inputs=chen_level" in err
