"""The three-arm A/B in Debian's 7.3 guest: EEVDF vs scx_schedlearn `rule` vs `model`.

    python -m kernel.scx ab EXPORT --out DIR [--workloads W...] [--reps N] [--topology SxCxT]

One boot (qemu TCG) interleaves per repetition and workload the arms `eevdf` (no BPF scheduler:
the kernel's own fair class), `rule` and `model` back to back, the order rotated every
repetition as kernel/ab/init.sh rotates its arms. Each run is timed by kernel/ab's abrun (its
lockless BPF runqueue sampler gives Chen's metrics) and marked as kernel/ab's init.sh marks
them, so kernel/ab/guest.py parses the console and kernel/ab/report.py computes the ratios
(percentile bootstrap), percentiles and the figure. Beside the ratio of medians (each arm
resampled on its own), the paired ratio: the median of the per-repetition ratios, bootstrapped
over repetitions; the arms of a repetition ran back to back, so a slow spell of the emulated
machine, which moves all three, cancels in it.

Loading: an scx arm loads the scheduler for each run (kernel/scx/init.sh scx_run around one
ab_run): the loader's counters are then per run (steals per workload), the model arm's
records per run, and every run starts from a fresh scheduler; a load costs ~1.5 s of guest
time (the model build's verification included), outside the timed window. Both scx arms run
with --record, so they carry the same recording cost; the model arm's decisions are checked
against the Python integer reference afterwards (kernel/scx/model.py parity).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from data.collect.guest import topology as guest_topology
from kernel.ab import guest as abguest
from kernel.ab import report
from kernel.scx import build as scx_build
from kernel.scx import guest
from plumbing import qemu
from plumbing.atomic import staged_dir, write_atomic, write_json_atomic

ARMS = ("eevdf", "rule", "model")
ARM_SECONDS = {a: f"{a}_s" for a in ARMS}  # a workload row's completion times per arm
PAIRS = (("model", "rule"), ("rule", "eevdf"), ("model", "eevdf"))  # numerator / denominator
DEFAULT_WORKLOADS = ("hackbench-pipe", "stress-ng-fib", "stress-ng-matrix")
SAMPLE_MS = 25  # kernel.ab's sampler period
MEM_MB = 1024
PER_RUN_S = 40  # generous guest seconds per run (load included), for the boot timeout
HALFWIDTH_MAX = 0.05  # the acceptance's model-vs-rule CI half-width
DECIDING_PROGRAM = "schedlearn_dispatch"  # holds the steal walk and the global sl_judge (the decision)
EMULATED = "qemu TCG software emulation (Debian 7.3 guest): times are not native speed; compare arms only"
NR_RUNNING_NOTE = (
    "Under sched_ext the sampler's `rq->nr_running` counts the same tasks as under EEVDF: "
    "enqueue_task_scx() (kernel/sched/ext/ext.c, 7.3) adds a runnable task to `rq->nr_running` of the "
    "runqueue it is enqueued on, whichever DSQ the BPF scheduler then puts it in; scx_schedlearn queues it "
    "on the DSQ of that same CPU (scx_bpf_task_cpu) and a steal (scx_bpf_dsq_move to the local DSQ) "
    "migrates it to the stealing CPU's runqueue. So a CPU's length is its DSQ + its local DSQ + the running "
    "task in the scx arms, and the fair class's runnable tasks in the eevdf arm. `cfs.h_nr_running` is gone "
    "in 7.3 (split into h_nr_queued/h_nr_runnable), so the sampler's cfs-only count is 0 there."
)
SERIAL_NOTE = (
    "The 7.3 guest runs with one TCG thread for all vCPUs (kernel/scx/guest.py ACCEL; with thread=multi "
    "half the boots oopsed in text patching as sched_ext enabled), which executes the vCPUs round-robin "
    "(slices of up to 100 ms): while one runs the others wait, and a halted (idle) vCPU is skipped. A "
    "completion time here is therefore closer to the total work of all vCPUs (the workload plus the "
    "scheduler's and the kernel's own paths) than to a parallel critical path: an idle CPU beside a queue "
    "costs little, a longer scheduling path costs in full. Run-to-run spread is large even on an idle host "
    "(the round-robin slices, the host's own scheduling of the qemu thread), more beside other jobs."
)
STEALS_LABEL = (
    "the loader's counters (kernel/scx/scx_schedlearn.c final JSON line) of the runs' scheduler, "
    "loaded for each run: steals per second of the workloads' completion time"
)
BALANCER_LABEL = (
    "schedstat v17 domain counters (lb_gained + alb_pushed) differenced over each run: the fair class's "
    "load balancer, active in the eevdf arm; under sched_ext the tasks are not in the fair class, so the "
    "scx arms show (about) none"
)


class AbError(RuntimeError):
    """The A/B could not be prepared or did not finish (one line)."""


def order(rep: int) -> list[str]:
    """The arms of repetition rep (1-based), rotated by one each repetition (kernel/ab/init.sh)."""
    k = (rep - 1) % len(ARMS)
    return list(ARMS[k:] + ARMS[:k])


def step_name(arm: str, rep: int, workload: str) -> str:
    return f"{arm}-r{rep:02d}-{workload}"


def plan(workloads: list[str], reps: int, export: Path, sample_ms: int = SAMPLE_MS) -> tuple[list[guest.Step], str]:
    """(the scx steps, /plan.sh): per repetition and workload the three arms in rotated order;
    eevdf runs ab_run bare, rule and model run it inside scx_run (load, run, unload)."""
    steps: list[guest.Step] = []
    lines = [f"SAMPLE_MS={int(sample_ms)}", "ab_setup"]
    for rep in range(1, reps + 1):
        for w in workloads:
            for arm in order(rep):
                if arm == "eevdf":
                    lines.append(f"ab_run eevdf {rep} {w}")
                    continue
                loader = ("--mode", arm, "--record")
                if arm == "model":
                    loader += ("--blob", guest.MODEL_BLOB)
                step = guest.Step(
                    step_name(arm, rep, w),
                    loader,
                    ("ab_run", arm, str(rep), w),
                    export=export if arm == "model" else None,
                )
                steps.append(step)
                lines.append(guest.plan_script([step]).rstrip("\n"))
    return steps, "\n".join(lines) + "\n"


def abrun_exe(log=print) -> Path:
    """kernel/ab's abrun (static, with its CO-RE sampler), cached under data/_build/scx/ by the
    hash of its sources and the vmlinux.h it is compiled against."""
    h = hashlib.sha256()
    for p in (abguest.ABRUN, abguest.SAMPLER, abguest.HERE / "rqsample.h"):
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    vmlinux_h = abguest.bcc.BUILD / "vmlinux.h"
    if vmlinux_h.exists():
        h.update(vmlinux_h.read_bytes())
    out = scx_build.BUILD / f"abrun-{h.hexdigest()[:16]}"
    if (out / "abrun").is_file():
        return out / "abrun"
    out.parent.mkdir(parents=True, exist_ok=True)
    with staged_dir(out) as part, tempfile.TemporaryDirectory(prefix="scx-abrun.") as tmp:
        shutil.copy(abguest.build_abrun(Path(tmp)), part / "abrun")
    log(f"scx ab: built {out / 'abrun'}")
    return out / "abrun"


def guest_files(workloads: list[str], log=print) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """(extra files, extra executables) of the A/B initramfs: /ab.workloads; abrun, the topology
    script and the workloads' programs with their libraries."""
    files = {"ab.workloads": abguest.workload_lines(workloads)}
    execs: dict[str, bytes] = {}
    names: set[str] = set()
    abguest.add_tools(execs, names, workloads)
    execs["abrun"] = abrun_exe(log).read_bytes()
    execs[guest_topology.GUEST_PATH] = guest_topology.SCRIPT.read_bytes()
    return files, execs


