"""A/B runs -> ab.json, report.md, ab.png.

Times are emulated (qemu TCG): only ratios within one boot mean anything. The ratio is
median(active) / median(cfs) with a percentile bootstrap (each arm resampled on its own).
Beside it, less noisy measures: balancer migrations per second (schedstat lb_gained +
alb_pushed), cache-hot migrations, and Chen's metrics from abrun's lockless BPF sampler
(kernel/ab/rqsample.bpf.c): mean runnable tasks, the max-imbalance and runqueue-length
distributions (p50/p95/p99) and cross-node migrations per second, with the sampler's cost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kernel.ab.guest import ARMS, FAIR_COUNTERS, RQS_COUNTS, Run

BOOT = 10_000
PCTS = (50, 95, 99)
# Beside Chen's metrics in report.md: what the emulated machine cannot show (issue 19 item 9).
TCG_CAVEAT = (
    "qemu TCG models no caches, no SMT sharing of a core and no NUMA latency (remote memory costs what local "
    "memory costs), so these timings cannot show the benefit the cache-hot (task_hot) and locality "
    "(migrate_degrades_locality) rules exist for; what the arms can differ in here is where tasks run: "
    "migrations, imbalance, runqueue lengths."
)


# The arms of kernel.ab and the key of each one's completion times in a workload's row;
# kernel/scx/ab.py passes its own (eevdf, rule, model) to chen_table and plot.
ARM_SECONDS = {"cfs": "cfs_s", "shadow": "shadow_s", "active": "model_s"}


def ratio_ci(model: list[float], cfs: list[float], seed: int = 0, n: int = BOOT) -> tuple[float, list[float]]:
    model_s, cfs_s = np.asarray(model, float), np.asarray(cfs, float)
    if not len(model_s) or not len(cfs_s):
        return float("nan"), [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    boot_model = np.median(model_s[rng.integers(0, len(model_s), (n, len(model_s)))], axis=1)
    boot_cfs = np.median(cfs_s[rng.integers(0, len(cfs_s), (n, len(cfs_s)))], axis=1)
    lo, hi = np.percentile(boot_model / boot_cfs, [2.5, 97.5])
    return float(np.median(model_s) / np.median(cfs_s)), [float(lo), float(hi)]


def hist_percentiles(hist, pcts=PCTS) -> list[int | None]:
    """Nearest-rank percentiles of a histogram whose index is the value: the smallest value whose
    cumulative count reaches p% of all (numpy's method="inverted_cdf" on the expanded samples);
    integer arithmetic, so a tie is never lost to rounding. None for an empty histogram."""
    counts = np.asarray(hist, np.int64)
    n = int(counts.sum())
    if n == 0:
        return [None] * len(pcts)
    cum = np.cumsum(counts) * 100
    return [int(np.searchsorted(cum, p * n, side="left")) for p in pcts]


def _hist_sum(hists: list[list[int]]) -> list[int]:
    out = [0] * max((len(h) for h in hists), default=0)
    for h in hists:
        for i, c in enumerate(h):
            out[i] += c
    return out


def chen_metrics(runs: list[Run]) -> dict:
    """Chen's metrics over the runs of one arm from the BPF sampler's counts (Run.rqs); the raw
    histograms are kept. Rates are per second of the sampled runs' completion time."""
    rqs = [(r.seconds, r.rqs) for r in runs if r.rqs]
    if not rqs:
        return {"sampled_runs": 0}
    secs = sum(t for t, _ in rqs)
    tot = {k: sum(x[k] for _, x in rqs) for k in RQS_COUNTS if k not in ("period_ns", "ncpu")}
    rq_hist, imb_hist = _hist_sum([x["rq_hist"] for _, x in rqs]), _hist_sum([x["imb_hist"] for _, x in rqs])
    ncpu, n = rqs[0][1]["ncpu"], tot["samples"]
    imb_n = sum(imb_hist)
    out = {
        "sampled_runs": len(rqs),
        "samples": n,
        "sample_hz": n / secs if secs else None,
        "period_ms": rqs[0][1]["period_ns"] / 1e6,
        "ncpu": ncpu,
        "runnable_mean": tot["nr_sum"] / n if n else None,
        "cfs_runnable_mean": tot["cfs_sum"] / n if n else None,
        "imbalance_mean": sum(i * c for i, c in enumerate(imb_hist)) / imb_n if imb_n else None,
        **dict(zip((f"imbalance_p{p}" for p in PCTS), hist_percentiles(imb_hist), strict=True)),
        **dict(zip((f"rq_len_p{p}" for p in PCTS), hist_percentiles(rq_hist), strict=True)),
        "cross_node_migrations_per_s": tot["cross_node"] / secs if secs else None,
        "task_migrations_per_s": tot["migrations"] / secs if secs else None,
        "cross_node_migrations": tot["cross_node"],
        "task_migrations": tot["migrations"],
        "sampler_ns_per_sample": tot["sample_ns"] / tot["sample_runs"] if tot["sample_runs"] else None,
        "migrate_ns_per_event": tot["migrate_ns"] / tot["migrate_runs"] if tot["migrate_runs"] else None,
        "sampler_cpu_pct": 100 * (tot["sample_ns"] + tot["migrate_ns"]) / (secs * 1e9 * ncpu) if secs else None,
        "rq_hist": rq_hist,
        "imb_hist": imb_hist,
    }
    return out


SAMPLER_KEYS = (
    "sampled_runs", "samples", "sample_hz", "period_ms", "ncpu",
    "sampler_ns_per_sample", "migrate_ns_per_event", "sampler_cpu_pct",
)  # fmt: skip
SAMPLER_LABEL = (
    "emulated (TCG): the kernel's run_time_ns/run_cnt of the two BPF programs (bpf_enable_stats) while the "
    "workloads ran; % CPU = both programs' time over all vCPUs' time; the perf hrtimer interrupt and the "
    "tracepoint dispatch around the programs are not included"
)


def _arm_stats(runs: list[Run]) -> dict:
    secs = sum(r.seconds for r in runs) or float("nan")
    mig = sum(r.sched.get("lb_gained", 0) + r.sched.get("alb_pushed", 0) for r in runs)
    return {
        "seconds": [round(r.seconds, 4) for r in runs],
        "cpu_seconds": [round(r.cpu_seconds, 4) for r in runs if r.cpu_seconds is not None],
        "migrations_per_s": mig / secs,
        "hot_migrations_per_s": sum(r.sched.get("lb_hot_gained", 0) for r in runs) / secs,
        "wakeup_moves_per_s": sum(
            r.sched.get("ttwu_move_affine", 0) + r.sched.get("ttwu_move_balance", 0) for r in runs
        )
        / secs,
        "hook_calls": sum(r.hook.get("calls", 0) for r in runs),
        "agree": sum(r.hook.get("agree", 0) for r in runs),
        "model_migrate": sum(r.hook.get("model_migrate", 0) for r in runs),
        "cfs_migrate": sum(r.hook.get("cfs_migrate", 0) for r in runs),
        "hook_ns": sum(r.hook.get("hook_ns", 0) for r in runs),
        **{k: sum(r.hook.get(k, 0) for r in runs) for k in FAIR_COUNTERS},
        "failed_runs": sum(r.rc != 0 for r in runs),
    }


def summarise(runs: list[Run], meta: dict) -> dict:
    out = {
        "emulated": "qemu TCG software emulation: times are not native speed; compare arms only",
        **meta,
        "workloads": {},
    }
    calls = ns = 0
    fair = dict.fromkeys(FAIR_COUNTERS, 0)
    for workload in dict.fromkeys(r.workload for r in runs if r.arm in ARMS):
        arm = {a: _arm_stats([r for r in runs if r.workload == workload and r.arm == a]) for a in ARMS}
        chen = {a: chen_metrics([r for r in runs if r.workload == workload and r.arm == a]) for a in ARMS}
        ratio, ci = ratio_ci(arm["active"]["seconds"], arm["cfs"]["seconds"])
        cratio, cci = ratio_ci(arm["active"]["cpu_seconds"], arm["cfs"]["cpu_seconds"])
        shadow = arm["shadow"]
        out["workloads"][workload] = {
            "cfs_s": arm["cfs"]["seconds"],
            "shadow_s": shadow["seconds"],
            "model_s": arm["active"]["seconds"],
            "ratio_median": ratio,
            "ratio_ci95": ci,
            "ratio_ci_halfwidth": (ci[1] - ci[0]) / 2,
            "cfs_cpu_s": arm["cfs"]["cpu_seconds"],
            "model_cpu_s": arm["active"]["cpu_seconds"],
            "cpu_ratio_median": cratio,
            "cpu_ratio_ci95": cci,
            "shadow_agreement": shadow["agree"] / shadow["hook_calls"] if shadow["hook_calls"] else None,
            "shadow_model_migrate_rate": shadow["model_migrate"] / shadow["hook_calls"]
            if shadow["hook_calls"]
            else None,
            "shadow_cfs_migrate_rate": shadow["cfs_migrate"] / shadow["hook_calls"] if shadow["hook_calls"] else None,
            "hook_calls": shadow["hook_calls"] + arm["active"]["hook_calls"],
            "hook_calls_cfs_arm": arm["cfs"]["hook_calls"],
            "active_model_migrate_rate": (
                arm["active"]["model_migrate"] / arm["active"]["hook_calls"] if arm["active"]["hook_calls"] else None
            ),
            "migrations_cfs": arm["cfs"]["migrations_per_s"],
            "migrations_model": arm["active"]["migrations_per_s"],
            "migrations_shadow": shadow["migrations_per_s"],
            "hot_migrations_cfs": arm["cfs"]["hot_migrations_per_s"],
            "hot_migrations_model": arm["active"]["hot_migrations_per_s"],
            "wakeup_moves_cfs": arm["cfs"]["wakeup_moves_per_s"],
            "wakeup_moves_model": arm["active"]["wakeup_moves_per_s"],
            "rq_imbalance_cfs": chen["cfs"].get("imbalance_mean"),
            "rq_imbalance_model": chen["active"].get("imbalance_mean"),
            "rq_imbalance_shadow": chen["shadow"].get("imbalance_mean"),
            "chen": chen,
            "failed_runs": sum(arm[a]["failed_runs"] for a in ARMS),
            "reps": min(len(arm[a]["seconds"]) for a in ARMS),
        }
        for a in ("shadow", "active"):
            calls += arm[a]["hook_calls"]
            ns += arm[a]["hook_ns"]
        for a in ARMS:
            for k in fair:
                fair[k] += arm[a][k]
    sampled = [r for r in runs if r.arm in ARMS]
    whole = chen_metrics(sampled)
    out["sampler"] = {k: whole.get(k) for k in SAMPLER_KEYS} | {"runs": len(sampled), "label": SAMPLER_LABEL}
    out["ns_per_call_model"] = ns / calls if calls else None
    out["ns_per_call_model_label"] = (
        "emulated (TCG): local_clock() around the module's decision "
        "(features, encode, forward), averaged over every hook call"
    )
    timer = [r.hook["timer_ns"] for r in runs if "timer_ns" in r.hook]
    out["timer_ns"] = timer[-1] if timer else None
    out["hook_calls_no_model"], out["hook_calls_with_model"] = fair["fair_calls"], fair["fair_model_calls"]
    out["ns_per_call_no_model"] = fair["fair_ns"] / fair["fair_calls"] if fair["fair_calls"] else None
    out["ns_per_call_hook_with_model"] = (
        fair["fair_model_ns"] / fair["fair_model_calls"] if fair["fair_model_calls"] else None
    )
    out["ns_per_call_no_model_label"] = out["ns_per_call_hook_with_model_label"] = (
        "emulated (TCG): the patched kernel's local_clock() around the whole hook in can_migrate_task() "
        "(RCU pointer load; with a model also the contract's fields and the call), averaged over every call "
        "of the arms without / with a registered model; an empty local_clock() pair (timer_ns) is included"
    )
    return out


def _fmt(v, spec=".3f"):
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, spec)


