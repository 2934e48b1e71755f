"""python -m kernel.scx ab: EEVDF vs scx_schedlearn rule vs model in one Debian 7.3 boot.

Unit tests need no guest: the arms' rotation and the plan, schedstat v17, the summary with its
ratios and the model-vs-rule acceptance on constructed runs, the verifier figures, report.md,
ab.png, the CLI's refusals. The guest test (marker vm) is CI's short A/B (reported, not
judged): one repetition of three workloads with the tests' own tiny export; it checks that
every arm ran every workload, the ops names, the parity and the recorded facts.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from kernel.ab import guest as abguest
from kernel.ab import report
from kernel.scx import __main__ as scx_cli
from kernel.scx import ab
from tests.conftest import require

WORKLOADS = ["hackbench-pipe", "stress-ng-fib", "stress-ng-matrix"]
# a Debian 7.3 schedstat (v17) domain line: "domainN NAME MASK" and 45 counters
V17 = "domain0 MC f " + " ".join(str(i) for i in range(45))
DISPATCH = (
    "processed 19496 insns (limit 1000000) max_states_per_insn 10 total_states 607 peak_states 588 "
    "mark_read 0; jited 7772 bytes, xlated 12656 bytes"
)


def test_arms_rotate_every_repetition():
    assert ab.order(1) == ["eevdf", "rule", "model"]
    assert ab.order(2) == ["rule", "model", "eevdf"]
    assert ab.order(3) == ["model", "eevdf", "rule"]
    assert ab.order(4) == ab.order(1)
    # over three repetitions every arm runs first, second and third once
    assert all(sorted(ab.order(r)[i] for r in (1, 2, 3)) == sorted(ab.ARMS) for i in range(3))


def test_plan_interleaves_bare_and_scheduler_runs(tmp_path):
    steps, plan = ab.plan(["hackbench-pipe", "stress-ng-fib"], 2, tmp_path, sample_ms=20)
    lines = plan.splitlines()
    assert lines[:2] == ["SAMPLE_MS=20", "ab_setup"] and len(lines) == 2 + 2 * 2 * 3
    assert lines[2] == "ab_run eevdf 1 hackbench-pipe"
    assert (
        lines[3]
        == "scx_run rule-r01-hackbench-pipe /scx_schedlearn --mode rule --record -- ab_run rule 1 hackbench-pipe"
    )
    assert lines[4] == (
        "scx_run model-r01-hackbench-pipe /scx_schedlearn_model --mode model --record --blob /model.blob "
        "-- ab_run model 1 hackbench-pipe"
    )
    assert lines[8].startswith("scx_run rule-r02-hackbench-pipe ") and lines[10] == "ab_run eevdf 2 hackbench-pipe"
    assert len(steps) == 8 and {s.export for s in steps if s.name.startswith("model")} == {tmp_path}
    assert all(s.export is None for s in steps if s.name.startswith("rule"))


def test_schedstat_v17_domain_lines_are_read_by_their_own_layout():
    tot = abguest._schedstat([V17])
    # lb_gained at 7/18/29, alb_pushed at 35, ttwu_move_affine at 43 (kernel/sched/stats.c, v17)
    assert tot["lb_gained"] == 7 + 18 + 29 and tot["alb_pushed"] == 35 and tot["ttwu_move_affine"] == 43
    assert tot["lb_hot_gained"] == 8 + 19 + 30 and tot["lb_count"] == 0 + 11 + 22
    v15 = "domain0 0f " + " ".join(str(i) for i in range(36))
    assert abguest._schedstat([v15])["lb_gained"] == 4 + 12 + 20  # 6.1's layout unchanged
    assert abguest._schedstat(["domain0 MC f 1 2 3"])["lb_gained"] == 0  # neither layout


RQS = (
    "rqs=ok period_ns=25000000 ncpu=4 samples=40 nr_sum=200 cfs_sum=0 rq_hist=20,60,50,30 imb_hist=10,20,9,1 "
    "migrations=6 cross_node=0 sample_runs=40 sample_ns=80000 migrate_runs=6 migrate_ns=3000"
)


def console(times: dict[tuple[str, str, int], float]) -> str:
    """A console as kernel/scx/init.sh's ab_run prints it (constructed)."""
    out = ["SLX-BOOT uptime=5 release=7.3.4+deb13-amd64 state=disabled cpus=4"]
    for (w, arm, rep), sec in times.items():
        tag = f"w={w} arm={arm} rep={rep}"
        gained = V17 if arm == "eevdf" else "domain0 MC f " + " ".join("0" for _ in range(45))
        out += [
            f"SLM-AB-S {tag} before domain0 MC f " + " ".join("0" for _ in range(45)),
            f"SLM-AB-S {tag} after {gained}",
            f"SLX-AB-OPS {tag} ops={'-' if arm == 'eevdf' else 'schedlearn'} state="
            + ("disabled" if arm == "eevdf" else "enabled"),
            f"SLM-AB-RUN {tag} ABRUN ns={int(sec * 1e9)} cpu_ns={int(sec * 3e9)} rc=0 {RQS}",
        ]
    return "\n".join(out) + "\n"


