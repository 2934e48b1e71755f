"""Native cost of scx_schedlearn's steal decision: BPF_PROG_TEST_RUN on this machine's kernel.

The decision's own code (cm_features_raw, rule.bpf.h's rule_verdict, model.bpf.h's
sl_model_logit) compiled into sched_cls programs (cost.bpf.c), loaded on the host kernel by a
static libbpf loader (cost_run.c, built by build.build_cost) and run `repeat` times per trial;
the kernel reports the mean ns per run. Each figure stands beside the empty program's (test_run's
own per-run overhead) and the harness's (`cost_feed`: slot cursor, map lookups, one store).

The programs cycle through COST_SLOTS candidates (representative scx steal candidates, or ones
recorded in run folders) and store every decision; after timing, the stored decisions are
checked against the Python references: data/can_migrate/rule.py for the rule (verdict and
branch), export/intref.py (kernel/cm_parity.py) for the model's logit. A figure is only
reported for code that computed the right thing.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

import numpy as np

COST_SLOTS = 64  # cost.h
DEFAULT_REPEAT = 1_000_000
DEFAULT_TRIALS = 5
GOAL_NS = 100.0  # issue 20, item 9: native ns per decision
MIGRATION_COST_NS = 500_000
SD_SHARE_CPUCAPACITY, SD_SHARE_LLC, SD_NUMA = 0x80, 0x100, 0x2000  # scx_schedlearn.h, 6.1 numbering
LEVEL_FLAGS = (SD_SHARE_CPUCAPACITY | SD_SHARE_LLC, SD_SHARE_LLC, 0, SD_NUMA)  # emit()'s sd_flags per level


class CostError(RuntimeError):
    """Why the native cost could not be measured (one line)."""


def problem() -> str | None:
    """Why the programs cannot run here (None: they can, as far as can be told without bpf())."""
    if os.geteuid() != 0:
        return "the native cost loads BPF programs on this kernel (BPF_PROG_TEST_RUN): needs root"
    return None


# -- candidates ----------------------------------------------------------------------------------

# (level, delta_ns, src_load, dst_load, src_nr, dst_nr, fails, policy, buddy, numa) per candidate,
# within the ranges recorded under scx (kernel/scx/README.md) plus the rule's rarer branches;
# numa: (total, src_faults, dst_faults, preferred node) or None (scx: no NUMA faults)
REPRESENTATIVE = (
    (0, 37_000_000, 3542, 1479, 5, 0, 0, 0, 0, None),  # SMT sibling: never hot
    (0, 44_000, 3542, 1479, 5, 0, 0, 0, 0, None),
    (1, 44_000, 3542, 1479, 5, 0, 0, 0, 0, None),  # LLC, ran 44 us ago: hot, refused
    (1, 480_000, 71, 49, 1, 0, 1, 0, 0, None),
    (1, 120_000, 3542, 1479, 4, 0, 2, 0, 0, None),  # hot but 2 failures > 1: allowed
    (1, 37_000_000, 3542, 1479, 5, 0, 0, 0, 0, None),  # cold
    (1, 1 << 40, 25543, 10080, 27, 17, 0, 0, 0, None),  # never ran under scx: cold
    (1, 700_000, 900, 0, 2, 0, 1, 3, 0, None),  # SCHED_BATCH, cold
    (1, 44_000, 3542, 1479, 5, 0, 0, 5, 0, None),  # SCHED_IDLE: never hot
    (1, 2_000_000, 3542, 1479, 5, 1, 0, 0, 1, None),  # a buddy: hot
    (2, 300_000, 2048, 1024, 3, 1, 0, 0, 0, None),  # same node, other package: hot
    (3, 37_000_000, 3542, 1479, 5, 0, 0, 0, 0, None),  # other node: cold
    (3, 120_000, 7000, 1000, 8, 1, 1, 0, 0, None),  # other node, hot, 1 failure <= 2
    (3, 5_000_000, 3542, 1479, 6, 0, 0, 0, 0, (1000, 800, 200, "src")),  # leaves its preferred node
    (3, 5_000_000, 3542, 1479, 6, 0, 0, 0, 0, (1000, 200, 800, "dst")),  # moves to its preferred node
    (3, 5_000_000, 3542, 1479, 6, 0, 3, 0, 0, (1000, 800, 200, 2)),  # fault weights: worse, 3 failures
)


def representative() -> np.ndarray:
    """REPRESENTATIVE as struct cm_record rows (the fields a steal decision reads; src node 0)."""
    from data.can_migrate.record import RECORD_DTYPE

    rec = np.zeros(len(REPRESENTATIVE), RECORD_DTYPE)
    for i, (level, delta, sload, dload, snr, dnr, fails, policy, buddy, numa) in enumerate(REPRESENTATIVE):
        r = rec[i]
        r["cpu"] = r["dst_cpu"] = 0
        r["src_cpu"] = 1
        r["delta_ns"], r["src_load"], r["dst_load"] = delta, sload, dload
        r["src_nr_running"], r["dst_nr_running"], r["nr_balance_failed"] = snr, dnr, fails
        r["cache_nice_tries"] = (0, 1, 1, 2)[level]  # sd_init()'s, as the scheduler sets it
        r["cpu_newly_idle"], r["idle"], r["policy"], r["buddy_hot"] = 1, 2, policy, buddy
        r["sd_level"], r["sd_flags"] = level, LEVEL_FLAGS[level]
        r["src_node"], r["dst_node"] = 0, 1 if level == 3 else 0
        r["numa_preferred_nid"] = -1
        if numa is not None:
            total, src_f, dst_f, pref = numa
            r["total_numa_faults"] = total
            r["numa_faults"][0], r["numa_faults"][1] = src_f, dst_f
            r["numa_preferred_nid"] = {"src": 0, "dst": 1}.get(pref, pref)
        r["dst_allowed"] = 1
    return rec


def recorded(paths: list[Path]) -> np.ndarray:
    """Up to COST_SLOTS recorded decisions (evenly spaced) from run folders or record files."""
    from kernel import cm_parity

    try:
        rec = np.concatenate([cm_parity.read_records(f) for f in cm_parity.record_files(paths)])
    except cm_parity.ParityError as e:
        raise CostError(str(e)) from None
    from data.can_migrate.record import LBF_ACTIVE_LB

    rec = rec[(rec["env_flags"] & LBF_ACTIVE_LB) == 0]  # an active balance never asks the rule
    if not len(rec):
        raise CostError(f"{', '.join(map(str, paths))}: no records (outside active balancing)")
    return rec[np.unique(np.linspace(0, len(rec) - 1, min(len(rec), COST_SLOTS)).astype(int))]


def slots(rec: np.ndarray) -> np.ndarray:
    """The candidates repeated to fill the COST_SLOTS the programs cycle through."""
    return rec[np.arange(COST_SLOTS) % len(rec)]


def level_of(sd_flags: np.ndarray) -> np.ndarray:
    """enum sl_level from a record's sd_flags (the inverse of emit()'s; CFS records alike)."""
    return np.select(
        [(sd_flags & SD_SHARE_CPUCAPACITY) != 0, (sd_flags & SD_NUMA) != 0, (sd_flags & SD_SHARE_LLC) != 0],
        [0, 3, 1],
        2,
    )


def cand_bytes(rec: np.ndarray) -> bytes:
    """struct cost_cand[] (cost.h): struct cm_fields as cm_fields_from_record() fills it, level, policy."""
    from data.can_migrate.int_features import FIELDS, fields_from_records
    from data.can_migrate.record import records_frame

    dtype = np.dtype([*FIELDS, ("level", "<u4"), ("policy", "<u4")])
    out = np.zeros(len(rec), dtype)
    fields = fields_from_records(records_frame(rec))
    for name, _ in FIELDS:
        out[name] = fields[name]
    out["level"] = level_of(rec["sd_flags"].astype(np.int64))
    out["policy"] = rec["policy"]
    return out.tobytes()


# -- the references --------------------------------------------------------------------------------


def rule_reference(rec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(allow, enum sl_path) per record from data/can_migrate/rule.py (Chen's features + context)."""
    import pandas as pd

    from data.can_migrate.int_features import FEATURES, fields_from_records, raw_features
    from data.can_migrate.record import records_frame
    from data.can_migrate.rule import decision_path, kernel_verdict, rule_context

    frame = records_frame(rec)
    raw = raw_features(fields_from_records(frame))
    rows = pd.concat([pd.DataFrame(raw, columns=[n for n, _ in FEATURES]), rule_context(frame)], axis=1)
    allow, _ = kernel_verdict(rows)
    path = decision_path(rows)["branch"].cat.codes.to_numpy() - 1  # enum sl_path: BRANCHES without active_lb
    return allow.astype(int), path.astype(int)


