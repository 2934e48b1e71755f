"""scx_schedlearn: a sched_ext scheduler whose task stealing asks the can_migrate decision.

    python -m kernel.scx load [EXPORT] [--mode rule] [--seconds N] [--record FILE]   # this machine
    python -m kernel.scx vm [--mode model --export DIR] [--record DIR] [--stall] [--smp N]  # Debian 7.3, qemu
    python -m kernel.scx build [--stall]          # the static loader (cached in data/_build/scx/)
    python -m kernel.scx topology [--sysfs ROOT]  # each CPU's steal order, nearest domain first

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
SCX_STATE = Path("/sys/kernel/sched_ext/state")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return "-"


def cmd_load(args) -> int:
    if args.export is not None and args.mode == "rule":
        args.mode = "model"  # an EXPORT means the model mode
    if args.mode == "model":
        from kernel.scx.model import export_problem

        if args.export is None:
            return cli.fail(PROG, "--mode model needs EXPORT (an export folder: python -m export ... out=DIR)", 2)
        if why := export_problem(Path(args.export)):
            return cli.fail(PROG, why, 2)
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
    if args.mode == "model":
        from kernel.scx.model import export_problem

        if args.export is None:
            return cli.fail(PROG, "--mode model needs --export DIR (python -m export ... out=DIR)", 2)
        if why := export_problem(Path(args.export)):
            return cli.fail(PROG, why, 2)
        loader = ("--mode", "model", "--blob", guest.MODEL_BLOB) + rec
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
        g = guest.run(steps, smp=smp, keep=keep, log=lambda m: print(m, file=sys.stderr), topology=topology)
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


def main(argv: list[str] | None = None) -> int:
    ap = cli.ArgParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=cli.ArgParser)
    p = sub.add_parser("load", help="load on this machine (sched_ext kernel, root); Ctrl-C unloads")
    p.add_argument("export", nargs="?", help="an export folder: model mode, its MLP decides (weights: model.blob)")
    p.add_argument("--mode", default="rule", choices=("rule", "model"))
    p.add_argument("--seconds", type=float, default=0, help="unload after N seconds (default: at Ctrl-C)")
    p.add_argument("--record", metavar="FILE", help="write every steal decision as cm_record to FILE")
    p = sub.add_parser("vm", help="boot Debian's 7.3 under qemu, load, run hackbench, report")
    p.add_argument("--mode", default="rule", choices=("rule", "model"))
    p.add_argument("--export", metavar="DIR", help="model mode: the export whose MLP decides (its model.blob)")
    p.add_argument("--smp", type=int, default=4)
    p.add_argument("--topology", metavar="SxCxT", help="sockets x cores x SMT threads, one NUMA node per socket")
    p.add_argument("--record", metavar="DIR", help="write the steal decisions as a run folder in DIR")
    p.add_argument("--stall", action="store_true", help="also load the stalling build: the watchdog must eject it")
    p.add_argument("--timeout-ms", type=int, default=3000, help="the stalling build's watchdog timeout")
    p.add_argument("--keep", metavar="DIR", help="keep the share (loader output, console log) in DIR")
    p = sub.add_parser("build", help="build the static loader (cached)")
    p.add_argument("--stall", action="store_true", help="the deliberately stalling variant (-DSL_STALL)")
    p = sub.add_parser("topology", help="each CPU's steal order from sysfs")
    p.add_argument("--sysfs", default="/sys", help="a sysfs root (default /sys)")
    args = ap.parse_args(argv)
    return {"load": cmd_load, "vm": cmd_vm, "build": cmd_build, "topology": cmd_topology}[args.cmd](args)


if __name__ == "__main__":
    raise SystemExit(main())
