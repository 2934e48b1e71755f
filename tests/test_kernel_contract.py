"""The can_migrate feature contract (data/collect/bcc/cm_features.h) and its Python mirror
(data/can_migrate/int_features.py): layout, feature order, values; the patch and the module use it;
the module's decision path in C equals the Python integer reference (kernel/cm_parity.py)."""

import re
import shutil
import subprocess

import numpy as np
import pytest

from data.can_migrate import features as feat
from data.can_migrate import int_features as cmi
from data.can_migrate import record as rec
from tests.conftest import REPO, require
from tests.test_kernel_fair import PATCH, added_file

HEADER = REPO / "data" / "collect" / "bcc" / "cm_features.h"
RECORD_H = REPO / "data" / "collect" / "bcc" / "can_migrate.h"


def fixture_records(n: int, seed: int = 0) -> np.ndarray:
    """Packed struct cm_record values for the tests (random, not a recording): plausible
    ranges plus edge values (negative delta, zero/huge NUMA faults, nodes out of range)."""
    rng = np.random.default_rng(seed)
    r = np.zeros(n, rec.RECORD_DTYPE)
    r["magic"], r["size"] = rec.CM_MAGIC, rec.RECORD_SIZE
    r["delta_ns"] = rng.choice([-5, 0, 499_999, 500_000, 3_000_000, 2**40], n) + rng.integers(0, 1000, n)
    r["src_load"] = rng.integers(0, 5000, n)
    r["dst_load"] = rng.integers(0, 5000, n)
    r["total_numa_faults"] = rng.choice([0, 10, 2**40], n)
    r["numa_faults"] = rng.integers(0, 2**20, (n, rec.CM_MAX_NODES)) * rng.integers(0, 2, (n, 1))
    r["numa_faults"][: n // 8] = 2**64 - 1
    for k in ("src_node", "dst_node"):
        r[k] = rng.choice([0, 0, 0, 1, 3, -1, 7], n)
    r["numa_preferred_nid"] = rng.choice([-1, 0, 1], n)
    r["src_nr_running"] = rng.integers(0, 12, n)
    r["dst_nr_running"] = rng.integers(0, 12, n)
    r["src_nr_preferred_running"] = rng.integers(0, 6, n)
    r["nr_balance_failed"] = rng.integers(0, 4, n)
    r["cache_nice_tries"] = rng.integers(0, 3, n)
    idle = rng.integers(0, 3, n)
    r["cpu_idle"], r["cpu_not_idle"], r["cpu_newly_idle"] = idle == 0, idle == 1, idle == 2
    r["buddy_hot"] = rng.integers(0, 2, n)
    r["cpu"] = rng.integers(0, 4, n)
    r["ret"] = rng.integers(0, 2, n)
    r["dst_allowed"] = 1
    return r


def compile_run(tmp_path, body: list[str]) -> str:
    require(shutil.which("cc") is not None, "a C compiler (cc)")
    src = [
        "#include <stdio.h>",
        "#include <stddef.h>",
        f'#include "{RECORD_H}"',
        f'#include "{HEADER}"',
        "int main(void){",
        *body,
        "return 0;}",
    ]
    (tmp_path / "t.c").write_text("\n".join(src))
    subprocess.run(["cc", "-Wall", "-Werror", "-o", str(tmp_path / "t"), str(tmp_path / "t.c")], check=True)
    return subprocess.run([str(tmp_path / "t")], capture_output=True, text=True, check=True).stdout


def test_fields_mirror_matches_header_offsets(tmp_path):
    names = [n for n, _ in cmi.FIELDS]
    body = ['printf("sizeof %zu\\n", sizeof(struct cm_fields));']
    body += [
        f'printf("{n} %zu %zu\\n", offsetof(struct cm_fields, {n}), sizeof(((struct cm_fields *)0)->{n}));'
        for n in names
    ]
    got = {line.split()[0]: tuple(map(int, line.split()[1:])) for line in compile_run(tmp_path, body).splitlines()}
    assert got.pop("sizeof") == (cmi.FIELDS_DTYPE.itemsize,)
    for n in names:
        dt, off = cmi.FIELDS_DTYPE.fields[n][:2]
        assert got[n] == (off, dt.itemsize), n
    # every field but the padding is a record field or a per-node fault count of one
    assert set(names) - set(rec.RECORD_DTYPE.names) == {"src_faults", "dst_faults"}
    header_fields = re.findall(
        r"^\t__[su]\d+ (\w+);", HEADER.read_text().split("struct cm_fields {")[1].split("};")[0], re.M
    )
    assert header_fields == names


def test_feature_order_names_and_divisors_match_header(tmp_path):
    body = ["for (int i = 0; i < CMF_N; i++)", 'printf("%s %d\\n", cm_feature_name[i], cm_feature_divisor[i]);']
    got = [tuple(line.split()) for line in compile_run(tmp_path, body).splitlines()]
    assert [(n, int(d)) for n, d in got] == list(cmi.FEATURES)
    assert [n for n, _ in cmi.FEATURES] == list(feat.CHEN_FEATURES)
    enum = re.findall(r"^\tCMF_(\w+),", HEADER.read_text(), re.M)
    assert [e.lower() for e in enum] == list(feat.CHEN_FEATURES)
    assert f"CMF_MIGRATION_COST_NS {rec.MIGRATION_COST_NS}" in HEADER.read_text()


@pytest.fixture(scope="module")
def parity_exe(tmp_path_factory):
    """The parity harness around a tiny can_migrate model from the real export pipeline."""
    require(shutil.which("gcc") is not None, "gcc")
    from kernel import cm_parity
    from kernel.vm import models

    d = tmp_path_factory.mktemp("cm_model")
    pair = models.make_pair(d, n_vectors=200)
    return pair, cm_parity.build_harness(pair.gen_dir, d)


def test_c_features_equal_python_mirror_and_training_features(parity_exe, tmp_path):
    from kernel import cm_parity

    r = fixture_records(4000)
    c = cm_parity.c_features(parity_exe[1], r, tmp_path)
    frame = rec.records_frame(r)
    py = cmi.raw_features(cmi.fields_from_records(frame))
    assert np.array_equal(c, py)
    # raw / divisor is the float feature training used (delta_faults: to 2^-16 of the ratio)
    trained = feat.chen_features(frame, filter=False)
    div = np.array([d for _, d in cmi.FEATURES], np.float64)
    for j, (name, _) in enumerate(cmi.FEATURES):
        want = trained[name].to_numpy(np.float64)
        got = (py[:, j] / div[j]).astype(np.float32)
        ok = np.isclose(got, want, rtol=1e-6, atol=2.0**-16 if name == "delta_faults" else 0)
        sane = np.abs(want) < 256 if name == "delta_faults" else np.ones(len(want), bool)  # capped at 2^46 faults
        assert ok[sane].all(), (name, got[sane & ~ok][:5], want[sane & ~ok][:5])


def test_module_decision_path_equals_integer_reference(parity_exe, tmp_path):
    """The module's C (slm_cm_input.h) on records = encode_ref + IntRef, with per-CPU streaming
    state (the tiny model has a 4-step window), for the built-in params and a reloaded blob."""
    from kernel import cm_parity

    pair, exe = parity_exe
    r = fixture_records(3000, seed=1)
    for blob in (None, pair.blob_b):
        q = cm_parity.load_export(pair.gen_dir, blob)
        want = cm_parity.reference_logits(q, r)
        got = cm_parity.c_logits(exe, r, tmp_path, blob)
        assert np.array_equal(got, want), blob
        assert 0 < (want > 0).mean() < 1  # both verdicts occur: the comparison means something


def test_migration_model_is_refused_by_the_hook_path(tmp_path):
    """A model whose inputs the hook cannot compute: the harness (the module's own mapping)
    and the Python side refuse it with one line naming the input."""
    require(shutil.which("gcc") is not None, "gcc")
    import torch

    from data.dataset.datamodule import MIGRATION_KINDS, MIGRATION_TRANSFORMS, VALID
    from data.dataset.encoding import FeatureSpec
    from data.dataset.tables import MIGRATION_FEATURES
    from export import pipeline
    from export.source import Source, Split
    from kernel import cm_parity
    from models.network import SchedNet, mlp

    specs = [
        FeatureSpec(c, c, MIGRATION_TRANSFORMS.get(c, "log1p_us" if c.endswith("_ns") else "identity"))
        for c in MIGRATION_FEATURES
    ] + [FeatureSpec(f"kind_{n}", "kind", "onehot", k) for k, n in MIGRATION_KINDS.items()]
    features = {
        "specs": [s.to_dict() for s in specs],
        "mean": [0.0] * len(specs),
        "std": [1.0] * len(specs),
        "names": [s.name for s in specs] + [VALID],
    }
    n = len(features["names"])
    torch.manual_seed(0)
    net = SchedNet(mlp(n, 1, width=4, depth=1), n_out=1).eval()
    x = np.random.default_rng(0).standard_normal((64, 1, n)).astype(np.float32)
    pipeline.run(
        Source(net, 1, n, 0, Split("calib", x), features=features), tmp_path / "m", n_vectors=100, verify=False
    )
    exe = cm_parity.build_harness(tmp_path / "m", tmp_path)
    with pytest.raises(
        cm_parity.ParityError, match=r"^model input 0 \(since_last_ran_ns\) is not a can_migrate feature$"
    ):
        cm_parity.c_logits(exe, fixture_records(4), tmp_path)
    with pytest.raises(cm_parity.ParityError, match="model input 0 \\(since_last_ran_ns\\) is not a can_migrate"):
        cm_parity.input_columns(cm_parity.load_export(tmp_path / "m"))


def test_patch_installs_the_contract_and_fills_every_field():
    text = PATCH.read_text()
    assert added_file(text, "include/linux/sched/cm_features.h") == HEADER.read_text()
    hook = text.split("static void lb_model_fields(")[1].split("\n+}\n")[0]
    for name, _ in cmi.FIELDS:
        if name != "_pad":
            assert f".{name} =" in hook or f"f->{name} =" in hook, name
    assert "stand-in" not in (REPO / "kernel" / "schedlearn.c").read_text()
    assert "slm_col_names" not in (REPO / "kernel" / "schedlearn.c").read_text()  # the migration mapping is gone


def test_bpf_program_includes_the_contract():
    assert '#include "cm_features.h"' in (REPO / "data" / "collect" / "bcc" / "can_migrate.bpf.c").read_text()


GUEST_RUNS = REPO / "datasets" / "guest_runs"


def test_parity_on_shipped_guest_records(parity_exe, tmp_path):
    """Every shipped can_migrate record (datasets/guest_runs, recorded in a 4-vCPU guest) through
    the module's C path and the Python integer reference: identical features, logits and
    verdicts, for the built-in params and a reloaded blob."""
    from kernel import cm_parity

    files = cm_parity.record_files([GUEST_RUNS]) if GUEST_RUNS.is_dir() else []
    require(bool(files), f"no shipped can_migrate records under {GUEST_RUNS}")
    pair, exe = parity_exe
    r = np.concatenate([cm_parity.read_records(f) for f in files])
    assert np.array_equal(
        cm_parity.c_features(exe, r, tmp_path), cmi.raw_features(cmi.fields_from_records(rec.records_frame(r)))
    )
    for blob in (None, pair.blob_b):
        want = cm_parity.reference_logits(cm_parity.load_export(pair.gen_dir, blob), r)
        got = cm_parity.c_logits(exe, r, tmp_path, blob)
        assert int((got != want).sum()) == 0
    print(f"parity: {len(r)} shipped records from {len(files)} runs, 0 differences")
