"""Every command line against the bad input a user gives it: one clear line, a non-zero exit,
nothing half-written.

One row per CLI x input class (missing, empty, wrong-format, truncated, unwritable, bad number,
unknown name, Ctrl-C midway). Each row runs the real CLI in a subprocess and checks:
the exit status, that stderr holds exactly one non-empty line (no traceback) matching the
row's pattern (after Ctrl-C: the last line, progress lines may come before it), plus a line of
advice where the row declares one (what to type instead, too long to share the error's line),
and that the paths the run would have written do not exist afterwards.
Ctrl-C of `python -m export` midway is tested in test_export_cli.py (it needs a trained
checkpoint); the collector's SIGINT restore in test_collect.py goes further than the row here.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import REPO, is_root, need_tracefs, require

UNWRITABLE = Path("/proc/schedlearn-bad-input/out")  # /proc takes no new files, not even root's
SHIPPED_RUN = REPO / "datasets" / "traces" / "stress-ng-yield-r02"  # a small real trace run


@dataclass
class Fixtures:
    tmp: Path
    paths: dict[str, Path] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Path:
        try:
            return self.paths[name]
        except KeyError:
            raise AttributeError(name) from None


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> Fixtures:
    """Small bad inputs, made once: nothing here is presented as a trace or a model."""
    import torch

    from kernel import push_model

    t = tmp_path_factory.mktemp("bad_input")
    f = Fixtures(t)
    p = f.paths
    p["empty"] = t / "empty.txt"
    p["empty"].write_bytes(b"")
    p["binary"] = t / "random.bin"
    p["binary"].write_bytes(bytes(range(256)) * 16)  # not text at all
    p["text"] = t / "notes.txt"
    p["text"].write_text("this is not a trace, a checkpoint or a blob\n")
    p["emptydir"] = t / "emptydir"
    p["emptydir"].mkdir()
    # a real run whose trace is cut short (a copy interrupted mid-transfer)
    run = t / "truncated" / SHIPPED_RUN.name
    run.mkdir(parents=True)
    shutil.copy(SHIPPED_RUN / "meta.json", run / "meta.json")
    data = (SHIPPED_RUN / "trace.txt.zst").read_bytes()
    (run / "trace.txt.zst").write_bytes(data[: len(data) // 2])
    p["trunc_runs"] = t / "truncated"
    p["trunc_zst"] = run / "trace.txt.zst"
    p["badmeta"] = t / "badmeta"
    (p["badmeta"] / "r1").mkdir(parents=True)
    (p["badmeta"] / "r1" / "meta.json").write_text('{"workload": "x", ')  # cut off mid-object
    ckpt = p["ckpt_zip"] = t / "whole.ckpt"  # passes the quick zip check; no model in it
    torch.save({"hyper_parameters": {"data_meta": {"task": "migration"}}, "state_dict": {}}, ckpt)
    p["ckpt_trunc"] = t / "truncated.ckpt"
    p["ckpt_trunc"].write_bytes(ckpt.read_bytes()[:300])
    blob = push_model.pack(bytes(64), arch_hash=1, n_in=1, n_out=1, window=1, macs=1)
    p["blob"] = t / "model.blob"
    p["blob"].write_bytes(blob)
    p["blob_trunc"] = t / "truncated.blob"
    p["blob_trunc"].write_bytes(blob[:-10])
    p["gen"] = t / "gen"  # names of an export folder; kernel.vm checks the blob before building
    p["gen"].mkdir()
    (p["gen"] / "model.h").write_text("/* placeholder */\n")
    (p["gen"] / "model_vectors.h").write_text("/* placeholder */\n")
    p["fifo"] = t / "status.fifo"
    os.mkfifo(p["fifo"])
    return f


def out(f: Fixtures, case: str) -> Path:
    return f.tmp / "out" / case


@dataclass
class Case:
    cli: str
    kind: str
    args: Callable[[Fixtures, str], list[str]]
    pattern: str
    rc: int | None = None  # None: any non-zero
    needs: Callable[[], tuple[bool, str]] | None = None
    interrupt: Callable[[Fixtures, str, int], bool] | None = None  # Ctrl-C once this says "midway"
    advice: str | None = None  # a second line, of advice (what may be typed instead), matches this

    @property
    def id(self) -> str:
        return f"{self.cli}-{self.kind}"


PARSE = [sys.executable, "-m", "data.parse"]
BUILD = [sys.executable, "-m", "data.build"]
COLLECT = [sys.executable, "-m", "data.collect"]
TRAIN = [sys.executable, "train.py"]
EVAL = [sys.executable, "evaluate.py"]
EXPORT = [sys.executable, "-m", "export"]
PUSH = [sys.executable, "-m", "kernel.push_model"]
VM = [sys.executable, "-m", "kernel.vm"]
PROG = {  # every CLI's one line starts `PROG: error: ` (`PROG: interrupted` after Ctrl-C), PROG as typed
    "parse": "python -m data.parse",
    "build": "python -m data.build",
    "collect": "python -m data.collect",
    "train": "train.py",
    "evaluate": "evaluate.py",
    "export": "python -m export",
    "push_model": "python -m kernel.push_model",
    "vm": "python -m kernel.vm",
}


def hydra_run(f, c):
    return f"hydra.run.dir={out(f, c)}"


def staged(f, c, pid):
    return any(out(f, c).parent.glob(f".{out(f, c).name}.tmp-*")) or out(f, c).exists()


def run_dir_made(f, c, pid):
    return out(f, c).exists()


def blocked_on_fifo(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/wchan").read_text() == "wait_for_partner"
    except OSError:
        return False


def tracefs():
    if not is_root():
        return False, "root"
    need_tracefs()
    return True, ""


CASES = [
    # ---- python -m data.parse TRACE --out FILE
    Case(
        "parse",
        "missing",
        lambda f, c: [*PARSE, str(f.tmp / "nope.txt"), "--out", str(out(f, c))],
        r"nope\.txt: no such file",
        2,
    ),
    Case(
        "parse",
        "empty",
        lambda f, c: [*PARSE, str(f.empty), "--out", str(out(f, c))],
        r"no scheduler events.*--allow-empty",
        1,
    ),
    Case(
        "parse",
        "wrong-format",
        lambda f, c: [*PARSE, str(f.binary), "--out", str(out(f, c))],
        r"not an ftrace text file.*\(binary data\)$",
        1,
    ),
    Case(
        "parse",
        "truncated",
        lambda f, c: [*PARSE, str(f.trunc_zst), "--out", str(out(f, c))],
        r"truncated or corrupt zstd data",
        1,
    ),
    Case(
        "parse",
        "unwritable",
        lambda f, c: [*PARSE, str(SHIPPED_RUN / "trace.txt.zst"), "--out", str(UNWRITABLE)],
        r"--out .*cannot write",
        2,
    ),
    Case(
        "parse",
        "unknown-name",
        lambda f, c: [*PARSE, str(f.text), "--out", str(out(f, c)), "--engine", "fortran"],
        r"invalid choice: 'fortran'",
        2,
    ),
    Case(
        "parse",
        "ctrl-c",
        lambda f, c: [
            *PARSE,
            *map(str, sorted((REPO / "datasets" / "traces").glob("*/trace.txt.zst"))),
            "--engine",
            "python",
            "--out",
            str(out(f, c)),
        ],
        r"interrupted",
        130,
        interrupt=lambda f, c, pid: any(out(f, c).glob("*.parquet")),
    ),  # the first run done, more to go
    # ---- python -m data.build --traces DIR --out DATASET
    Case(
        "build",
        "missing",
        lambda f, c: [*BUILD, "--traces", str(f.tmp / "nope"), "--out", str(out(f, c))],
        r"--traces .*nope: no such folder",
        2,
    ),
    Case(
        "build",
        "empty",
        lambda f, c: [*BUILD, "--traces", str(f.emptydir), "--out", str(out(f, c))],
        r"no traces found under",
        2,
    ),
    Case(
        "build",
        "wrong-format",
        lambda f, c: [*BUILD, "--traces", str(f.badmeta), "--out", str(out(f, c))],
        r"meta\.json is not readable JSON",
        2,
    ),
    Case(
        "build",
        "truncated",
        lambda f, c: [*BUILD, "--traces", str(f.trunc_runs), "--out", str(out(f, c))],
        r"truncated or corrupt zstd data.*nothing written",
        1,
    ),
    Case(
        "build",
        "unwritable",
        lambda f, c: [*BUILD, "--traces", str(f.trunc_runs), "--out", str(UNWRITABLE)],
        r"--out .*cannot write",
        2,
    ),
    Case(
        "build",
        "out-is-a-file",
        lambda f, c: [*BUILD, "--traces", str(f.trunc_runs), "--out", str(f.text)],
        r"--out .*exists and is not a folder",
        2,
    ),
    Case(
        "build",
        "unknown-name",
        lambda f, c: [
            *BUILD,
            "--traces",
            str(REPO / "datasets" / "traces"),
            "--out",
            str(out(f, c)),
            "--unseen",
            "nosuch",
        ],
        r"--unseen names categories with no runs: nosuch",
        2,
    ),
    Case(
        "build",
        "ctrl-c",
        lambda f, c: [*BUILD, "--traces", str(REPO / "datasets" / "traces"), "--out", str(out(f, c))],
        r"interrupted",
        130,
        interrupt=staged,
    ),
    # ---- python -m data.collect
    Case(
        "collect",
        "missing",
        lambda f, c: [*COLLECT, "--summary", str(f.tmp / "nope")],
        r"--summary .*no such folder",
        2,
    ),
    Case("collect", "empty", lambda f, c: [*COLLECT, "--summary", str(f.emptydir)], r"--summary .*no runs", 1),
    Case(
        "collect",
        "wrong-format",
        lambda f, c: [*COLLECT, "--summary", str(f.badmeta)],
        r"meta\.json is not readable JSON",
        1,
    ),
    Case(
        "collect",
        "unwritable",
        lambda f, c: [*COLLECT, "cpu-pool", "--out", str(UNWRITABLE)],
        r"--out .*cannot write|root",
        None,
    ),
    Case(
        "collect",
        "bad-number",
        lambda f, c: [*COLLECT, "cpu-pool", "--out", str(out(f, c)), "--runs", "abc"],
        r"--runs: invalid int value: 'abc'",
        2,
    ),
    *(
        Case(
            "collect",
            f"bad-load-{kind}",
            lambda f, c, value=value: [*COLLECT, "cpu-pool", "--out", str(out(f, c)), "--load", value],
            rf"argument --load: .*{pattern}",
            2,
        )
        for kind, value, pattern in (
            ("zero", "0", "'0' is not a whole percentage >= 1"),
            ("word", "abc", "'abc' is not a whole percentage >= 1"),
            ("empty-item", "50,,", "empty item"),
        )
    ),
    Case(
        "collect",
        "unknown-name",
        lambda f, c: [*COLLECT, "no-such-workload", "--out", str(out(f, c))],
        r"unknown workload",
        2,
    ),
    Case(
        "collect",
        "ctrl-c",
        lambda f, c: [*COLLECT, "cpu-pool", "--seconds", "30", "--out", str(out(f, c))],
        r"interrupted.*restored",
        130,
        needs=tracefs,
        interrupt=lambda f, c, pid: bool(
            subprocess.run(
                ["pgrep", "-f", "data.collect.workloads run cpu-pool --seconds 30"], capture_output=True
            ).stdout
        ),
    ),
    # ---- python train.py (Hydra): failures before any fitting
    Case(
        "train",
        "missing",
        lambda f, c: [*TRAIN, f"data.dataset_dir={f.tmp / 'nope'}", hydra_run(f, c)],
        r"data\.dataset_dir=.*no such directory",
        1,
    ),
    Case(
        "train",
        "empty",
        lambda f, c: [*TRAIN, f"data.dataset_dir={f.emptydir}", hydra_run(f, c)],
        r"data\.dataset_dir=.*not a dataset",
        1,
    ),
    Case(
        "train",
        "wrong-format",
        lambda f, c: [*TRAIN, f"ckpt_path={f.text}", hydra_run(f, c)],
        r"ckpt_path=.*not a schedlearn training checkpoint",
        1,
    ),
    Case(
        "train",
        "truncated",
        lambda f, c: [*TRAIN, f"ckpt_path={f.ckpt_trunc}", hydra_run(f, c)],
        r"ckpt_path=.*not a schedlearn training checkpoint",
        1,
    ),
    Case(
        "train",
        "unwritable",
        lambda f, c: [*TRAIN, f"hydra.run.dir={UNWRITABLE}", "trainer.max_epochs=1"],
        r"error: .*(proc|No such file|Permission)",
        1,
    ),
    Case(
        "train",
        "bad-number",
        lambda f, c: [*TRAIN, "trainer.max_epochs=abc", hydra_run(f, c)],
        r"trainer\.max_epochs='abc': expected an integer",
        1,
    ),
    Case(
        "train",
        "unknown-name",
        lambda f, c: [*TRAIN, "model=nosuch", hydra_run(f, c)],
        r"Could not find 'model/nosuch'.*lstm",
        1,
    ),
    Case(
        "train", "unknown-key", lambda f, c: [*TRAIN, "colour=red", hydra_run(f, c)], r"Could not override 'colour'", 1
    ),
    Case(
        "train",
        "ctrl-c",
        lambda f, c: [*TRAIN, hydra_run(f, c)],
        r"^train\.py: interrupted$",
        130,
        interrupt=run_dir_made,
    ),
    # ---- python evaluate.py (Hydra)
    Case(
        "evaluate",
        "missing",
        lambda f, c: [*EVAL, f"ckpt_path={f.tmp / 'nope.ckpt'}", hydra_run(f, c)],
        r"ckpt_path: checkpoint .*nope\.ckpt not found",
        1,
    ),
    Case(
        "evaluate",
        "empty",
        lambda f, c: [*EVAL, f"runs={f.emptydir}", hydra_run(f, c)],
        r"runs=|no checkpoint|nothing to evaluate",
        1,
    ),
    Case(
        "evaluate",
        "wrong-format",
        lambda f, c: [*EVAL, f"ckpt_path={f.text}", hydra_run(f, c)],
        r"not a schedlearn training checkpoint",
        1,
    ),
    Case(
        "evaluate",
        "truncated",
        lambda f, c: [*EVAL, f"ckpt_path={f.ckpt_trunc}", hydra_run(f, c)],
        r"not a schedlearn training checkpoint",
        1,
    ),
    Case(
        "evaluate",
        "unwritable",
        lambda f, c: [*EVAL, f"ckpt_path={f.text}", f"hydra.run.dir={UNWRITABLE}"],
        r"error: .*(proc|No such file|Permission)",
        1,
    ),
    Case(
        "evaluate",
        "bad-number",
        lambda f, c: [*EVAL, f"ckpt_path={f.text}", "latency.calls=abc", hydra_run(f, c)],
        r"latency\.calls='abc': expected an integer",
        1,
    ),
    Case(
        "evaluate",
        "unknown-name",
        lambda f, c: [*EVAL, f"ckpt_path={f.text}", "model.width=8", hydra_run(f, c)],
        r"'model\.width=8' cannot be overridden",
        1,
        advice=r"^  What may change is the data: data_dir=DATASET, .*data\.eval_batch_size;.*\(baselines, .*workloads\)\.$",
    ),
    Case(
        "evaluate",
        "ctrl-c",
        lambda f, c: [*EVAL, f"ckpt_path={f.ckpt_zip}", hydra_run(f, c)],
        r"^evaluate\.py: interrupted$",
        130,
        interrupt=run_dir_made,
    ),
    # ---- python -m export (Hydra); Ctrl-C midway: test_export_cli.py
    Case(
        "export",
        "missing",
        lambda f, c: [*EXPORT, f"ckpt_path={f.tmp / 'nope.ckpt'}", f"out={out(f, c)}"],
        r"ckpt_path=.*nope\.ckpt: no such file",
        1,
    ),
    Case(
        "export",
        "empty",
        lambda f, c: [*EXPORT, f"ckpt_path={f.empty}", f"out={out(f, c)}"],
        r"ckpt_path=.*not a schedlearn training checkpoint",
        1,
    ),
    Case(
        "export",
        "wrong-format",
        lambda f, c: [*EXPORT, f"ckpt_path={f.text}", f"out={out(f, c)}"],
        r"ckpt_path=.*not a schedlearn training checkpoint",
        1,
    ),
    Case(
        "export",
        "truncated",
        lambda f, c: [*EXPORT, f"ckpt_path={f.ckpt_trunc}", f"out={out(f, c)}"],
        r"ckpt_path=.*not a schedlearn training checkpoint",
        1,
    ),
    Case(
        "export",
        "unwritable",
        lambda f, c: [*EXPORT, f"ckpt_path={f.text}", f"out={UNWRITABLE}"],
        r"out=.*cannot create it",
        1,
    ),
    Case(
        "export",
        "out-is-a-file",
        lambda f, c: [*EXPORT, f"ckpt_path={f.text}", f"out={f.text}"],
        r"out=.*exists and is not a folder",
        1,
    ),
    Case(
        "export",
        "bad-number",
        lambda f, c: [*EXPORT, f"ckpt_path={f.text}", f"out={out(f, c)}", "vectors=abc"],
        r"vectors='abc': expected an integer",
        1,
    ),
    Case(
        "export",
        "unknown-name",
        lambda f, c: [*EXPORT, f"ckpt_path={f.text}", f"out={out(f, c)}", "colour=red"],
        r"Could not override 'colour'",
        1,
    ),
    Case("export", "required", lambda f, c: [*EXPORT, f"out={out(f, c)}"], r"ckpt_path= is required", 1),
    # ---- python -m kernel.push_model BLOB
    Case(
        "push_model",
        "missing",
        lambda f, c: [*PUSH, str(f.tmp / "nope.blob"), "--check-only"],
        r"nope\.blob: No such file",
        1,
    ),
    Case(
        "push_model",
        "empty",
        lambda f, c: [*PUSH, str(f.empty), "--check-only"],
        r"0 bytes: shorter than the \d+-byte header",
        1,
    ),
    Case("push_model", "wrong-format", lambda f, c: [*PUSH, str(f.binary), "--check-only"], r"bad magic", 1),
    Case("push_model", "truncated", lambda f, c: [*PUSH, str(f.blob_trunc), "--check-only"], r"truncated", 1),
    Case("push_model", "unwritable", lambda f, c: [*PUSH, str(f.blob), "--dev", str(UNWRITABLE)], r"No such file", 1),
    Case(
        "push_model",
        "bad-number",
        lambda f, c: [*PUSH, str(f.blob), "--max-macs", "abc"],
        r"--max-macs: invalid int value",
        2,
    ),
    Case(
        "push_model",
        "unknown-name",
        lambda f, c: [*PUSH, str(f.blob), "--colour", "red"],
        r"unrecognized arguments: --colour",
        2,
    ),
    Case(
        "push_model",
        "ctrl-c",
        lambda f, c: [*PUSH, str(f.blob), "--dev", str(f.fifo)],
        r"interrupted",
        130,
        interrupt=lambda f, c, pid: blocked_on_fifo(pid),
    ),  # opening the FIFO "device" (no writer)
    # ---- python -m kernel.vm GEN_DIR MODEL_B
    Case("vm", "missing", lambda f, c: [*VM, str(f.tmp / "nope"), str(f.blob)], r"GEN_DIR .*no such folder", 2),
    Case("vm", "empty", lambda f, c: [*VM, str(f.emptydir), str(f.blob)], r"GEN_DIR .*not an export folder", 2),
    Case("vm", "wrong-format", lambda f, c: [*VM, str(f.gen), str(f.text)], r"MODEL_B .*bad magic", 2),
    Case("vm", "truncated", lambda f, c: [*VM, str(f.gen), str(f.blob_trunc)], r"MODEL_B .*truncated", 2),
    Case(
        "vm",
        "unwritable",
        lambda f, c: [*VM, str(f.gen), str(f.blob), "--work", str(UNWRITABLE)],
        r"--work .*cannot write",
        2,
    ),
    Case(
        "vm",
        "bad-number",
        lambda f, c: [*VM, str(f.gen), str(f.blob), "--timeout", "abc"],
        r"--timeout: invalid float value",
        2,
    ),
    Case(
        "vm",
        "unknown-name",
        lambda f, c: [*VM, str(f.gen), str(f.blob), "--colour"],
        r"unrecognized arguments: --colour",
        2,
    ),
]


def run_case(case: Case, f: Fixtures) -> tuple[int, str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    argv = case.args(f, case.id)
    if case.interrupt is None:
        r = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        return r.returncode, r.stderr
    # as typed in a terminal: SIGINT not ignored even where this test runs in the background
    # (a non-interactive shell starts background jobs with SIGINT ignored, and children inherit it)
    p = subprocess.Popen(
        argv,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    try:
        while not case.interrupt(f, case.id, p.pid):
            assert p.poll() is None, f"ended before Ctrl-C: {p.returncode} {p.stderr.read()}"
            assert time.monotonic() < deadline, "never reached the point to interrupt"
            time.sleep(0.02)
        time.sleep(0.5)  # well inside the work
        p.send_signal(signal.SIGINT)
        try:
            _, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # as a user would: Ctrl-C again
            p.send_signal(signal.SIGINT)
            _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    return p.returncode, err


@pytest.fixture(scope="module")
def plain_results(fx) -> dict[str, tuple[int, str]]:
    """The rows without Ctrl-C, run a few at a time (most of their time is interpreter start)."""
    from concurrent.futures import ThreadPoolExecutor

    plain = [c for c in CASES if c.interrupt is None and c.needs is None]
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip((c.id for c in plain), pool.map(lambda c: run_case(c, fx), plain), strict=False))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, fx: Fixtures, plain_results):
    if case.needs is not None:
        ok, why = case.needs()
        require(ok, why)
    rc, err = plain_results[case.id] if case.id in plain_results else run_case(case, fx)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("waiting for another")]
    assert "Traceback" not in err, err
    if case.kind == "ctrl-c":  # progress lines written before the interrupt may precede it
        lines = lines[-1:]
    assert len(lines) == (1 if case.advice is None else 2), err  # the error, and a declared advice line
    assert re.search(case.pattern, lines[0]), err
    assert case.advice is None or re.search(case.advice, lines[1]), lines[1]
    assert lines[0].startswith(f"{PROG[case.cli]}: {'interrupted' if case.kind == 'ctrl-c' else 'error: '}"), lines[0]
    assert rc != 0 and (case.rc is None or rc == case.rc), (rc, lines[0])
    target = out(fx, case.id)
    leftovers = (
        [p.name for p in target.parent.glob(f"{target.name}*")]
        + [p.name for p in target.parent.glob(f".{target.name}*")]
        if target.parent.exists()
        else []
    )
    if case.cli == "parse" and case.kind == "ctrl-c":  # finished tables stay; the one in progress is gone
        done = sorted(target.glob("*"))
        assert done and all(p.suffix == ".parquet" and not p.name.startswith(".") for p in done), done
        from data.parse.tracefile import read_stats

        for p in done:
            assert read_stats(p)["events"] > 0  # each complete, with its stats footer
    elif target.is_dir() and case.cli == "collect":  # the collector makes --out first; no run in it
        assert not any(target.iterdir())
    else:
        assert leftovers == [], leftovers
    assert not UNWRITABLE.exists()


def test_every_cli_meets_every_input_class():
    """The table covers every CLI, and each CLI its input classes (a row or a named test elsewhere)."""
    have = {(c.cli, c.kind) for c in CASES}
    classes = ("missing", "empty", "wrong-format", "truncated", "unwritable", "bad-number", "unknown-name", "ctrl-c")
    elsewhere = {
        ("export", "ctrl-c"): "test_export_cli.py::test_interrupted_export_leaves_out_as_it_was",
        ("vm", "ctrl-c"): "not tested: needs a real export to build and boot",
        ("build", "bad-number"): "no numeric option",
        ("parse", "bad-number"): "no numeric option",
        ("collect", "truncated"): "takes workload names, not files; broken meta.json is wrong-format",
    }
    for cli in ("parse", "build", "collect", "train", "evaluate", "export", "push_model", "vm"):
        for kind in classes:
            assert (cli, kind) in have or (cli, kind) in elsewhere, (cli, kind)


def test_advice_is_printed_whole_on_a_line_of_its_own(capsys):
    """An error's advice (what to type instead) follows its one line, never cut at one_line's
    limit, also from inside Hydra's wrapper of an instantiation (the DataModule's refusal)."""
    from hydra.errors import InstantiationException

    from plumbing import hydra_cli

    features = "data.features=[" + ",".join(f"input_{i}" for i in range(60)) + "]"  # far over 300 characters
    error = ValueError(f"trace(s) r01 have no sched_waking events\n  train without it: {features}")
    wrapped = InstantiationException("Error in call to target 'MigrationDataModule'")
    wrapped.__cause__ = error
    for exc in (
        error,
        wrapped,
        hydra_cli.UserError("trace(s) r01 have no sched_waking events", advice=f"train without it: {features}"),
    ):
        with pytest.raises(SystemExit) as exit_:
            hydra_cli._fail("train.py", exc)
        assert exit_.value.code == 1
        assert capsys.readouterr().err.splitlines() == [
            "train.py: error: trace(s) r01 have no sched_waking events",
            f"  train without it: {features}",
        ]


def test_hydra_errors_are_one_line_and_ctrl_c_is_130(tmp_path, capsys):
    """The edge shared by train.py, evaluate.py and export: a binary file's bytes quoted in an
    error are dropped; Ctrl-C (also when a library turned it into another error) is exit 130;
    a run folder holding only Hydra's files is removed."""
    from plumbing import hydra_cli

    err = ValueError("traces: /t/x.bin: not an ftrace text file: no event lines (line 1: '\\x07\ufffd\\x00')")
    assert hydra_cli.one_line(err) == "traces: /t/x.bin: not an ftrace text file: no event lines (binary data)"
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RecursionError("maximum recursion depth exceeded") from None  # what an interrupted import can give
    except RecursionError as e:
        assert hydra_cli.interrupted(e)
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "train.log").write_text("")
    (run / "csv" / "version_0").mkdir(parents=True)
    assert hydra_cli.remove_if_unwritten(run) and not run.exists()
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert not hydra_cli.remove_if_unwritten(run) and run.exists()  # results are kept
    with pytest.raises(SystemExit) as exit_:
        hydra_cli._fail("evaluate.py", RecursionError())
    assert exit_.value.code == 1