_KV = re.compile(r"(\w+)=(\S+)")


def parse_ops(console: str) -> dict[tuple[str, str, int], dict[str, str]]:
    """SLX-AB-OPS lines -> {(workload, arm, rep): {"ops", "state"}}: the sched_ext ops name and
    state read as each run's workload ended (the arm's scheduler still loaded)."""
    out = {}
    for line in console.splitlines():
        if line.startswith("SLX-AB-OPS "):
            kv = dict(_KV.findall(line))
            out[(kv["w"], kv["arm"], int(kv["rep"]))] = {"ops": kv.get("ops", "-"), "state": kv.get("state", "-")}
    return out


def verifier_figures(line: str | None) -> dict:
    """The loader's verifier line of one program -> insns_processed, jited_bytes, xlated_bytes."""
    if not line:
        return {}
    out = {}
    for key, pat in (
        ("insns_processed", r"processed (\d+) insns"),
        ("jited_bytes", r"jited (\d+) bytes"),
        ("xlated_bytes", r"xlated (\d+) bytes"),
    ):
        m = re.search(pat, line)
        if m:
            out[key] = int(m.group(1))
    return out


def verifier_summary(lines: list[str | None]) -> dict:
    """The deciding program's figures over an arm's loads: insns_processed and jited_bytes of
    the first load, and each figure's range over all loads (the JIT's size can vary by a few
    bytes from load to load: immediates of different widths)."""
    figs = [f for f in map(verifier_figures, lines) if f]
    out: dict = {"program": DECIDING_PROGRAM, "loads": len(figs)}
    if figs:
        out |= figs[0]
        for k in figs[0]:
            vals = [f[k] for f in figs if k in f]
            out[f"{k}_range"] = [min(vals), max(vals)]
    return out