def model_reference(export: Path, rec: np.ndarray) -> np.ndarray:
    """The Python integer reference's logit per record (export/intref.py via kernel/cm_parity.py)."""
    from kernel import cm_parity

    try:
        return cm_parity.reference_logits(cm_parity.load_export(Path(export)), rec)
    except cm_parity.ParityError as e:
        raise CostError(str(e)) from None


# -- the measurement -------------------------------------------------------------------------------


def run_loader(exe: Path, rec: np.ndarray, repeat: int, trials: int, blob: Path | None) -> dict:
    """cost_run on this kernel -> its JSON (programs, trials, the decisions stored per slot)."""
    with tempfile.TemporaryDirectory(prefix="scx-cost-") as tmp:
        cands = Path(tmp) / "cands.bin"
        cands.write_bytes(cand_bytes(rec))
        cmd = [str(exe), "--cands", str(cands), "--repeat", str(repeat), "--trials", str(trials)]
        r = subprocess.run(cmd + (["--blob", str(blob)] if blob else []), capture_output=True, text=True)
    if r.returncode:
        lines = r.stderr.strip().splitlines()
        raise CostError((lines[-1] if lines else f"exit {r.returncode}").removeprefix("error: "))
    return json.loads(r.stdout)


def summarise(prog: dict) -> dict:
    """One program's trials -> median / min of the kernel's ns per run, median wall ns per run."""
    ns = [t[0] for t in prog["runs"]]
    return {
        "insns": prog["insns"],
        "jited_bytes": prog["jited"],
        "xlated_bytes": prog["xlated"],
        "ns_trials": ns,
        "ns_median": statistics.median(ns),
        "ns_min": min(ns),
        "wall_ns_median": round(statistics.median(t[1] for t in prog["runs"]), 2),
    }