def constructed(shift: float = 1.0, noise: float = 0.01, reps: int = 12):
    """Runs of one workload: rule and model equal in distribution (model x shift), eevdf 20% slower."""
    rng = np.random.default_rng(3)
    times = {}
    for rep in range(1, reps + 1):
        base = 2.0 * (1 + rng.normal(0, noise))
        times[("hackbench-pipe", "eevdf", rep)] = 1.2 * 2.0 * (1 + rng.normal(0, noise))
        times[("hackbench-pipe", "rule", rep)] = base
        times[("hackbench-pipe", "model", rep)] = shift * 2.0 * (1 + rng.normal(0, noise))
    text = console(times)
    runs, _, _ = abguest.parse(text)
    stats = {
        ("hackbench-pipe", a, rep): {"steals": 100, "candidates": 110, "refused": 10, "written": 110, "seconds": 3.0}
        for a in ("rule", "model")
        for rep in range(1, reps + 1)
    }
    return text, runs, stats


def test_summary_ratios_steals_and_the_acceptance():
    text, runs, stats = constructed()
    assert ab.parse_ops(text)[("hackbench-pipe", "model", 1)] == {"ops": "schedlearn", "state": "enabled"}
    s = ab.summarise(runs, stats, {"reps": 12})
    row = s["workloads"]["hackbench-pipe"]
    assert row["reps"] == 12 and len(row["eevdf_s"]) == len(row["rule_s"]) == len(row["model_s"]) == 12
    mr, re_ = row["ratios"]["model/rule"], row["ratios"]["rule/eevdf"]
    assert mr["ci95"][0] <= 1.0 <= mr["ci95"][1] and mr["ci_halfwidth"] < 0.05
    assert mr["ci_halfwidth"] == pytest.approx((mr["ci95"][1] - mr["ci95"][0]) / 2)
    assert re_["median"] == pytest.approx(1 / 1.2, rel=0.03) and re_["ci95"][1] < 1.0
    assert (
        s["acceptance_model_vs_rule"]["all_met"] and s["acceptance_model_vs_rule"]["workloads"]["hackbench-pipe"]["met"]
    )
    # steals per second of completion time: 12 x 100 steals over the arm's summed seconds
    assert row["rule"]["steals_per_s"] == pytest.approx(1200 / sum(row["rule_s"]))
    assert row["rule"]["refused_rate"] == pytest.approx(10 / 110) and row["eevdf"]["steals_per_s"] is None
    # the balancer (schedstat v17 lb_gained + alb_pushed) moved tasks in the eevdf arm only
    assert row["eevdf"]["balancer_migrations_per_s"] == pytest.approx(12 * (54 + 35) / sum(row["eevdf_s"]), rel=1e-3)
    assert row["rule"]["balancer_migrations_per_s"] == 0
    assert row["chen"]["model"]["imbalance_p95"] == 2 and row["chen"]["eevdf"]["cfs_runnable_mean"] == 0


def test_a_shifted_or_too_noisy_model_fails_the_acceptance():
    _, runs, stats = constructed(shift=1.10)
    acc = ab.summarise(runs, stats, {})["acceptance_model_vs_rule"]
    assert not acc["workloads"]["hackbench-pipe"]["ci_contains_1"] and not acc["all_met"]
    _, runs, stats = constructed(noise=0.25, reps=4)
    a = ab.summarise(runs, stats, {})["acceptance_model_vs_rule"]["workloads"]["hackbench-pipe"]
    assert not a["halfwidth_ok"] and not a["met"]


def test_paired_ratios_use_the_repetitions_correlation():
    """A slow spell hits all arms of one repetition: the per-repetition ratio cancels it, the
    ratio of medians does not; the acceptance reports both."""
    rng = np.random.default_rng(5)
    spell = np.exp(rng.normal(0, 0.3, 20))  # shared by the arms of a repetition
    rule = list(2.0 * spell * np.exp(rng.normal(0, 0.01, 20)))
    model = list(2.0 * spell * np.exp(rng.normal(0, 0.01, 20)))
    paired, indep = report.paired_ratio_summary(model, rule), report.ratio_summary(model, rule)
    assert paired["pairs"] == 20 and paired["ci95"][0] <= 1.0 <= paired["ci95"][1]
    assert paired["ci_halfwidth"] < 0.02 < indep["ci_halfwidth"]
    assert report.paired_ratio_summary([], [])["pairs"] == 0
    _, runs, stats = constructed()
    runs = [r for r in runs if not (r.arm == "model" and r.rep == 3)]  # a missing run: pairs by repetition
    s = ab.summarise(runs, stats, {})
    assert s["workloads"]["hackbench-pipe"]["paired_ratios"]["model/rule"]["pairs"] == 11
    assert s["workloads"]["hackbench-pipe"]["paired_ratios"]["rule/eevdf"]["pairs"] == 12
    acc = s["acceptance_model_vs_rule"]
    assert acc["workloads"]["hackbench-pipe"]["paired"]["met"] and acc["all_met_paired"]


