"""Parse the SLM-* marker lines that vm/init.sh (and init_hook.sh, init_debug.sh) print on the
serial console, and scan it for kernel splats."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kernel.push_model import parse_status

SELFTEST = re.compile(r"schedlearn: selftest (PASS|FAIL) (\d+)/(\d+) vectors, (\d+) ns/forward")
# The first line of a kernel splat: KASAN ("BUG: KASAN: ..."), might_sleep ("BUG: sleeping
# function called from invalid context"), lockdep and RCU-lockdep (their reports start with
# "WARNING: possible recursive locking ...", "WARNING: suspicious RCU usage", ...), WARN(),
# debugobjects (ODEBUG), RCU stalls, faults, oopses, panics. Named ones are listed beside
# the catch-alls so that a reader of the pattern sees what it is for.
SPLAT = re.compile(
    r"BUG: KASAN|BUG: sleeping function called from invalid context|BUG:|kernel BUG at|Oops"
    r"|possible recursive locking|possible circular locking|inconsistent lock state"
    r"|suspicious RCU usage|WARNING:|ODEBUG:|general protection|Kernel panic"
    r"|rcu: INFO: .*detected stall|self-detected stall"
)
CALL_TRACE = re.compile(r"Call Trace:")
SPLAT_SPAN = 80  # lines after a splat's first line that still belong to its report


def splats(text: str) -> list[str]:
    """Console lines that start a kernel splat, plus any "Call Trace:" that is not part of
    one (within SPLAT_SPAN lines after a splat's first line): a trace no header announced."""
    found, since = [], None
    for line in text.replace("\r", "").splitlines():
        since = None if since is None else since + 1
        if SPLAT.search(line):
            found.append(line)
            since = 0
        elif CALL_TRACE.search(line) and (since is None or since > SPLAT_SPAN):
            found.append(line)
    return found


def key_values(text: str) -> dict[str, int | str]:
    """k=v words of a marker line; integer values as int."""
    out: dict[str, int | str] = {}
    for word in text.split():
        k, eq, v = word.partition("=")
        if eq:
            out[k] = int(v) if re.fullmatch(r"-?[0-9]+", v) else v
    return out


@dataclass
class Console:
    insmod_rc: int | None = None
    rmmod_rc: int | None = None
    selftest: tuple[str, int, int, int] | None = None  # verdict, passed, total, ns/forward
    queries: dict[str, dict] = field(default_factory=dict)  # tag -> status fields
    pushes: dict[str, int] = field(default_factory=dict)  # label -> cat's exit status
    dmesg: list[str] = field(default_factory=list)
    uptime: dict[str, float] = field(default_factory=dict)  # BOOT/DONE/LOAD_start/LOAD_end -> guest s
    trouble: list[str] = field(default_factory=list)  # splats()
    # init_debug.sh: SLM-DEBUG start/end (kasan, lockdep, debug_locks), SLM-HOOK, SLM-RELOADS,
    # SLM-HACKBENCH
    debug: dict[str, dict] = field(default_factory=dict)
    hook: dict = field(default_factory=dict)
    reloads: dict = field(default_factory=dict)  # done, failed
    hackbench: dict = field(default_factory=dict)  # runs, failed
    # init.sh's privilege checks: label -> rc, uid, gid, err (the shell's error message)
    unpriv: dict[str, dict] = field(default_factory=dict)
    params: dict[str, dict] = field(default_factory=dict)  # SLM-PARAMS tag -> hook, active
    done: bool = False


def parse(text: str) -> Console:
    out, query = Console(), None
    out.trouble = splats(text)
    for line in text.replace("\r", "").splitlines():
        if query is not None:
            if line == f"SLM-QUERY {query} END":
                query = None
            elif not line.startswith("["):  # kernel messages may interleave
                out.queries[query].update(parse_status(line))
            continue
        kind, _, rest = line.partition(" ")
        if kind == "SLM-QUERY" and rest.endswith(" BEGIN"):
            query = rest.split()[0]
            out.queries[query] = {}
        elif kind == "SLM-PUSH":
            label, _, rc = rest.partition(" rc=")
            out.pushes[label] = int(rc)
        elif kind in ("SLM-INSMOD", "SLM-RMMOD"):
            setattr(out, kind[4:].lower() + "_rc", int(rest.partition("rc=")[2]))
        elif kind == "SLM-DMESG":
            out.dmesg.append(rest)
            selftest = SELFTEST.search(rest)
            if selftest and out.selftest is None:  # the first load; later ones test params
                out.selftest = (selftest[1], int(selftest[2]), int(selftest[3]), int(selftest[4]))
        elif kind in ("SLM-BOOT", "SLM-DONE"):
            out.uptime[kind[4:]] = float(rest.partition("uptime=")[2])
            out.done |= kind == "SLM-DONE"
        elif kind == "SLM-LOAD":
            tag, _, up = rest.partition(" uptime=")
            out.uptime[f"LOAD_{tag}"] = float(up)
        elif kind in ("SLM-DEBUG", "SLM-PARAMS"):
            tag, _, kv = rest.partition(" ")
            (out.debug if kind == "SLM-DEBUG" else out.params)[tag] = key_values(kv)
        elif kind in ("SLM-HOOK", "SLM-RELOADS", "SLM-HACKBENCH"):
            setattr(out, kind[4:].lower(), key_values(rest))
        elif kind == "SLM-UNPRIV":
            label, _, rest = rest.partition(" ")
            head, _, err = rest.partition(" err=")
            out.unpriv[label] = {**key_values(head), "err": err.strip()}
    return out