def _shape(ab: dict) -> str:
    """The topology as the guest saw it, e.g. ' (topology 2x2x2: 2 NUMA nodes, domains SMT/MC/NUMA)'; '' if flat."""
    topo = ab.get("topology") or {}
    if not topo.get("spec"):
        return ""
    names = "/".join(d["name"] or "?" for d in topo.get("domains", [])) or "n/a"
    return f" (topology {topo['spec']}: {topo.get('nodes')} NUMA nodes, domains {names})"


def _trio(c: dict, name: str) -> str:
    return "/".join(_fmt(c.get(f"{name}_p{p}"), "d") for p in PCTS)


def ratio_summary(num: list[float], den: list[float]) -> dict:
    """median(num) / median(den) with its 95% percentile-bootstrap CI (ratio_ci) and the CI's
    half-width, in ratio units (0.05: +-5%)."""
    ratio, ci = ratio_ci(num, den)
    return {"median": ratio, "ci95": ci, "ci_halfwidth": (ci[1] - ci[0]) / 2}


def paired_ratio_summary(num: list[float], den: list[float], seed: int = 0, n: int = BOOT) -> dict:
    """Paired runs (num[i] and den[i] ran back to back: one repetition of interleaved arms): the
    median of the per-pair ratios with a 95% percentile bootstrap over the pairs, and the CI's
    half-width. A slow spell of the emulated machine falls on both runs of a pair, so with
    correlated pairs this CI is narrower than ratio_ci's, which resamples each arm on its own."""
    q = np.asarray(num, float) / np.asarray(den, float)
    if not len(q):
        return {"median": float("nan"), "ci95": [float("nan"), float("nan")], "ci_halfwidth": float("nan"), "pairs": 0}
    rng = np.random.default_rng(seed)
    lo, hi = np.percentile(np.median(q[rng.integers(0, len(q), (n, len(q)))], axis=1), [2.5, 97.5])
    return {
        "median": float(np.median(q)),
        "ci95": [float(lo), float(hi)],
        "ci_halfwidth": float(hi - lo) / 2,
        "pairs": len(q),
    }


