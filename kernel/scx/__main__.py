"""scx_schedlearn: a sched_ext scheduler whose task stealing asks the can_migrate decision.

    python -m kernel.scx load [EXPORT] [--mode rule] [--seconds N] [--record FILE]   # this machine
    python -m kernel.scx vm [--mode model --export DIR] [--record DIR] [--stall] [--smp N]  # Debian 7.3, qemu
    python -m kernel.scx build [--stall]          # the static loader (cached in data/_build/scx/)
    python -m kernel.scx topology [--sysfs ROOT]  # each CPU's steal order, nearest domain first
    python -m kernel.scx cost [EXPORT] [--repeat N] [--json FILE]  # native ns per decision (root)
    python -m kernel.scx ab EXPORT --out DIR [--workloads W..] [--reps N] [--topology SxCxT]  # EEVDF/rule/model

`load` needs a kernel with sched_ext (CONFIG_SCHED_CLASS_EXT=y, Linux >= 6.13) and root; it
prints the loaded ops name and state, a stats line a second, and unloads on Ctrl-C (or after
--seconds). `vm` boots Debian's 7.3 kernel (TCG), loads the scheduler around hackbench, and
reports ops, state, steals/s and refusals; --stall loads the deliberately stalling build and
reports how sched_ext's watchdog ejected it. The model mode (EXPORT, or vm --mode model --export
DIR) runs an exported can_migrate MLP in BPF, weights from DIR/model.blob; `python -m
kernel.scx.model parity DIR RUNS` checks its recorded decisions. kernel/scx/README.md has the details.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from plumbing import cli

PROG = "python -m kernel.scx"
CFS_MODEL_HELP = "run a model trained on CFS's records (its inputs meant CFS's state; here scx's analogues)"
SCX_STATE = Path("/sys/kernel/sched_ext/state")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return "-"


def _model_refused(args, needs: str) -> int:
    """The model mode's checks (kernel.scx.model.runnable): exit status 2 after one line when
    refused, else 0 after printing what the model's inputs mean."""
    from kernel.scx.model import runnable

    if args.export is None:
        return cli.fail(PROG, f"--mode model needs {needs}", 2)
    why, meaning = runnable(Path(args.export), args.cfs_model)
    if why:
        return cli.fail(PROG, why, 2)
    print(f"model: {meaning}")
    return 0


def cmd_load(args) -> int:
    if args.export is not None and args.mode == "rule":
        args.mode = "model"  # an EXPORT means the model mode
    if args.mode == "model" and (
        refused := _model_refused(args, "EXPORT (an export folder: python -m export ... out=DIR)")
    ):
        return refused
    if not SCX_STATE.exists():
        return cli.fail(
            PROG,
            f"this kernel ({os.uname().release}) has no sched_ext: {SCX_STATE} is missing "
            "(needs CONFIG_SCHED_CLASS_EXT=y, Linux >= 6.13)",
        )
    if os.geteuid() != 0:
        return cli.fail(PROG, "loading a sched_ext scheduler needs root")
    from kernel.scx import build

    try:
        exe = build.build(log=lambda m: print(m, file=sys.stderr), export=args.export).exe
    except build.ScxBuildError as e:
        return cli.fail(PROG, f"build: {e}")
    cmd = [str(exe), "--mode", args.mode]
    if args.export is not None:
        cmd += ["--blob", str(Path(args.export) / "model.blob")]
    if args.seconds:
        cmd += ["--seconds", str(args.seconds)]
    out = open(args.record, "wb") if args.record else subprocess.DEVNULL
    if args.record:
        cmd.append("--record")
    try:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, text=True)
        last = ""
        try:
            for line in p.stderr:
                line = line.rstrip("\n")
                if line.startswith("ready"):
                    print(f"{line}; /sys/kernel/sched_ext/root/ops={_read(SCX_STATE.parent / 'root' / 'ops')}")
                elif line.startswith("{"):
                    last = line
                else:
                    print(line)
        except KeyboardInterrupt:  # the terminal sent SIGINT to the loader too; let it unload
            p.send_signal(signal.SIGINT)
            for line in p.stderr:
                if line.startswith("{"):
                    last = line.rstrip("\n")
        rc = p.wait()
    finally:
        if args.record:
            out.close()
    if last:
        s = json.loads(last)
        print(
            f"unloaded: state {s['state_after']}, {s['steals']} steals ({s['steals'] / max(s['seconds'], 1e-9):.1f}/s), "
            f"{s['refused']} refused, {s['failed']} failed attempts; exit {s['exit_kind_name']}: {s['exit_reason']}"
            + (f" ({s['exit_msg']})" if s["exit_msg"] else "")
        )
    print(f"state now: {_read(SCX_STATE)}")
    return 0 if rc in (0, 130) else rc