def test_verifier_figures_over_loads():
    assert ab.verifier_figures(DISPATCH) == {"insns_processed": 19496, "jited_bytes": 7772, "xlated_bytes": 12656}
    assert ab.verifier_figures(None) == {} and ab.verifier_figures("no figures") == {}
    v = ab.verifier_summary([DISPATCH, DISPATCH.replace("7772", "7781"), None])
    assert v["program"] == "schedlearn_dispatch" and v["loads"] == 2
    assert v["insns_processed"] == 19496 and v["jited_bytes"] == 7772 and v["jited_bytes_range"] == [7772, 7781]


def test_report_and_plot(tmp_path):
    _, runs, stats = constructed()
    kp = {"package": "linux-binary-7.3.4+deb13-amd64", "version": "7.3.4-1~bpo13+1"}
    s = ab.summarise(runs, stats, {"kernel_package": kp, "reps": 12, "smp": 4, "loading": "per run"})
    s["arms"] = {
        "eevdf": {"scx_ops": "-"},
        "rule": {"scx_ops": "schedlearn", "verifier": ab.verifier_summary([DISPATCH])},
        "model": {"scx_ops": "schedlearn", "parity": {"decisions": 9, "differences": 0, "logit_differences": 0}},
    }
    md = ab.markdown(s)
    assert "7.3.4-1~bpo13+1" in md and "emulated" in md and "4 vCPUs (flat)" in md
    assert "- hackbench-pipe: " in md and "the CI contains 1.0" in md and "→ met." in md
    assert "9 recorded decisions, 0 verdict differences" in md and "model `schedlearn`" in md
    assert "| hackbench-pipe | eevdf | n/a |" in md  # no steals without a BPF scheduler
    assert md.count("| hackbench-pipe | model | ") == 2 and "rq->nr_running" in md  # steals, Chen's table
    report.plot(s, tmp_path / "ab.png", ab.ARM_SECONDS)
    assert (tmp_path / "ab.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_refuses_a_folder_that_is_no_export(tmp_path, capsys):
    assert scx_cli.main(["ab", str(tmp_path), "--out", str(tmp_path / "o")]) == 2  # not an export
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no model.h" in err[0], err
    with pytest.raises(SystemExit) as e:
        scx_cli.main(["ab", str(tmp_path)])  # no --out
    assert e.value.code == 2


def test_cli_refuses_unknown_workloads_and_bad_counts(model_export, tmp_path, capsys):
    base = ["ab", str(model_export), "--cfs-model", "--out", str(tmp_path / "o")]
    for extra, want in (
        (["--workloads", "nope"], "no fixed-work A/B command for nope"),
        (["--workloads", "hackbench-pipe", "hackbench-pipe"], "named twice"),
        (["--reps", "0"], "must be >= 1"),
        (["--topology", "2x2"], "--topology"),
    ):
        assert scx_cli.main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and want in err[0], err
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def model_export(tmp_path_factory):
    from tests.test_scx import mlp_export

    return mlp_export(tmp_path_factory.mktemp("scx_ab_model") / "exp")


@pytest.mark.vm
def test_short_ab_in_the_73_guest(model_export, tmp_path, record_property):
    """CI's short A/B (reported, not judged): one repetition of three workloads, flat 4 vCPUs."""
    from tests.test_scx import guest_ready

    guest_ready()
    require(shutil.which("stress-ng") is not None, "stress-ng (Debian: stress-ng)")
    out = tmp_path / "ab"
    rep = ab.run(model_export, out, WORKLOADS, 1, log=print, cfs_model=True)  # a random tiny MLP
    record_property("boot_seconds", rep["boot_seconds"])
    print(ab.markdown(rep))
    for name in ("ab.json", "report.md", "ab.png", "console.log"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "ab.json").read_text())
    assert saved["trouble"] == [], saved["trouble"]
    for w in WORKLOADS:
        row = saved["workloads"][w]
        for a in ab.ARMS:
            assert len(row[f"{a}_s"]) == 1 and row[a]["failed_runs"] == 0, (w, a, row[a])
            assert row["chen"][a]["sampled_runs"] == 1, (w, a)  # abrun's sampler loaded on 7.3
        assert row["rule"]["candidates"] is not None and row["model"]["candidates"] is not None
        assert set(row["ratios"]) == {"model/rule", "rule/eevdf", "model/eevdf"}
    arms = saved["arms"]
    assert arms["rule"]["scx_ops"] == arms["model"]["scx_ops"] == "schedlearn" and arms["eevdf"]["scx_ops"] == "-"
    par = arms["model"]["parity"]
    assert par["decisions"] > 0 and par["differences"] == 0 and par["logit_differences"] == 0, par
    v = arms["model"]["verifier"]
    assert v["program"] == "schedlearn_dispatch" and v["insns_processed"] > 0 and v["jited_bytes"] > 0, v
    assert saved["kernel_package"]["version"].startswith("7.3") and saved["kernel"].startswith("7.3")
    assert "7.3" in (out / "report.md").read_text()
