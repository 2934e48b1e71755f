"""A/B runs -> ab.json, report.md, ab.png.

Times are emulated (qemu TCG): only ratios within one boot mean anything. The ratio is
median(active) / median(cfs) with a percentile bootstrap (each arm resampled on its own).
Beside it, less noisy measures: balancer migrations per second (schedstat lb_gained +
alb_pushed), cache-hot migrations, and the runqueue-length spread across CPUs sampled
while the workload ran.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kernel.ab.guest import ARMS, FAIR_COUNTERS, Run

BOOT = 10_000


def ratio_ci(model: list[float], cfs: list[float], seed: int = 0, n: int = BOOT) -> tuple[float, list[float]]:
    model_s, cfs_s = np.asarray(model, float), np.asarray(cfs, float)
    if not len(model_s) or not len(cfs_s):
        return float("nan"), [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    boot_model = np.median(model_s[rng.integers(0, len(model_s), (n, len(model_s)))], axis=1)
    boot_cfs = np.median(cfs_s[rng.integers(0, len(cfs_s), (n, len(cfs_s)))], axis=1)
    lo, hi = np.percentile(boot_model / boot_cfs, [2.5, 97.5])
    return float(np.median(model_s) / np.median(cfs_s)), [float(lo), float(hi)]


def _arm_stats(runs: list[Run]) -> dict:
    secs = sum(r.seconds for r in runs) or float("nan")
    imb = [r.imb_mean for r in runs if r.imb_mean is not None]
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
        "rq_imbalance": float(np.mean(imb)) if imb else None,
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
            "rq_imbalance_cfs": arm["cfs"]["rq_imbalance"],
            "rq_imbalance_model": arm["active"]["rq_imbalance"],
            "rq_imbalance_shadow": shadow["rq_imbalance"],
            "failed_runs": sum(arm[a]["failed_runs"] for a in ARMS),
            "reps": min(len(arm[a]["seconds"]) for a in ARMS),
        }
        for a in ("shadow", "active"):
            calls += arm[a]["hook_calls"]
            ns += arm[a]["hook_ns"]
        for a in ARMS:
            for k in fair:
                fair[k] += arm[a][k]
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


def plot(ab: dict, path: Path) -> None:
    # matplotlib is deferred on purpose: slow to import, and only the figure needs it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(ab["workloads"])
    fig, ax = plt.subplots(figsize=(max(4, 2.5 * len(workloads)), 3.5))
    for i, workload in enumerate(workloads):
        row = ab["workloads"][workload]
        for k, (arm, key) in enumerate((("cfs", "cfs_s"), ("shadow", "shadow_s"), ("active", "model_s"))):
            secs = np.asarray(row[key], float)
            if not len(secs):
                continue
            xpos = i + (k - 1) * 0.25
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