def measure(
    export: Path | None = None,
    repeat: int = DEFAULT_REPEAT,
    trials: int = DEFAULT_TRIALS,
    runs: list[Path] | None = None,
    log=print,
    bpf_cpu: str | None = None,
) -> dict:
    """Build, load and time the programs; check their decisions; the report (a dict)."""
    from kernel.scx import build

    bpf_cpu = bpf_cpu or build.BPF_CPU
    if repeat < COST_SLOTS or repeat >= 1 << 32:
        raise CostError(f"--repeat {repeat}: want {COST_SLOTS} .. 2^32-1 (every candidate slot decided)")
    if not 1 <= trials <= 100:
        raise CostError(f"--trials {trials}: want 1 .. 100")
    if why := problem():
        raise CostError(why)
    try:
        exe = build.build_cost(export=Path(export) if export else None, log=log, bpf_cpu=bpf_cpu).exe
    except build.ScxBuildError as e:
        raise CostError(f"build: {e}") from None
    base = recorded(runs) if runs else representative()
    rec = slots(base)
    out = run_loader(exe, rec, repeat, trials, Path(export) / "model.blob" if export else None)
    progs = {p["name"].removeprefix("cost_"): summarise(p) for p in out["progs"]}
    empty = progs["empty"]["ns_median"]
    for p in progs.values():
        p["ns_minus_empty"] = p["ns_median"] - empty
    stored = np.array(out["outs"], np.int64)  # per slot: logit, rule_ok, rule_path, model_ok, model_err
    allow, path = rule_reference(rec)
    checks = {
        "rule_verdict_differences": int((stored[:, 1] != allow).sum()),
        "rule_path_differences": int((stored[:, 2] != path).sum()),
        "rule_paths_seen": sorted({int(x) for x in stored[:, 2]}),
        "rule_allowed": int(stored[:, 1].sum()),
    }
    if export:
        logit = model_reference(Path(export), rec)
        checks |= {
            "model_logit_differences": int((stored[:, 0] != logit).sum()),
            "model_verdict_differences": int((stored[:, 3] != (logit > 0)).sum()),
            "model_errors": int(stored[:, 4].sum()),
            "model_distinct_logits": len(set(stored[:, 0].tolist())),
        }
    ok = all(v == 0 for k, v in checks.items() if k.endswith(("differences", "errors")))
    return {
        "kernel": out["kernel"],
        "jit": _read("/proc/sys/net/core/bpf_jit_enable"),
        "cpu": _cpu_model(),
        "repeat": out["repeat"],
        "trials": out["trials"],
        "candidates": int(len(base)),
        "candidates_from": [str(p) for p in runs] if runs else "representative",
        "export": str(export) if export else None,
        "macs": _macs(Path(export)) if export else None,
        "bpf_cpu": bpf_cpu,
        "programs": progs,
        "checks": checks,
        "correct": ok,
        "goal_ns": GOAL_NS,
    }