def cmd_vm(args) -> int:
    from kernel.scx import guest

    if why := guest.problem():
        return cli.fail(PROG, why)
    rec = ("--record",) if args.record else ()
    extra_files: dict[str, bytes] = {}
    if args.mode == "model":
        if refused := _model_refused(args, "--export DIR (python -m export ... out=DIR)"):
            return refused
        loader = ("--mode", "model", "--blob", guest.MODEL_BLOB) + rec
        if args.swap_export is not None:  # hot swap: a second blob, alternated every --swap-ms
            blob = Path(args.swap_export)
            blob = blob / "model.blob" if blob.is_dir() else blob
            if not blob.is_file():
                return cli.fail(PROG, f"--swap-export {args.swap_export}: no export folder or blob there", 2)
            extra_files[guest.SWAP_BLOB.lstrip("/")] = blob.read_bytes()
            loader += ("--blob", guest.SWAP_BLOB, "--swap-ms", str(args.swap_ms))
        steps = [guest.Step("model", loader, export=Path(args.export))]
    else:
        steps = [guest.Step("rule", ("--mode", "rule") + rec)]
    if args.stall:
        steps.append(guest.Step("stall", ("--timeout-ms", str(args.timeout_ms)), ("sleep", "1"), stall=True))
    keep = Path(args.keep) if args.keep else None
    if args.record and keep is None:
        keep = Path(args.record) / f".scx-share-{os.getpid()}"
    try:
        from plumbing import qemu

        smp, topology = qemu.guest_cpus(args.topology, None, 512, args.smp)
    except ValueError as e:
        return cli.fail(PROG, str(e), 2)
    try:
        g = guest.run(
            steps,
            smp=smp,
            keep=keep,
            log=lambda m: print(m, file=sys.stderr),
            topology=topology,
            extra_files=extra_files,
        )
    except guest.GuestError as e:
        return cli.fail(PROG, str(e))
    except KeyboardInterrupt:
        return cli.interrupted(PROG)
    if "fatal" in g.boot:
        return cli.fail(PROG, f"guest: {g.boot['fatal']}")
    bad = 0
    for s in steps:
        r = g.steps.get(s.name)
        if r is None or r.stats is None:
            why = r.not_ready if r else "no output"
            print(f"{s.name}: the loader did not run ({why})")
            bad += 1
            continue
        print(guest.summary_line(r) + ("; guest alive after" if r.alive else "; guest NOT alive after"))
        for name, val in r.verifier.items():
            print(f"  verifier {name}: {val}")
        if r.stats.get("swaps"):
            print(
                f"  hot swap: {r.stats['swaps']} swaps, last generation {r.stats.get('model_gen')}, blobs {r.stats.get('blobs')}"
            )
    if args.record and not bad:
        from data.collect.runs import next_run_id

        r = g.steps[steps[0].name]
        out = Path(args.record)
        run_id = next_run_id(out, guest.RECORD_WORKLOAD, set())
        m = guest.write_run(r, out, run_id, g, steps[0], argv_line=" ".join([PROG, *sys.argv[1:]]))
        print(f"{out / run_id}: {m['records']} steal decisions")
        if args.keep is None:
            import shutil

            shutil.rmtree(keep, ignore_errors=True)
    print(f"guest: {g.seconds:.1f} s wall, Debian {g.kernel['version']}")
    return 1 if bad else 0


def cmd_build(args) -> int:
    from kernel.scx import build

    try:
        b = build.build(stall=args.stall, log=lambda m: print(m, file=sys.stderr))
    except build.ScxBuildError as e:
        return cli.fail(PROG, str(e))
    print(b.exe)
    return 0