def _median(xs) -> float | None:
    return float(np.median(xs)) if len(xs) else None


def arm_row(runs: list[abguest.Run], stats: list[dict]) -> dict:
    """One workload's arm: completion and CPU times in repetition order, the loader's counters
    (scx arms) and the balancer's migrations (schedstat)."""
    runs = sorted(runs, key=lambda r: r.rep)
    secs = sum(r.seconds for r in runs)
    tot = Counter()
    for s in stats:
        tot.update({k: v for k, v in s.items() if isinstance(v, int) and not isinstance(v, bool)})
    lb = sum(r.sched.get("lb_gained", 0) + r.sched.get("alb_pushed", 0) for r in runs)
    return {
        "seconds": [round(r.seconds, 4) for r in runs],
        "cpu_seconds": [round(r.cpu_seconds, 4) for r in runs if r.cpu_seconds is not None],
        "reps": [r.rep for r in runs],
        "failed_runs": sum(r.rc != 0 for r in runs),
        "median_s": _median([r.seconds for r in runs]),
        "steals": tot["steals"] if stats else None,
        "steals_per_s": tot["steals"] / secs if stats and secs else None,
        "candidates": tot["candidates"] if stats else None,
        "refused": tot["refused"] if stats else None,
        "refused_rate": tot["refused"] / tot["candidates"] if stats and tot["candidates"] else None,
        "steal_levels": {k: tot[k] for k in ("steal_smt", "steal_llc", "steal_node", "steal_remote")}
        if stats
        else None,
        "decisions_recorded": tot["written"] if stats else None,
        "ring_full": tot["ring_full"] if stats else None,
        "loader_seconds": round(sum(float(s.get("seconds") or 0) for s in stats), 3) if stats else None,
        "balancer_migrations_per_s": lb / secs if secs else None,
        "hot_migrations_per_s": sum(r.sched.get("lb_hot_gained", 0) for r in runs) / secs if secs else None,
    }


def summarise(runs: list[abguest.Run], stats: dict[tuple[str, str, int], dict], meta: dict) -> dict:
    """Runs (kernel.ab's parse) and the loader's counters per (workload, arm, rep) -> ab.json's
    body: per workload the arms' rows, the three ratios with 95% bootstrap CIs and half-widths,
    and the model-vs-rule acceptance (CI contains 1.0, half-width <= 5%)."""
    out = {"emulated": EMULATED, **meta, "arms_order": "rotated every repetition", "workloads": {}}
    for w in dict.fromkeys(r.workload for r in runs if r.arm in ARMS):
        row: dict = {}
        for a in ARMS:
            mine = [r for r in runs if r.workload == w and r.arm == a]
            st = [s for (sw, sa, _), s in sorted(stats.items()) if sw == w and sa == a]
            row[a] = arm_row(mine, st)
            row[ARM_SECONDS[a]] = row[a]["seconds"]
            row.setdefault("chen", {})[a] = report.chen_metrics(mine)
        row["ratios"] = {f"{n}/{d}": report.ratio_summary(row[n]["seconds"], row[d]["seconds"]) for n, d in PAIRS}
        row["cpu_ratios"] = {
            f"{n}/{d}": report.ratio_summary(row[n]["cpu_seconds"], row[d]["cpu_seconds"]) for n, d in PAIRS
        }
        row["reps"] = min(len(row[a]["seconds"]) for a in ARMS)
        out["workloads"][w] = row
    add_paired(out)
    sampled = [r for r in runs if r.arm in ARMS]
    whole = report.chen_metrics(sampled)
    out["sampler"] = {k: whole.get(k) for k in report.SAMPLER_KEYS} | {
        "runs": len(sampled),
        "label": report.SAMPLER_LABEL,
        "nr_running_under_scx": NR_RUNNING_NOTE,
    }
    out["steals_label"] = STEALS_LABEL
    out["balancer_label"] = BALANCER_LABEL
    return out


