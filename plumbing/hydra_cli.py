"""What the Hydra entry points (train.py, evaluate.py, python -m export) share at the edges:
a user error is one line on stderr and a non-zero exit, never a traceback; Ctrl-C is one line
and exit 130; a run folder that holds nothing but Hydra's own files is removed on failure.

An error may carry advice for the user (what to type instead): it follows the message's first
line, indented by two spaces (`UserError(message, advice=...)` writes it so), and is printed whole
on a line of its own, never cut like the one-line message.

HYDRA_FULL_ERROR=1 set by the user keeps Hydra's full traceback (for debugging).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shutil
import signal
import sys
import types
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException, ValidationError

_NOISE = (
    "Config search path",
    "provider=",
    "full_key:",
    "object_type=",
    "reference_type=",
    "Set the environment variable HYDRA_FULL_ERROR",
)
_ADVICE = re.compile(r"^  \S")  # a line of advice: indented by exactly two spaces
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", list: "a list", dict: "a mapping"}


class UserError(ValueError):
    """Bad input from the command line; the message names the argument. `advice` (what to
    type instead) goes on a line of its own, so it is never cut short."""

    def __init__(self, message: str, advice: str | None = None):
        super().__init__(message if advice is None else f"{message}\n  {advice}")


def _unwrapped(exc: BaseException) -> BaseException:
    while isinstance(exc, InstantiationException) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    """`exc` and the exceptions it was raised from or during, each once."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def advice(exc: BaseException) -> list[str]:
    """The advice lines of an error (see the module docstring), indentation kept."""
    return [line for line in str(_unwrapped(exc)).splitlines()[1:] if _ADVICE.match(line)]


def _expected(hint: Any) -> str | None:
    """'an integer', 'a number', 'true or false', ... for a schema field's type hint (Optional
    stripped), or None for a type without a short name."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        args = [hint]
    if set(args) == {int, float}:
        return "a number"
    names = []
    for arg in args:
        kind = typing.get_origin(arg) or arg
        if kind is bool:
            names += ["true", "false"]
        elif kind in _TYPE_NAMES:
            names.append(_TYPE_NAMES[kind])
        else:
            return None
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def type_error(exc: BaseException | None) -> str | None:
    """`key=value: expected <type>` for an OmegaConf type error of a structured-config field
    anywhere in `exc`'s chain (Hydra wraps it: "Error merging override ..."), else None."""
    for link in _chain(exc):
        if isinstance(link, ValidationError) and not isinstance(link, (ConfigKeyError, MissingMandatoryValue)):
            if not getattr(link, "full_key", None):
                return None
            schema = getattr(link, "object_type", None)
            try:
                hint = typing.get_type_hints(schema).get(link.key) if dataclasses.is_dataclass(schema) else None
            except (NameError, TypeError):
                hint = None
            expected = _expected(hint) if hint is not None else None
            why = f"expected {expected}" if expected else str(link.msg).splitlines()[0]
            return f"{link.full_key}={link.value!r}: {why}"
        if isinstance(link, OmegaConfBaseException):
            return None
    return None


def one_line(exc: BaseException, limit: int = 300) -> str:
    """A readable single line for an exception (Hydra's wrappers unwrapped, noise dropped; a
    type error as `key=value: expected ...`); its advice lines are left to `advice()`."""
    exc = _unwrapped(exc)
    lines = []
    for i, line in enumerate(str(exc).splitlines()):
        if i and _ADVICE.match(line):
            continue
        line = line.strip()
        if line.startswith(_NOISE):
            break
        if line:
            lines.append(line)
    text = type_error(exc) or " ".join(lines) or type(exc).__name__
    if "\\x" in text or "\ufffd" in text:  # bytes of a binary file quoted in the message: drop them
        text = text.split(" (line ")[0] + " (binary data)"
    plain = isinstance(exc, (ValueError, OSError)) or type(exc).__module__.startswith(("hydra", "omegaconf"))
    if not plain and type(exc).__name__ not in text:  # e.g. "KeyError: 'x'"
        text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    try:
        return HydraConfig.get().runtime.output_dir
    except ValueError:  # not inside a Hydra run
        return None


_DEBUG = os.environ.get("HYDRA_FULL_ERROR") == "1"  # the user asked for tracebacks


_SIGINT = {"seen": False}  # set by run()'s SIGINT handler


def _say_interrupted(prog: str) -> None:
    os.write(_SIGINT.get("stderr", 2), f"{prog}: interrupted\n".encode())


def _quiet_stderr() -> None:
    """After Ctrl-C the one line must be all the user sees, but the interpreter and libraries
    may still print while unwinding (a KeyboardInterrupt that lands in an import lock or a
    finalizer is printed as a bare traceback): fd 2 goes to /dev/null, the line to a copy."""
    if "stderr" in _SIGINT:
        return
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    _SIGINT["stderr"] = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)


def _on_sigint(signum, frame):
    """First Ctrl-C: KeyboardInterrupt, unwinding normally. A second one (the first was
    swallowed by a library, or unwinding hangs): leave at once, still tidy and in one line."""
    if _SIGINT["seen"]:
        remove_if_unwritten(hydra_output_dir())
        _say_interrupted(_SIGINT.get("prog", sys.argv[0]))
        os._exit(130)
    _SIGINT["seen"] = True
    _quiet_stderr()
    raise KeyboardInterrupt


def interrupted(exc: BaseException) -> bool:
    """Ctrl-C, also when it struck inside an import or a library that turned it into another
    error (RecursionError, AttributeError... from a half-imported module): run()'s handler
    remembers the signal, and the exception's context chain may hold the KeyboardInterrupt."""
    return _SIGINT["seen"] or any(isinstance(link, KeyboardInterrupt) for link in _chain(exc))


def _fail(prog: str, exc: BaseException) -> None:
    if interrupted(exc):
        _say_interrupted(prog)
        sys.exit(130)
    print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
    for line in advice(exc):
        print(line, file=sys.stderr)
    sys.exit(1)


def entry_point(prog: str) -> Callable:
    """Decorator for a Hydra task function (under @hydra.main): a failure removes the run
    folder if the run wrote nothing of its own, and becomes one line and exit 1 (130 on
    Ctrl-C). Handled inside the job, so Hydra adds no report of its own."""

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


def run(
    main: Callable[[], object], prog: str, explain: Callable[[BaseException], BaseException | None] | None = None
) -> None:
    """Call a @hydra.main function; errors before the job (composition, overrides) become one
    line and exit 1 as well. `explain` may replace a composition error by a clearer one."""
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
        _fail(prog, (explain(e) if explain else None) or e)
