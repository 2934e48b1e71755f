"""`python -m export ckpt_path=... out=...` on a real (tiny) training checkpoint."""
import json
import re
import subprocess
import zlib

import pytest
import pytorch_lightning as pl

from export import __main__ as cli
from export import cbuild
from tests.conftest import require
from tests.synthetic_dataset import write_synthetic_dataset


def test_cli_rejects_bad_arguments():
    with pytest.raises(SystemExit, match="missing"):
        cli.parse(["out=/tmp/x"])
    with pytest.raises(SystemExit, match="bad argument"):
        cli.parse(["ckpt_path=a", "out=b", "colour=red"])


def test_cli_exports_a_checkpoint(tmp_path):
    require(cbuild.have_gcc(), "gcc, objdump and nm")
    from data.datamodule import MigrationDataModule
    from models.tasks import MigrationModule

    ds = write_synthetic_dataset(tmp_path / "ds", migration_rows=400)
    data_cfg = {"_target_": "data.datamodule.MigrationDataModule", "dataset_dir": str(ds), "window": 8}
    dm = MigrationDataModule(dataset_dir=str(ds), window=8)
    dm.setup("fit")
    module = MigrationModule(backbone={"_target_": "models.network.tcn", "width": 4, "depth": 1},
                             optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01},
                             data_meta=dm.meta, monitor="val/bal_acc", run_config={"data": data_cfg})
    trainer = pl.Trainer(max_steps=5, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    out = tmp_path / "export"
    assert cli.main([f"ckpt_path={ckpt}", f"out={out}", "vectors=20000"]) == 0  # in-process: imports are warm
    for name in ("model.onnx", "parity.json", "parity.md", "calibration.json", "calibration.md", "model.h",
                 "model_vectors.h", "model.blob", "vectors.bin", "vectors_expected.bin", "report.json", "report.md"):
        assert (out / name).stat().st_size > 0, name
    rep = json.loads((out / "report.json").read_text())
    assert rep["c_bit_exact"]["total"]["mismatches"] == 0 and rep["kernel_object"]["ok"]
    assert set(rep["float_vs_int"]) == {"test_seen", "test_unseen"}
    enc = rep["encoder"]  # migration features are known: slm_encode is generated and checked
    assert enc["c_bit_exact"]["mismatches"] == 0 and enc["max_error_lsb"] < 1.0, enc
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
