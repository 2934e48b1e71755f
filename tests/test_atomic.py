"""plumbing.atomic.swap_dir_in: a built dataset or an export folder is replaced in one step, so a
reader (or a crash) finds the old folder or the new one, never none."""

import os
import signal
import subprocess
import sys
import threading

import pytest

from plumbing import atomic
from tests.conftest import REPO


def _folder(path, text):
    path.mkdir()
    (path / "meta.json").write_text(text)
    return path


def test_swap_replaces_the_folder_and_leaves_nothing_beside_it(tmp_path):
    out = tmp_path / "dataset"
    atomic.swap_dir_in(_folder(tmp_path / ".dataset.tmp", "one"), out)  # no old folder: a rename
    atomic.swap_dir_in(_folder(tmp_path / ".dataset.tmp", "two"), out)
    assert (out / "meta.json").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["dataset"]


def test_the_old_folder_is_swapped_out_in_one_step(tmp_path):
    """While 200 swaps run, a reader polling the folder never finds it missing (renameat2
    RENAME_EXCHANGE); the two-rename fallback had a window with no folder at all."""
    if not atomic._exchange(_folder(tmp_path / "a", "a"), _folder(tmp_path / "b", "b")):
        pytest.skip("renameat2(RENAME_EXCHANGE) unsupported here: the two-rename fallback applies")
    assert (tmp_path / "a" / "meta.json").read_text() == "b"  # the names were swapped
    out = _folder(tmp_path / "out", "0")
    missing, done = [], threading.Event()

    def reader():
        while not done.is_set():
            if not (out / "meta.json").exists():
                missing.append(1)

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(200):
            atomic.swap_dir_in(_folder(tmp_path / ".out.tmp", str(i + 1)), out)
    finally:
        done.set()
        t.join()
    assert (out / "meta.json").read_text() == "200" and not missing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "out"]


def test_exchange_errors_other_than_unsupported_are_raised(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic._exchange(tmp_path / "absent", _folder(tmp_path / "b", "b"))


def _dead_pid() -> int:
    """The PID of a process that has ended (and been reaped)."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_recover_puts_back_a_swap_killed_between_its_renames(tmp_path):
    """The two-rename fallback killed after `out -> .out.old-PID`: no `out`, the previous complete
    folder under the old name, the new one staged. recover() restores the previous one."""
    dead = _dead_pid()
    _folder(tmp_path / f".out.old-{dead}", "previous")
    _folder(tmp_path / f".out.tmp-{dead}", "new")
    done = atomic.recover(tmp_path, "out")
    assert (tmp_path / "out" / "meta.json").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], done
    assert len(done) == 2 and "restored" in done[0]


def test_recover_removes_dead_staging_and_spares_live_writers_and_others(tmp_path):
    dead = _dead_pid()
    _folder(tmp_path / "out", "current")
    _folder(tmp_path / f".out.old-{dead}", "older")  # out exists: the old one is only removed
    _folder(tmp_path / f".r01.partial-{dead}", "run")
    (tmp_path / f".meta.json.tmp-{dead}").write_text("half")
    _folder(tmp_path / f".r02.partial-{os.getppid()}", "live")  # a writer still running
    _folder(tmp_path / ".hidden", "user's")  # not a staging name
    atomic.recover(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", f".r02.partial-{os.getppid()}", "out"]
    assert (tmp_path / "out" / "meta.json").read_text() == "current"
    # with a name, only that name's staging entries are touched
    _folder(tmp_path / f".r03.partial-{dead}", "run")
    atomic.recover(tmp_path, "out")
    assert (tmp_path / f".r03.partial-{dead}").is_dir()


@pytest.mark.parametrize("point", ["between", "after"])
def test_kill_hook_kills_inside_the_swap_and_recover_repairs(tmp_path, point):
    """The test hook (atomic.KILL_HOOK) SIGKILLs a process inside swap_dir_in; what it leaves is
    the previous folder (between the renames, under its .old name) or the new one, and recover()
    leaves exactly one complete `out`."""
    _folder(tmp_path / "out", "previous")
    _folder(tmp_path / ".out.tmp", "new")
    code = f"from pathlib import Path; from plumbing import atomic; atomic.swap_dir_in(Path({str(tmp_path / '.out.tmp')!r}), Path({str(tmp_path / 'out')!r}))"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, atomic.KILL_HOOK: point})
    assert r.returncode == -signal.SIGKILL
    names = sorted(p.name for p in tmp_path.iterdir())
    if point == "between":
        assert names == [".out.old-" + str(_pid_of(tmp_path, "old")), ".out.tmp"]  # the window
    else:
        assert "out" in names and (tmp_path / "out" / "meta.json").read_text() == "new"
    atomic.recover(tmp_path, "out")
    want = "previous" if point == "between" else "new"
    assert (tmp_path / "out" / "meta.json").read_text() == want
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".out.tmp") == ["out"]


def _pid_of(folder, kind):
    return next(int(p.name.rsplit("-", 1)[1]) for p in folder.iterdir() if f".{kind}-" in p.name)
