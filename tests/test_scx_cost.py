"""kernel/scx/cost.py: the native cost of scx_schedlearn's decision (BPF_PROG_TEST_RUN).

Without root: the built-in candidates reach every branch of the rule, and they pack into the
loader's struct cost_cand slots. With root, a bpf() that loads sched_cls programs and the cached
7.3 toolchain (skip elsewhere, fail under SCHEDLEARN_CI=1): `python -m kernel.scx cost` on a
tiny export times the empty, harness, rule and model programs with a small repeat, reports the
verifier's and the JIT's figures, and the stored decisions equal data/can_migrate/rule.py's and
export/intref.py's; its refusals are one line.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kernel.scx import __main__ as scx_cli
from kernel.scx import cost
from tests.conftest import REPO, is_root, require
from tests.test_scx import built, mlp_export

CAND_SIZE = 96  # sizeof(struct cost_cand): struct cm_fields (88) + level + policy


def test_representative_candidates_reach_every_rule_branch():
    rec = cost.representative()
    allow, path = cost.rule_reference(rec)
    assert sorted(set(path.tolist())) == list(range(6))  # enum sl_path: every branch of the rule
    assert 0 < allow.sum() < len(rec)  # some allowed, some refused
    assert list(cost.level_of(rec["sd_flags"].astype(np.int64))) == [r[0] for r in cost.REPRESENTATIVE]
    slots = cost.slots(rec)
    assert len(slots) == cost.COST_SLOTS and len(cost.cand_bytes(slots)) == cost.COST_SLOTS * CAND_SIZE


def test_cost_refuses_without_root_and_bad_repeat_in_one_line(monkeypatch, capsys):
    monkeypatch.setattr(cost.os, "geteuid", lambda: 1000)
    assert scx_cli.main(["cost"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs root" in err[0]
    assert scx_cli.main(["cost", "--repeat", "10"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--repeat 10" in err[0]
    assert scx_cli.main(["cost", "no/such/export"]) == 2
    assert "no model.h" in capsys.readouterr().err


def bpf_ready() -> None:
    require(is_root(), "root (BPF_PROG_TEST_RUN on this kernel)")
    built()  # the cached 7.3 toolchain, or skip


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory) -> Path:
    return mlp_export(tmp_path_factory.mktemp("scx_cost") / "exp")


def test_cost_times_the_decisions_natively_and_they_equal_the_references(tiny_export, tmp_path, capsys):
    bpf_ready()
    out = tmp_path / "cost.json"
    rc = scx_cli.main(["cost", str(tiny_export), "--repeat", "100000", "--trials", "2", "--json", str(out)])
    text = capsys.readouterr()
    require("bpf() refused" not in text.err, f"bpf() on this kernel: {text.err.strip()}")
    assert rc == 0, text.err
    rep = json.loads(out.read_text())
    progs = rep["programs"]
    assert list(progs) == ["empty", "feed", "rule", "model"]
    for name, p in progs.items():
        assert p["insns"] > 0 and p["jited_bytes"] > 0 and p["xlated_bytes"] > 0, (name, p)
        assert len(p["ns_trials"]) == 2 and all(ns > 0 for ns in p["ns_trials"]), (name, p)
    assert progs["empty"]["insns"] < progs["feed"]["insns"] < progs["rule"]["insns"] < progs["model"]["insns"]
    assert progs["model"]["ns_minus_empty"] > 0 and progs["model"]["ns_median"] > progs["empty"]["ns_median"]
    assert rep["repeat"] == 100000 and rep["macs"] == 272 and rep["kernel"] == os.uname().release
    c = rep["checks"]
    assert c["rule_verdict_differences"] == c["rule_path_differences"] == 0, c
    assert c["rule_paths_seen"] == list(range(6)), c
    assert c["model_logit_differences"] == c["model_verdict_differences"] == c["model_errors"] == 0, c
    assert c["model_distinct_logits"] > 1 and rep["correct"], c
    lines = text.out.strip().splitlines()
    assert lines[-2].startswith("goal <= 100 ns native per decision") and "model" in lines[-2]
    assert any(line.startswith("model ") and str(progs["model"]["insns"]) in line for line in lines)


def test_cost_says_in_one_line_when_bpf_is_refused():
    """Root without capabilities (bounding set emptied): bpf() refuses the load; one line, exit 1."""
    bpf_ready()
    require(shutil.which("setpriv") is not None, "setpriv (Debian: util-linux)")
    r = subprocess.run(
        ["setpriv", "--bounding-set=-all", "--inh-caps=-all", sys.executable, "-m", "kernel.scx"]
        + ["cost", "--repeat", "1000", "--trials", "1"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    lines = r.stderr.strip().splitlines()
    lines = [ln for ln in lines if not ln.startswith("scx: built")]
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith("python -m kernel.scx: error: bpf() refused"), lines
