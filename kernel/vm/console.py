"""Parse the SLM-* marker lines that vm/init.sh prints on the serial console."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from kernel.push_model import parse_status

SELFTEST = re.compile(r"schedlearn: selftest (PASS|FAIL) (\d+)/(\d+) vectors, (\d+) ns/forward")
# Kernel trouble that must never appear, whatever the markers say.
TROUBLE = re.compile(r"BUG:|Oops|WARNING:|Call Trace|Kernel panic|general protection")


@dataclass
class Console:
    insmod_rc: int | None = None
    rmmod_rc: int | None = None
    selftest: tuple[str, int, int, int] | None = None  # verdict, passed, total, ns/forward
    queries: dict[str, dict] = field(default_factory=dict)  # tag -> status fields
    pushes: dict[str, int] = field(default_factory=dict)  # label -> cat's exit status
    dmesg: list[str] = field(default_factory=list)
    uptime: dict[str, float] = field(default_factory=dict)  # BOOT/DONE -> guest seconds
    trouble: list[str] = field(default_factory=list)
    done: bool = False


def parse(text: str) -> Console:
    out, query = Console(), None
    for line in text.replace("\r", "").splitlines():
        if TROUBLE.search(line):
            out.trouble.append(line)
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
    return out