def _judge(r: dict) -> dict:
    lo, hi = r["ci95"]
    out = {"ci_contains_1": bool(lo <= 1.0 <= hi), "halfwidth": r["ci_halfwidth"]}
    out["halfwidth_ok"] = bool(r["ci_halfwidth"] <= HALFWIDTH_MAX)
    out["met"] = out["ci_contains_1"] and out["halfwidth_ok"]
    return out


def add_paired(ab: dict) -> dict:
    """Per workload the paired ratios (runs of the same repetition: the arms ran back to back;
    report.paired_ratio_summary) and the model-vs-rule acceptance, judged on the ratio of
    medians (the issue's figure) and, beside it, on the paired ratio. Works on a saved ab.json."""
    accept = {}
    for w, row in ab["workloads"].items():
        by_rep = {a: dict(zip(row[a]["reps"], row[a]["seconds"], strict=True)) for a in ARMS}
        row["paired_ratios"] = {}
        for n, d in PAIRS:
            reps = sorted(set(by_rep[n]) & set(by_rep[d]))
            row["paired_ratios"][f"{n}/{d}"] = report.paired_ratio_summary(
                [by_rep[n][r] for r in reps], [by_rep[d][r] for r in reps]
            )
        accept[w] = _judge(row["ratios"]["model/rule"]) | {"paired": _judge(row["paired_ratios"]["model/rule"])}
    ab["acceptance_model_vs_rule"] = {
        "criterion": f"95% CI of median(model)/median(rule) contains 1.0 with half-width <= {HALFWIDTH_MAX}; "
        "'paired': the same for the median of the per-repetition ratios",
        "workloads": accept,
        "all_met": bool(accept) and all(a["met"] for a in accept.values()),
        "all_met_paired": bool(accept) and all(a["paired"]["met"] for a in accept.values()),
    }
    return ab


def _ops_of(ops: dict, arm: str) -> str | None:
    names = sorted({v["ops"] for (_, a, _), v in ops.items() if a == arm})
    return ",".join(names) if names else None


TROUBLE = re.compile(r"\b(BUG|Oops|WARNING|Call Trace|kernel panic)\b|^SLM-AB-TROUBLE|^SLX-FATAL|^SLX-NOTREADY")