def cmd_topology(args) -> int:
    from kernel.scx import build

    try:
        exe = build.build(log=lambda m: print(m, file=sys.stderr)).exe
    except build.ScxBuildError as e:
        return cli.fail(PROG, str(e))
    r = subprocess.run([str(exe), "--print-topology", "--sysfs", args.sysfs], capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    if r.returncode:
        return cli.fail(PROG, r.stderr.strip() or f"exit {r.returncode}")
    return 0


def cmd_cost(args) -> int:
    from kernel.scx import cost

    if args.export is not None:
        from kernel.scx.model import export_problem

        if why := export_problem(Path(args.export)):
            return cli.fail(PROG, why, 2)
    try:
        rep = cost.measure(
            Path(args.export) if args.export else None,
            args.repeat,
            args.trials,
            [Path(r) for r in args.runs] if args.runs else None,
            log=lambda m: print(m, file=sys.stderr),
            bpf_cpu=args.bpf_cpu,
        )
    except cost.CostError as e:
        return cli.fail(PROG, str(e))
    except KeyboardInterrupt:
        return cli.interrupted(PROG)
    print("\n".join(cost.report_lines(rep)))
    if args.json:
        from plumbing.atomic import write_json_atomic

        write_json_atomic(Path(args.json), rep)
    return 0 if rep["correct"] else 1


def cmd_ab(args) -> int:
    from kernel.ab import guest as abguest
    from kernel.scx import ab, guest
    from kernel.scx.model import runnable

    why, _ = runnable(Path(args.export), args.cfs_model)
    if why:
        return cli.fail(PROG, why, 2)
    try:
        abguest.workload_lines(args.workloads)
    except abguest.GuestError as e:
        return cli.fail(PROG, str(e), 2)
    if len(args.workloads) != len(set(args.workloads)):
        return cli.fail(PROG, "--workloads: a workload is named twice", 2)
    if args.reps < 1 or args.sample_ms < 1:
        return cli.fail(PROG, "--reps and --sample-ms must be >= 1", 2)
    try:
        from plumbing import qemu

        smp, topology = qemu.guest_cpus(args.topology, args.smp, ab.MEM_MB, 4)
    except ValueError as e:
        return cli.fail(PROG, str(e), 2)
    if why := guest.problem():
        return cli.fail(PROG, why)
    try:
        rep = ab.run(
            Path(args.export),
            Path(args.out),
            args.workloads,
            args.reps,
            smp,
            topology,
            args.sample_ms,
            log=lambda m: print(m, file=sys.stderr),
            cfs_model=args.cfs_model,
        )
    except ab.AbError as e:
        return cli.fail(PROG, str(e))
    except KeyboardInterrupt:
        return cli.interrupted(PROG)
    print(ab.markdown(rep))
    print(f"{PROG} ab: wrote {args.out}/ab.json, report.md, ab.png, console.log and steps/")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = cli.ArgParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=cli.ArgParser)
    p = sub.add_parser("load", help="load on this machine (sched_ext kernel, root); Ctrl-C unloads")
    p.add_argument("export", nargs="?", help="an export folder: model mode, its MLP decides (weights: model.blob)")
    p.add_argument("--mode", default="rule", choices=("rule", "model"))
    p.add_argument("--seconds", type=float, default=0, help="unload after N seconds (default: at Ctrl-C)")
    p.add_argument("--record", metavar="FILE", help="write every steal decision as cm_record to FILE")
    p.add_argument("--cfs-model", action="store_true", help=CFS_MODEL_HELP)
    p = sub.add_parser("vm", help="boot Debian's 7.3 under qemu, load, run hackbench, report")
    p.add_argument("--mode", default="rule", choices=("rule", "model"))
    p.add_argument("--export", metavar="DIR", help="model mode: the export whose MLP decides (its model.blob)")
    p.add_argument("--smp", type=int, default=4)
    p.add_argument("--topology", metavar="SxCxT", help="sockets x cores x SMT threads, one NUMA node per socket")
    p.add_argument("--record", metavar="DIR", help="write the steal decisions as a run folder in DIR")
    p.add_argument("--stall", action="store_true", help="also load the stalling build: the watchdog must eject it")
    p.add_argument("--timeout-ms", type=int, default=3000, help="the stalling build's watchdog timeout")
    p.add_argument("--keep", metavar="DIR", help="keep the share (loader output, console log) in DIR")
    p.add_argument("--swap-export", metavar="DIR|BLOB", help="model mode: hot-swap to this export's blob and back")
    p.add_argument("--swap-ms", type=int, default=20, help="with --swap-export: a swap every N ms")
    p.add_argument("--cfs-model", action="store_true", help=CFS_MODEL_HELP)
    p = sub.add_parser("build", help="build the static loader (cached)")
    p.add_argument("--stall", action="store_true", help="the deliberately stalling variant (-DSL_STALL)")
    p = sub.add_parser("topology", help="each CPU's steal order from sysfs")
    p.add_argument("--sysfs", default="/sys", help="a sysfs root (default /sys)")
    p = sub.add_parser("cost", help="native ns per decision: BPF_PROG_TEST_RUN on this kernel (root)")
    p.add_argument("export", nargs="?", help="an export folder: also time its MLP (default: baseline and rule)")
    p.add_argument("--repeat", type=int, default=1_000_000, help="runs per trial (default 1000000)")
    p.add_argument("--trials", type=int, default=5, help="trials per program (default 5)")
    p.add_argument("--runs", action="append", metavar="RUN", help="candidates: recorded decisions (repeatable)")
    p.add_argument("--json", metavar="FILE", help="write the report as JSON")
    p.add_argument("--bpf-cpu", choices=("v3", "v4"), help="clang -mcpu (default: the scheduler's, v4)")
    p = sub.add_parser("ab", help="A/B in Debian 7.3 (qemu): EEVDF vs rule vs model, interleaved in one boot")
    p.add_argument("export", help="the model arm's export folder (an MLP over one can_migrate record)")
    p.add_argument("--out", required=True, metavar="DIR", help="ab.json, report.md, ab.png, console.log, steps/")
    p.add_argument("--workloads", nargs="+", default=["hackbench-pipe", "stress-ng-fib", "stress-ng-matrix"])
    p.add_argument("--reps", type=int, default=10, help="repetitions per arm and workload (default 10)")
    p.add_argument("--smp", type=int, help="vCPUs of the flat guest (default 4)")
    p.add_argument("--topology", metavar="SxCxT", help="sockets x cores x SMT threads, one NUMA node per socket")
    p.add_argument("--sample-ms", type=int, default=25, help="the runqueue sampler's period (kernel/ab/abrun.c)")
    p.add_argument("--cfs-model", action="store_true", help=CFS_MODEL_HELP)
    args = ap.parse_args(argv)
    cmds = {"load": cmd_load, "vm": cmd_vm, "build": cmd_build, "topology": cmd_topology, "cost": cmd_cost}
    cmds["ab"] = cmd_ab
    return cmds[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
