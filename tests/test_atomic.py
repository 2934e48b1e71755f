"""plumbing.atomic.swap_dir_in: a built dataset or an export folder is replaced in one step, so a
reader (or a crash) finds the old folder or the new one, never none."""

import threading

import pytest

from plumbing import atomic


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