def chen_table(ab: dict, arm_seconds: dict[str, str] = ARM_SECONDS) -> list[str]:
    """Chen's metrics per workload and arm, the sampler's cost, and the TCG caveat beside them;
    arm_seconds: arm -> the key of its completion times in a workload's row."""
    rows = [(w, a, r) for w, r in ab["workloads"].items() for a in arm_seconds]
    if not rows:
        return []
    smp = ab.get("sampler") or {}
    lines = [
        "",
        f"Chen's metrics per arm. Sampled locklessly by BPF (`kernel/ab/rqsample.bpf.c`): a cpu-clock perf event on "
        f"CPU 0 every {_fmt(smp.get('period_ms'), '.0f')} ms reads every CPU's `rq->nr_running` with no runqueue "
        "lock; `sched_migrate_task` counts task moves between CPUs (wakeup placement, balancing, NUMA moves). "
        "Runnable: tasks on all runqueues (running or waiting), mean over samples (what the load average "
        "averages, without D-state tasks); imbalance: max − min runqueue length across CPUs at one sample; "
        "rq length: every CPU at every sample.",
        "",
        "| workload | arm | median s | mean runnable | imbalance p50/p95/p99 | rq length p50/p95/p99 | "
        "cross-node migr./s | task migr./s | samples (Hz) | sampler ns/sample | sampler % CPU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w, a, r in rows:
        c = r.get("chen", {}).get(a, {})
        secs = r[arm_seconds[a]]
        lines.append(
            f"| {w} | {a} | {_fmt(np.median(secs) if secs else None)} | {_fmt(c.get('runnable_mean'), '.2f')} | "
            f"{_trio(c, 'imbalance')} | {_trio(c, 'rq_len')} | "
            f"{_fmt(c.get('cross_node_migrations_per_s'), '.1f')} | {_fmt(c.get('task_migrations_per_s'), '.1f')} | "
            f"{c.get('samples', 0)} ({_fmt(c.get('sample_hz'), '.1f')}) | {_fmt(c.get('sampler_ns_per_sample'), '.0f')} | "
            f"{_fmt(c.get('sampler_cpu_pct'), '.3f')} |"
        )
    lines += [
        "",
        f"Sampler cost, {smp.get('label', 'n/a')}: {_fmt(smp.get('sampler_ns_per_sample'), '.0f')} ns per sample, "
        f"{_fmt(smp.get('migrate_ns_per_event'), '.0f')} ns per migration event, "
        f"{_fmt(smp.get('sampler_cpu_pct'), '.3f')}% of the CPU time ({smp.get('samples', 0)} samples over "
        f"{smp.get('sampled_runs', 0)} of {smp.get('runs', 0)} runs).",
        "",
        f"**Not measurable here:** {TCG_CAVEAT}",
    ]
    return lines


def markdown(ab: dict) -> str:
    lines = [
        "# Closed loop: can_migrate model vs CFS",
        "",
        f"Export `{ab.get('export')}`; kernel `{ab.get('kernel')}`; {ab.get('smp')} vCPUs{_shape(ab)}, qemu TCG "
        f"(**emulated**: compare arms, not absolute times); {ab.get('reps')} repetitions per arm, arms "
        f"interleaved in one boot ({_fmt(ab.get('boot_seconds'), '.0f')} s).",
        "",
        "| workload | cfs median s | active median s | ratio active/cfs [95% CI] | CPU-time ratio [95% CI] | "
        "shadow agreement | hook calls | migrations/s cfs → active | hot migr./s cfs → active | "
        "rq imbalance cfs → active |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w, r in ab["workloads"].items():
        lines.append(
            f"| {w} | {_fmt(np.median(r['cfs_s']) if r['cfs_s'] else None)} | "
            f"{_fmt(np.median(r['model_s']) if r['model_s'] else None)} | {_fmt(r['ratio_median'])} "
            f"[{_fmt(r['ratio_ci95'][0])}, {_fmt(r['ratio_ci95'][1])}] | {_fmt(r['cpu_ratio_median'])} "
            f"[{_fmt(r['cpu_ratio_ci95'][0])}, {_fmt(r['cpu_ratio_ci95'][1])}] | {_fmt(r['shadow_agreement'], '.4f')} | "
            f"{r['hook_calls']} | {_fmt(r['migrations_cfs'], '.1f')} → {_fmt(r['migrations_model'], '.1f')} | "
            f"{_fmt(r['hot_migrations_cfs'], '.1f')} → {_fmt(r['hot_migrations_model'], '.1f')} | "
            f"{_fmt(r['rq_imbalance_cfs'], '.2f')} → {_fmt(r['rq_imbalance_model'], '.2f')} |"
        )
    lines += chen_table(ab)
    lines += [
        "",
        "Cost of the hook per call, **emulated** (qemu TCG; local_clock() in the guest):",
        "",
        f"- without a registered model: {_fmt(ab.get('ns_per_call_no_model'), '.0f')} ns over "
        f"{ab.get('hook_calls_no_model', 'n/a')} calls (the cfs arm);",
        f"- with the model, the whole hook: {_fmt(ab.get('ns_per_call_hook_with_model'), '.0f')} ns over "
        f"{ab.get('hook_calls_with_model', 'n/a')} calls (shadow and active arms), of which the module's "
        f"decision (features, encode, forward): {_fmt(ab.get('ns_per_call_model'), '.0f')} ns;",
        f"- an empty local_clock() pair, included in both: {_fmt(ab.get('timer_ns'), '.0f')} ns;",
        f"- the same decision C in the user-space harness: {_fmt(ab.get('ns_per_call_harness'), '.1f')} ns "
        f"(native, {ab.get('ns_per_call_harness_label', '')}).",
        "",
    ]
    reload = ab.get("reload_under_load") or {}
    if reload:
        lines += [
            f"Reload under load: push rc {reload.get('rc')}, serving gen {reload.get('gen')} crc32 {reload.get('crc32')} "
            f"(B's {reload.get('want_crc32')}): {'taken over' if reload.get('took_over') else 'NOT taken over'}; "
            f"kernel trouble lines: {len(ab.get('trouble', []))}.",
            "",
        ]
    return "\n".join(lines)


def plot(ab: dict, path: Path, arm_seconds: dict[str, str] = ARM_SECONDS) -> None:
    # matplotlib is deferred on purpose: slow to import, and only the figure needs it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(ab["workloads"])
    fig, ax = plt.subplots(figsize=(max(4, 2.5 * len(workloads)), 3.5))
    for i, workload in enumerate(workloads):
        row = ab["workloads"][workload]
        for k, (arm, key) in enumerate(arm_seconds.items()):
            secs = np.asarray(row[key], float)
            if not len(secs):
                continue
            xpos = i + (k - (len(arm_seconds) - 1) / 2) * 0.25
            ax.errorbar(
                [xpos],
                [np.median(secs)],
                yerr=[[np.median(secs) - secs.min()], [secs.max() - np.median(secs)]],
                fmt="o",
                capsize=4,
                color=f"C{k}",
                label=arm if i == 0 else None,
            )
    ax.set_xticks(range(len(workloads)), workloads)
    ax.set_ylabel("completion time, s (emulated)")
    ax.set_title("median and range per arm")
    if workloads:  # a boot without workloads (a topology check) has no arms to label
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