def run(
    export: Path,
    out: Path,
    workloads: list[str],
    reps: int,
    smp: int = 4,
    topology: qemu.Topology | None = None,
    sample_ms: int = SAMPLE_MS,
    log=print,
    cfs_model: bool = False,
) -> dict:
    """Boot, run, check the model arm's parity, write OUT/ab.json, report.md, ab.png,
    console.log and OUT/steps/ (each scx run's loader output and records). cfs_model: run an
    export trained on CFS's records (the report says its inputs meant something else)."""
    from kernel.scx import model as scx_model

    why, meaning = scx_model.runnable(export, cfs_model)
    if why:
        raise AbError(why)
    export = Path(export).resolve()
    try:
        files, execs = guest_files(workloads, log)
    except abguest.GuestError as e:
        raise AbError(str(e)) from None
    steps, plan_sh = plan(workloads, reps, export, sample_ms)
    n_runs = reps * len(workloads) * len(ARMS)
    per_run = PER_RUN_S * max(1, smp / 4)
    timeout = round(guest.BOOT_S + 30 + per_run * n_runs)
    shape = f"{smp} vCPUs" if topology is None else f"topology {topology.spec} ({smp} vCPUs)"
    log(f"scx ab: {shape}, {len(workloads)} workloads x {reps} reps x {len(ARMS)} arms (timeout {timeout} s)")
    out.mkdir(parents=True, exist_ok=True)
    keep = out / "steps"
    try:
        g = guest.run(
            steps,
            smp=smp,
            mem_mb=MEM_MB,
            timeout=timeout,
            keep=keep,
            log=log,
            topology=topology,
            extra_files=files,
            extra_execs=execs,
            plan=plan_sh,
        )
    except guest.GuestError as e:
        raise AbError(str(e)) from None
    write_atomic(out / "console.log", g.console)
    if "fatal" in g.boot:
        raise AbError(f"guest: {g.boot['fatal']}")
    if not g.done:
        tail = [line for line in g.console.splitlines() if line.strip()][-3:]
        raise AbError(f"guest did not finish in {g.seconds:.0f} s (console.log: {' | '.join(tail)})")
    runs, _, _ = abguest.parse(g.console)
    ops = parse_ops(g.console)
    stats = {}
    for s in steps:
        r = g.steps.get(s.name)
        if r is not None and r.stats is not None:
            _, arm, rep, w = s.workload
            stats[(w, arm, int(rep))] = r.stats
    trouble = [line.strip() for line in g.console.splitlines() if TROUBLE.search(line.strip())]
    for s in steps:
        r = g.steps.get(s.name)
        if r is None or r.stats is None:
            trouble.append(f"{s.name}: the loader did not run ({r.not_ready if r else 'no output'})")
        elif r.stats.get("ejected") or r.result.get("loader_rc") != "0":
            trouble.append(f"{s.name}: loader_rc={r.result.get('loader_rc')} exit={r.stats.get('exit_kind_name')}")
    trouble += [f"{r.workload}/{r.arm}/rep {r.rep}: workload rc={r.rc}" for r in runs if r.rc != 0]
    spec = topology.spec if topology is not None else None
    meta = {
        "export": str(export),
        "kernel": g.boot.get("release"),
        "kernel_package": g.kernel,
        "smp": smp,
        "reps": reps,
        "workloads_run": list(workloads),
        "workload_commands": {w: abguest.AB_WORKLOADS[w][1] for w in workloads},
        "sample_ms": sample_ms,
        "boot_seconds": round(g.seconds, 1),
        "accel": guest.ACCEL,
        "topology": abguest.guest_topology_view(g.console, spec),
        "loading": "scx arms: the scheduler loaded for each run (outside the timed window), with --record",
        "trouble": trouble,
    }
    ab = summarise(runs, stats, meta)
    ab["arms"] = arm_facts(steps, g, ops, export)
    ab["arms"]["model"]["inputs"] = meaning
    write_json_atomic(out / "ab.json", ab)
    write_atomic(out / "report.md", markdown(ab))
    report.plot(ab, out / "ab.png", ARM_SECONDS)
    return ab


def arm_facts(steps: list[guest.Step], g: guest.GuestRun, ops: dict, export: Path) -> dict:
    """Per arm: the ops name read while it ran; for the scx arms the verifier's figures of the
    deciding program and the recorded decisions; for the model arm their parity."""
    from kernel.cm_parity import ParityError
    from kernel.scx import model as scx_model

    facts: dict = {"eevdf": {"scx_ops": _ops_of(ops, "eevdf"), "scheduler": "the kernel's fair class (EEVDF)"}}
    for arm in ("rule", "model"):
        mine = [g.steps[s.name] for s in steps if s.workload[1] == arm and s.name in g.steps]
        facts[arm] = {
            "scx_ops": _ops_of(ops, arm),
            "verifier": verifier_summary([r.verifier.get(DECIDING_PROGRAM) for r in mine]),
            "loads": len(mine),
            "decisions_recorded": sum(int((r.stats or {}).get("written") or 0) for r in mine),
            "ring_full": sum(int((r.stats or {}).get("ring_full") or 0) for r in mine),
        }
    model_steps = [g.steps[s.name] for s in steps if s.workload[1] == "model" and s.name in g.steps]
    files = [r.share / "records.bin" for r in model_steps if r.share and (r.share / "records.bin").is_file()]
    files = [f for f in files if f.stat().st_size > 0]
    facts["model"]["export"] = str(export)
    facts["model"]["model_err"] = sum(int((r.stats or {}).get("model_err") or 0) for r in model_steps)
    if not files:
        facts["model"]["parity"] = {"decisions": 0, "differences": None, "why": "no recorded decisions"}
        return facts
    try:
        rep = scx_model.parity(export, files)
    except (scx_model.ModelError, ParityError, OSError) as e:
        facts["model"]["parity"] = {"decisions": None, "differences": None, "why": str(e)}
        return facts
    facts["model"]["parity"] = {
        "decisions": rep["decisions"],
        "differences": rep["differences"],
        "logit_differences": rep["logit_differences"],
        "distinct_logits": rep["distinct_logits"],
        "migrate_rate": rep["migrate_rate"],
        "files": len(files),
        "reference": "kernel/scx/model.py parity: data/can_migrate/int_features.py + export's encoder + IntRef",
    }
    return facts