def _macs(export: Path) -> int | None:
    """SLM_MACS of the export's model.h: multiply-accumulates per decision."""
    import re

    found = re.search(r"^#define SLM_MACS (\d+)", (export / "model.h").read_text(), re.M)
    return int(found.group(1)) if found else None


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return "-"


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "-"


def report_lines(rep: dict) -> list[str]:
    """The report as the CLI prints it."""
    lines = [
        f"kernel {rep['kernel']} (native, JIT {rep['jit']}), {rep['cpu']}, clang -mcpu={rep['bpf_cpu']}; "
        f"BPF_PROG_TEST_RUN repeat "
        f"{rep['repeat']} x {rep['trials']} trials; {rep['candidates']} candidates ({rep['candidates_from']}) "
        f"in {COST_SLOTS} slots",
        f"{'program':8s} {'insns':>7s} {'jited':>6s} {'xlated':>6s} {'ns/run':>7s} {'min':>5s} {'-empty':>7s} "
        f"{'wall':>7s}  trials (ns)",
    ]
    for name, p in rep["programs"].items():
        lines.append(
            f"{name:8s} {p['insns']:7d} {p['jited_bytes']:6d} {p['xlated_bytes']:6d} {p['ns_median']:7.1f} "
            f"{p['ns_min']:5d} {p['ns_minus_empty']:7.1f} {p['wall_ns_median']:7.1f}  {p['ns_trials']}"
        )
    c = rep["checks"]
    check = (
        f"check: rule {COST_SLOTS - c['rule_verdict_differences']}/{COST_SLOTS} verdicts and "
        f"{COST_SLOTS - c['rule_path_differences']}/{COST_SLOTS} branches as data/can_migrate/rule.py "
        f"(branches {c['rule_paths_seen']}, {c['rule_allowed']} allowed)"
    )
    if "model_logit_differences" in c:
        check += (
            f"; model {COST_SLOTS - c['model_logit_differences']}/{COST_SLOTS} logits as export/intref.py "
            f"({c['model_distinct_logits']} distinct), {c['model_errors']} errors"
        )
    lines.append(check)
    decided = [n for n in ("rule", "model") if n in rep["programs"]]
    figures = ", ".join(
        f"{n} {rep['programs'][n]['ns_minus_empty']:.0f} ns ({rep['programs'][n]['ns_median']:.0f} raw): "
        f"{'PASS' if rep['programs'][n]['ns_minus_empty'] <= rep['goal_ns'] else 'FAIL'}"
        for n in decided
    )
    lines.append(f"goal <= {rep['goal_ns']:.0f} ns native per decision (minus the empty program's): {figures}")
    if rep.get("macs"):
        m = rep["programs"]["model"]
        per = (m["ns_median"] - rep["programs"]["feed"]["ns_median"]) / rep["macs"]
        lines.append(f"model: {rep['macs']} MACs, {per:.2f} ns per MAC (minus the harness, cost_feed)")
    return lines
