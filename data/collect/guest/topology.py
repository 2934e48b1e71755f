"""The guest's own view of its CPU topology, as topology.sh prints it in the guest (init.sh writes it to the share as topology.txt),
parsed into the plain JSON structure stored under meta.json's "topology": what the kernel made of
the -smp/-numa options, so a run says which sched domains its can_migrate calls came from. The
host collectors run the same script on the host (`local_view`): its nodes and SMT siblings, and
its sched domains and tunables where debugfs is mounted.

topology.txt lines (space separated, written once per boot):
    node N CPULIST                   /sys/devices/system/node/nodeN/cpulist
    siblings CPU CPULIST             /sys/devices/system/cpu/cpuN/topology/thread_siblings_list
    domain LEVEL name NAME           cpu0's sched domains (debugfs sched/domains in 6.1)
    domain LEVEL flags FLAG...
    numa_balancing sysctl V          /proc/sys/kernel/numa_balancing
    numa_balancing KEY V             debugfs sched/numa_balancing/KEY
    sched KEY V                      debugfs sched/KEY: migration_cost_ns, nr_migrate
"""

from __future__ import annotations

import subprocess
from pathlib import Path

# The script that writes those lines inside the guest, and where the initramfs holds it.
SCRIPT = Path(__file__).with_name("topology.sh")
GUEST_PATH = "bin/slm-topology"


def cpulist(text: str) -> list[int]:
    """The kernel's CPU list format: "0-3,8,10-11" -> [0, 1, 2, 3, 8, 10, 11]."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def _value(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def parse(text: str, spec: str | None) -> dict:
    """topology.txt -> {"spec", "nodes", "cpu_node", "siblings", "domains", "numa_balancing", "sched"}.
    cpu_node[c] is CPU c's node and siblings[c] its SMT siblings (CPU c included); nodes is None
    when the guest wrote nothing (an older init, or a boot that died first)."""
    node_cpus: dict[int, list[int]] = {}
    siblings: dict[int, list[int]] = {}
    domains: dict[int, dict] = {}
    balancing: dict[str, int | str] = {}
    sched: dict[str, int | str] = {}
    for line in text.splitlines():
        kind, _, rest = line.strip().partition(" ")
        key, _, val = rest.partition(" ")
        if kind == "node":
            node_cpus[int(key)] = cpulist(val)
        elif kind == "siblings":
            siblings[int(key)] = cpulist(val)
        elif kind == "domain":
            what, _, val = val.partition(" ")
            d = domains.setdefault(int(key), {"level": int(key), "name": None, "flags": []})
            if what == "name":
                d["name"] = val.strip()
            elif what == "flags":
                d["flags"] = val.split()
        elif kind == "numa_balancing" and key:
            balancing[key] = _value(val.strip())
        elif kind == "sched" and key:
            sched[key] = _value(val.strip())
    ncpu = max([c for cpus in node_cpus.values() for c in cpus] + list(siblings), default=-1) + 1
    cpu_node: list[int | None] = [None] * ncpu
    for node, cpus in node_cpus.items():
        for c in cpus:
            cpu_node[c] = node
    return {
        "spec": spec,
        "nodes": len(node_cpus) if node_cpus else None,
        "cpu_node": cpu_node,
        "siblings": [siblings.get(c) for c in range(ncpu)] if siblings else [],
        "domains": [domains[k] for k in sorted(domains)],
        "numa_balancing": balancing,
        "sched": sched,
    }


def local_view() -> dict:
    """This machine's view, by the same script (spec None: the host's topology is not a --topology
    spec). Parts the script cannot read here (debugfs not mounted) are simply absent."""
    try:
        text = subprocess.run(["sh", str(SCRIPT)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        text = ""
    return parse(text, None)