def _fmt(v, spec=".3f") -> str:
    return report._fmt(v, spec)


def _ratio_cell(r: dict) -> str:
    lo, hi = r["ci95"]
    return f"{_fmt(r['median'])} [{_fmt(lo)}, {_fmt(hi)}] ±{_fmt(r['ci_halfwidth'])}"


def _spread(secs: list[float]) -> str:
    if not secs:
        return "n/a"
    return f"{_fmt(float(np.median(secs)))} ({_fmt(min(secs))}–{_fmt(max(secs))})"


def verdicts(ab: dict) -> list[str]:
    """The plain sentences: model vs rule against the acceptance, then EEVDF vs scx."""
    acc = ab.get("acceptance_model_vs_rule", {}).get("workloads", {})
    lines = ["**Model vs rule** (acceptance: the 95% CI contains 1.0 and its half-width is ≤ 0.05):", ""]
    for w, a in acc.items():
        r = ab["workloads"][w]["ratios"]["model/rule"]
        p, pa = ab["workloads"][w].get("paired_ratios", {}).get("model/rule"), a.get("paired")
        lines.append(
            f"- {w}: {_ratio_cell(r)}: the CI {'contains' if a['ci_contains_1'] else 'does NOT contain'} 1.0, "
            f"half-width {_fmt(a['halfwidth'])} {'≤' if a['halfwidth_ok'] else '>'} 0.05 → "
            f"{'met' if a['met'] else 'NOT met'}."
            + (
                f" Paired per repetition: {_ratio_cell(p)}: {'contains' if pa['ci_contains_1'] else 'does NOT contain'}"
                f" 1.0, half-width {'≤' if pa['halfwidth_ok'] else '>'} 0.05 → {'met' if pa['met'] else 'NOT met'}."
                if p and pa
                else ""
            )
        )
    lines += ["", "**EEVDF vs scx_schedlearn** (reported, not judged; median completion time, range in brackets):", ""]
    for w, row in ab["workloads"].items():
        rr, mr = row["ratios"]["rule/eevdf"], row["ratios"]["model/eevdf"]
        lines.append(
            f"- {w}: eevdf {_spread(row['eevdf_s'])} s, rule {_spread(row['rule_s'])} s, model "
            f"{_spread(row['model_s'])} s; rule/eevdf {_ratio_cell(rr)}, model/eevdf {_ratio_cell(mr)}."
        )
    return lines


