"""What the Hydra entry points (train.py, evaluate.py, python -m export) share at the edges:
a user error is one line on stderr and a non-zero exit, never a traceback; Ctrl-C is one line
and exit 130; a run folder that holds nothing but Hydra's own files is removed on failure.

HYDRA_FULL_ERROR=1 set by the user keeps Hydra's full traceback (for debugging).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

# Lightning Trainer arguments that must be integers / numbers (a string there ends in a bare
# AssertionError deep inside the fit loop).
TRAINER_INTS = (
    "max_epochs",
    "min_epochs",
    "max_steps",
    "min_steps",
    "accumulate_grad_batches",
    "log_every_n_steps",
    "check_val_every_n_epoch",
    "num_sanity_val_steps",
    "num_nodes",
)
TRAINER_NUMBERS = (
    "limit_train_batches",
    "limit_val_batches",
    "limit_test_batches",
    "limit_predict_batches",
    "val_check_interval",
    "gradient_clip_val",
    "overfit_batches",
)
_NOISE = (
    "Config search path",
    "provider=",
    "object_type=",
    "reference_type=",
    "Set the environment variable HYDRA_FULL_ERROR",
)


class UserError(ValueError):
    """Bad input from the command line; the message names the argument."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """A readable single line for an exception (Hydra's wrappers unwrapped, noise dropped)."""
    from hydra.errors import InstantiationException

    while isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        exc = exc.__cause__
    lines = []
    for line in str(exc).splitlines():
        line = line.strip()
        if line.startswith(_NOISE):
            break
        if line:
            lines.append(line)
    text = " ".join(lines) or type(exc).__name__
    if "\\x" in text or "\ufffd" in text:  # bytes of a binary file quoted in the message: drop them
        text = text.split(" (line ")[0] + " (binary data)"
    plain = isinstance(exc, (ValueError, OSError)) or type(exc).__module__.startswith(("hydra", "omegaconf"))
    if not plain and type(exc).__name__ not in text:  # e.g. "KeyError: 'x'"
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_number(value, key: str, kind: type = int, minimum: float | None = None) -> None:
    """UserError unless `value` is an int (kind=int) or a number (kind=float), >= minimum."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        ok = ok and isinstance(value, int)
    if not ok:
        raise UserError(f"{key}={value!r}: expected {'an integer' if kind is int else 'a number'}")
    if minimum is not None and value < minimum:
        raise UserError(f"{key}={value!r}: must be >= {minimum:g}")


def check_trainer(trainer_cfg) -> None:
    """The Trainer's numeric settings, checked before Lightning sees them."""
    for key in TRAINER_INTS:
        if trainer_cfg.get(key) is not None:
            check_number(trainer_cfg.get(key), f"trainer.{key}", int, -1)
    for key in TRAINER_NUMBERS:
        if trainer_cfg.get(key) is not None:
            check_number(trainer_cfg.get(key), f"trainer.{key}", float, 0)


def remove_if_unwritten(run_dir: str | os.PathLike | None) -> bool:
    """Delete a run folder that holds only bookkeeping: Hydra's .hydra/, *.log, a logger's
    hparams.yaml, empty folders; results (checkpoints, metrics, reports) keep it."""
    if not run_dir:
        return False
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return False
    for p in run_dir.rglob("*"):
        rel = p.relative_to(run_dir)
        if p.is_file() and rel.parts[0] != ".hydra" and p.suffix != ".log" and p.name != "hparams.yaml":
            return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


def hydra_output_dir() -> str | None:
    from hydra.core.hydra_config import HydraConfig

    try:
        return HydraConfig.get().runtime.output_dir
    except ValueError:  # not inside a Hydra run
        return None


_DEBUG = os.environ.get("HYDRA_FULL_ERROR") == "1"  # the user asked for tracebacks


_SIGINT = {"seen": False}  # set by run()'s SIGINT handler


def _on_sigint(signum, frame):
    """First Ctrl-C: KeyboardInterrupt, unwinding normally. A second one (the first was
    swallowed by a library, or unwinding hangs): leave at once, still tidy and in one line."""
    if _SIGINT["seen"]:
        remove_if_unwritten(hydra_output_dir())
        os.write(2, f"{_SIGINT.get('prog', sys.argv[0])}: interrupted\n".encode())
        os._exit(130)
    _SIGINT["seen"] = True
    raise KeyboardInterrupt


def interrupted(exc: BaseException) -> bool:
    """Ctrl-C, also when it struck inside an import or a library that turned it into another
    error (RecursionError, AttributeError... from a half-imported module): run()'s handler
    remembers the signal, and the exception's context chain may hold the KeyboardInterrupt."""
    if _SIGINT["seen"]:
        return True
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _fail(prog: str, exc: BaseException) -> None:
    if interrupted(exc):
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
    sys.exit(1)


def entry_point(prog: str) -> Callable:
    """Decorator for a Hydra task function (under @hydra.main): a failure removes the run
    folder if the run wrote nothing of its own, and becomes one line and exit 1 (130 on
    Ctrl-C). Handled inside the job, so Hydra adds no report of its own."""
    import functools

    def wrap(task: Callable) -> Callable:
        @functools.wraps(task)
        def wrapper(cfg):
            try:
                return task(cfg)
            except BaseException as e:
                remove_if_unwritten(hydra_output_dir())
                if isinstance(e, SystemExit) and not _SIGINT["seen"]:  # e.g. Lightning's exit(1) after Ctrl-C
                    raise
                if _DEBUG and not interrupted(e):
                    raise
                _fail(prog, e)

        return wrapper

    return wrap


def run(main: Callable[[], object], prog: str) -> None:
    """Call a @hydra.main function; errors before the job (composition, overrides) become one
    line and exit 1 as well."""
    import signal

    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing its own report
    _SIGINT["prog"] = prog
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        main()
    except (SystemExit, KeyboardInterrupt) as e:
        if isinstance(e, SystemExit) and (not _SIGINT["seen"] or e.code in (0, 130)):
            raise
        _fail(prog, e)
    except Exception as e:  # noqa: BLE001 - the one place where errors become one line
        if _DEBUG and not interrupted(e):
            raise
        _fail(prog, e)
