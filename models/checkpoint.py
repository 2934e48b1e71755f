"""Is this file a schedlearn training checkpoint? Checked before anything heavy is loaded, so
a wrong path is one line naming the argument, not a traceback from torch."""

from __future__ import annotations

import zipfile
from pathlib import Path

from plumbing.hydra_cli import UserError, one_line


def check_file(path, key: str = "ckpt_path") -> Path:
    """The path, or UserError naming `key` when no file is there (a folder, or nothing)."""
    p = Path(str(path))
    if not p.is_file():
        raise UserError(f"{key}={p}: {'is a folder, not a checkpoint file' if p.is_dir() else 'no such file'}")
    return p


def check_checkpoint(path, key: str = "ckpt_path", load: bool = True) -> dict | None:
    """UserError naming `key` unless `path` is a readable training checkpoint of this project;
    returns its saved hyper-parameters (load=False: only the cheap checks, a complete zip file,
    without importing torch; returns None)."""
    p = check_file(path, key)
    if not zipfile.is_zipfile(p):  # what torch.save writes; a cut-off copy has no zip directory
        raise UserError(f"{key}={p}: not a schedlearn training checkpoint (not a complete PyTorch zip archive)")
    if not load:
        return None
    # deferred on purpose: models.tasks imports torch and Lightning, which the cheap checks avoid
    from models.tasks import checkpoint_hparams

    try:
        hparams = checkpoint_hparams(str(p))
        hparams["data_meta"]["task"]
    except Exception as e:  # noqa: BLE001 - any failure to read it means: not our checkpoint
        raise UserError(f"{key}={p}: not a schedlearn training checkpoint ({one_line(e, 160)})") from None
    return hparams