def markdown(ab: dict) -> str:
    topo = ab.get("topology") or {}
    shape = f"topology {topo['spec']}" if topo.get("spec") else f"{ab.get('smp')} vCPUs (flat)"
    kp = ab.get("kernel_package") or {}
    model = ab.get("arms", {}).get("model", {})
    rule = ab.get("arms", {}).get("rule", {})
    par = model.get("parity", {})
    lines = [
        "# A/B: EEVDF vs scx_schedlearn rule vs model (Debian 7.3, emulated)",
        "",
        f"Kernel package `{kp.get('package')}` version **{kp.get('version')}** (release `{ab.get('kernel')}`); "
        f"export `{ab.get('export')}` ({model.get('inputs', 'inputs not stated')}); {shape}; qemu TCG ({ab.get('accel')}): **every time here is emulated**, "
        f"compare arms only. {ab.get('reps')} repetitions per arm, the arms interleaved per repetition and "
        f"workload with their order rotated every repetition, in one boot ({_fmt(ab.get('boot_seconds'), '.0f')} s). "
        f"{ab.get('loading')}.",
        "",
        "Completion time, median s (emulated), and median ratios with 95% percentile-bootstrap CIs ± half-width:",
        "",
        "| workload | eevdf s | rule s | model s | model/rule | rule/eevdf | model/eevdf |",
        "|---|---|---|---|---|---|---|",
    ]
    for w, row in ab["workloads"].items():
        r = row["ratios"]
        lines.append(
            f"| {w} | {_fmt(row['eevdf']['median_s'])} | {_fmt(row['rule']['median_s'])} | "
            f"{_fmt(row['model']['median_s'])} | {_ratio_cell(r['model/rule'])} | {_ratio_cell(r['rule/eevdf'])} | "
            f"{_ratio_cell(r['model/eevdf'])} |"
        )
    lines += [
        "",
        "Paired per repetition (the arms of one repetition ran back to back, so a slow spell of the emulated "
        "machine falls on all three): median of the per-repetition ratios, 95% bootstrap CI over repetitions "
        "± half-width (kernel/ab/report.py paired_ratio_summary):",
        "",
        "| workload | model/rule | rule/eevdf | model/eevdf |",
        "|---|---|---|---|",
    ]
    for w, row in ab["workloads"].items():
        pr = row.get("paired_ratios", {})
        cells = [_ratio_cell(pr[k]) if k in pr else "n/a" for k in ("model/rule", "rule/eevdf", "model/eevdf")]
        lines.append(f"| {w} | {' | '.join(cells)} |")
    lines += ["", *verdicts(ab), "", f"**How to read the times:** {SERIAL_NOTE}", ""]
    lines += [
        f"Steals and migrations per arm. Steals/s: {ab.get('steals_label')}. Balancer migrations/s: "
        f"{ab.get('balancer_label')}. Task migrations/s: the sampler's sched_migrate_task count (every arm).",
        "",
        "| workload | arm | steals/s | candidates | refused | balancer migr./s | task migr./s | failed runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for w, row in ab["workloads"].items():
        for a in ARMS:
            x = row[a]
            lines.append(
                f"| {w} | {a} | {_fmt(x['steals_per_s'], '.1f')} | {x['candidates'] if x['candidates'] is not None else 'n/a'} | "
                f"{x['refused'] if x['refused'] is not None else 'n/a'} | {_fmt(x['balancer_migrations_per_s'], '.1f')} | "
                f"{_fmt(row['chen'][a].get('task_migrations_per_s'), '.1f')} | {x['failed_runs']} |"
            )
    lines += report.chen_table(ab, ARM_SECONDS)
    lines += ["", NR_RUNNING_NOTE, ""]
    mv, rv = model.get("verifier", {}), rule.get("verifier", {})
    lines += [
        "Model arm:",
        "",
        f"- parity with the Python integer reference (kernel/scx/model.py): {par.get('decisions')} recorded decisions, "
        f"{par.get('differences')} verdict differences, {par.get('logit_differences', 'n/a')} logit differences"
        + (f" ({par['why']})" if par.get("why") else "")
        + ";",
        f"- verifier, `{mv.get('program')}` (the steal walk and the global sl_judge: the decision): "
        f"{mv.get('insns_processed', 'n/a')} insns processed, {mv.get('jited_bytes', 'n/a')} bytes jited, "
        f"{mv.get('xlated_bytes', 'n/a')} xlated (rule build: {rv.get('insns_processed', 'n/a')} insns, "
        f"{rv.get('jited_bytes', 'n/a')} bytes jited);",
        f"- `/sys/kernel/sched_ext/root/ops` while the arms ran: model `{model.get('scx_ops')}`, rule "
        f"`{rule.get('scx_ops')}`, eevdf `{ab.get('arms', {}).get('eevdf', {}).get('scx_ops')}`;",
        f"- recorded decisions: model {model.get('decisions_recorded')}, rule {rule.get('decisions_recorded')} "
        f"(ring buffer full: {model.get('ring_full')} / {rule.get('ring_full')}).",
        "",
        f"Trouble lines (oops, warnings, loaders that did not run, failed workloads): {len(ab.get('trouble', []))}"
        + (": " + "; ".join(ab["trouble"][:5]) if ab.get("trouble") else "."),
        "",
    ]
    return "\n".join(lines)
