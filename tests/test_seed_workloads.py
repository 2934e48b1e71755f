"""The seeds' benchmarks as registry workloads (compress-zstd, fib-threads, numa-matmul, make-j,
pinned-pingpong): their commands, the inputs they generate (the host's Python and the guest's
static C program write the same bytes), and real ~1 s runs of both, watched through /proc."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data.collect import workloads as wl
from data.collect.guest import collect as gc
from data.collect.guest.topology import cpulist
from tests.conftest import REPO, require

SEEDS = ["compress-zstd", "fib-threads", "numa-matmul", "make-j", "pinned-pingpong"]
N = 2  # workers (pairs for pinned-pingpong) in the runs below
SECONDS = {"compress-zstd": 2.0}  # its corpus takes ~0.5 s of the run here: 2 s leave zstd time


@pytest.fixture(scope="module")
def slw(tmp_path_factory) -> Path:
    require(shutil.which("cc") is not None, "a C compiler (cc)")
    return gc.build_slw(tmp_path_factory.mktemp("slw"))


def test_registry_entries():
    cats = {"compress-zstd": "compress", "fib-threads": "cpu", "numa-matmul": "memory"}
    cats |= {"make-j": "build", "pinned-pingpong": "affinity"}
    for name, cat in cats.items():
        w = wl.WORKLOADS[name]
        assert w.category == cat and w.scalable and name in wl.BUILTINS and name in wl.by_category()[cat]
    assert wl.WORKLOADS["compress-zstd"].tools == ("zstd",) and wl.WORKLOADS["make-j"].tools == ("make", "tcc")
    assert all(t in wl.TOOL_PACKAGES for w in wl.WORKLOADS.values() for t in w.tools)
    assert "pinned" in wl.WORKLOADS["pinned-pingpong"].description


@pytest.mark.parametrize("name", SEEDS)
@pytest.mark.parametrize("n", [1, 3, 16])
def test_commands_and_guest_commands(name, n):
    """Host: the Python built-in with --seconds and --nproc n; guest: slw NAME SECONDS n, with
    /tmp (tmpfs) as the folder for the two that write their input."""
    w = wl.WORKLOADS[name]
    cmd = w.command(1.25, n)
    assert cmd[:5] == [sys.executable, "-m", "data.collect.workloads", "run", name]
    assert cmd[cmd.index("--seconds") + 1] == "1.25" and cmd[cmd.index("--nproc") + 1] == str(n)
    g = w.guest_command(1.25, n)
    tail = [wl.GUEST_TMP_DIR] if name in ("compress-zstd", "make-j") else []
    assert g == [wl.GUEST_BUILTIN, name, "1.25", str(n), *tail]


def test_corpus_and_job_sizes():
    mib = wl.MIB
    assert [wl.corpus_bytes(n) // mib for n in (1, 4, 8, 9, 16, 80)] == [32, 32, 32, 36, 64, 64]
    assert [wl.zstd_job_bytes(n) // mib for n in (1, 2, 4, 8, 16, 80)] == [8, 4, 2, 1, 1, 1]
    for n in range(1, 40):  # every thread has jobs: >= 4 each up to 16 threads
        assert wl.zstd_job_bytes(n) % mib == 0 and wl.corpus_bytes(n) // wl.zstd_job_bytes(n) >= min(4 * n, 64)


def test_generated_inputs_match_the_static_program(slw, tmp_path):
    """The guest's C generators write the same corpus and C tree as the host's Python."""
    for nbytes, chunk in ((3 * wl.MIB + 7, 1 << 20), (100_003, 1000)):  # chunk edges: Python only
        wl.write_corpus(str(tmp_path / "py.txt"), nbytes, chunk=chunk)
        subprocess.run([str(slw), "corpus", str(nbytes), str(tmp_path / "c.txt")], check=True, timeout=60)
        py, c = (tmp_path / "py.txt").read_bytes(), (tmp_path / "c.txt").read_bytes()
        assert len(py) == nbytes and py == c
    words = py.split()
    assert 1000 < len(set(words)) <= wl.VOCAB and py.count(b"\n") > len(words) // 32  # text-like
    for d in ("py", "c"):
        (tmp_path / d).mkdir()
    wl.write_tree(str(tmp_path / "py"))
    subprocess.run([str(slw), "tree", str(tmp_path / "c")], check=True, timeout=60)
    names = sorted(p.name for p in (tmp_path / "py").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "c").iterdir()) and len(names) == wl.TREE_UNITS + 1
    for name in names:
        assert (tmp_path / "py" / name).read_bytes() == (tmp_path / "c" / name).read_bytes(), name
    lines = (tmp_path / "py" / "u00.c").read_text().splitlines()
    assert 200 < len(lines) < 700 and not any(ln.startswith("#") for ln in lines)


def test_corpus_compresses_like_text(tmp_path):
    require(shutil.which("zstd") is not None, "zstd (Debian: apt-get install zstd)")
    wl.write_corpus(str(tmp_path / "c.txt"), 2 * wl.MIB)
    out = subprocess.run(["zstd", "-3", "-c", str(tmp_path / "c.txt")], capture_output=True, check=True).stdout
    assert 2 * wl.MIB / 4 < len(out) < 2 * wl.MIB / 1.5  # compresses, not trivially


# ----- real runs, watched through /proc ----------------------------------------------------------


def _tree(root: int) -> list[dict]:
    """The processes under root (root first): pid, comm, thread count, allowed CPUs."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            parent[int(d)] = int(stat.rsplit(")", 1)[1].split()[1])
    pids, out = [root], []
    while pids:
        pid = pids.pop(0)
        try:
            status = dict(
                ln.split(":\t", 1) for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ":\t" in ln
            )
            out.append(
                {
                    "pid": pid,
                    "comm": status["Name"].strip(),
                    "threads": int(status["Threads"]),
                    "cpus": status["Cpus_allowed_list"].strip(),
                    "parent": parent.get(pid),
                }
            )
        except (OSError, KeyError):
            continue
        pids += [p for p, pp in parent.items() if pp == pid]
    return out


def _watch(argv: list[str], seconds: float, env=None) -> tuple[int, float, list[list[dict]]]:
    """Run argv, snapshot its process tree every ~20 ms until it exits: (rc, wall s, snapshots)."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    snaps = []
    while p.poll() is None and time.monotonic() - t0 < seconds + 30:
        snaps.append(_tree(p.pid))
        time.sleep(0.02)
    try:
        p.wait(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
    took = time.monotonic() - t0
    out = p.stdout.read().decode(errors="replace")
    assert p.returncode == 0, out[-500:]
    return p.returncode, took, snaps


def _check_tree(name: str, snaps: list[list[dict]], threads_in_root: bool) -> None:
    """What each workload must have shown while it ran, with N workers. threads_in_root: the
    workers are threads of the root process (slw) rather than forked processes (Python)."""
    kids = [[p for p in s[1:] if p["parent"] == s[0]["pid"]] for s in snaps if s]
    if name == "fib-threads":
        if threads_in_root:
            assert max(s[0]["threads"] for s in snaps if s) == N + 1
        else:
            assert max(len(k) for k in kids) == N
    elif name == "numa-matmul":  # one process, N threads + the main one, in both
        assert max(s[0]["threads"] for s in snaps if s) == N + 1 and max(len(k) for k in kids) == 0
    elif name == "pinned-pingpong":
        assert max(len(k) for k in kids) == 2 * N
        cpus = sorted(os.sched_getaffinity(0))
        last = {p["pid"]: cpulist(p["cpus"]) for k in kids for p in k}  # each child's mask as last seen
        pinned = [pid for pid, c in last.items() if c == cpus[: max(1, len(cpus) // 2)]]
        assert len(last) == 2 * N and len(pinned) == 2 * (N // 2), last  # the first N//2 pairs
        assert all(c == cpus for pid, c in last.items() if pid not in pinned)
    elif name == "compress-zstd":
        zstd = [p for s in snaps for p in s[1:] if p["comm"] == "zstd"]
        assert zstd and max(p["threads"] for p in zstd) >= N + 1  # its N workers beside its main thread
    elif name == "make-j":
        procs = [[p["comm"] for p in s[1:]] for s in snaps]
        assert any("make" in c for c in procs) and any("tcc" in c for c in procs)
        assert max(c.count("tcc") for c in procs) <= N


def _need_tools(name: str) -> None:
    miss = wl.WORKLOADS[name].missing_tools()
    require(not miss, f"{', '.join(miss)} (Debian: apt-get install {' '.join(wl.TOOL_PACKAGES[t] for t in miss)})")


@pytest.mark.parametrize("name", SEEDS)
def test_host_run(name, tmp_path):
    """The Python built-in runs ~1 s, shows its tree, stops at the deadline, leaves nothing."""
    _need_tools(name)
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    s = SECONDS.get(name, 1.0)
    _, took, snaps = _watch(wl.WORKLOADS[name].command(s, N), s, env)
    assert s <= took < s + 4, took
    _check_tree(name, snaps, threads_in_root=name == "numa-matmul")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", SEEDS)
def test_static_program_run(name, slw, tmp_path):
    """The guest's static program runs the same workload natively: ~1 s, same tree."""
    _need_tools(name)
    s = SECONDS.get(name, 1.0)
    argv = wl.WORKLOADS[name].guest_command(s, N)
    argv = [str(slw), *argv[1:4]] + ([str(tmp_path)] if len(argv) > 4 else [])
    _, took, snaps = _watch(argv, s)
    assert s <= took < s + 3, took
    _check_tree(name, snaps, threads_in_root=True)
    assert list(tmp_path.iterdir()) == []


def test_static_program_refuses_bad_arguments(slw, tmp_path):
    for argv in (["make-j", "1", "2"], ["fib-threads", "1", "0"], ["compress-zstd", "1", "2", "x" * 2000]):
        r = subprocess.run([str(slw), *argv], capture_output=True, text=True, timeout=10)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (argv, r.stderr)


def test_missing_tool_is_one_line(tmp_path):
    """Without tcc on PATH: `run make-j` and the guest collector each say so in one line,
    naming the Debian package."""
    env = {**os.environ, "PATH": str(tmp_path)}
    r = subprocess.run(
        [sys.executable, "-m", "data.collect.workloads", "run", "make-j", "--seconds", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 2 and "apt-get install make tcc" in r.stderr.strip().splitlines()[-1]
    old = os.environ["PATH"]
    try:
        os.environ["PATH"] = str(tmp_path)
        msgs = gc.unrunnable([wl.WORKLOADS["make-j"], wl.WORKLOADS["fib-threads"]])
    finally:
        os.environ["PATH"] = old
    assert len(msgs) == 1 and msgs[0].startswith("make-j: make, tcc not installed") and "install make tcc" in msgs[0]
