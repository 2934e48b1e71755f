"""Boot a kernel + initramfs under qemu with software emulation (TCG) and capture the console.

TCG only: KVM hangs on the machines this project runs on. A Topology (sockets x cores x SMT threads,
one NUMA node per socket) replaces the flat `-smp N -cpu max` guest. Used by the guest collector
(data/collect/guest/collect.py) and by the kernel module tests (kernel/vm/).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

QEMU = "qemu-system-x86_64"
# With -cpu max on an AMD host, TCG presents an AMD family for which qemu refuses SMT threads, so
# the guest builds no SMT sched domain; this Intel model gives SMT, MC and NUMA domains.
TOPOLOGY_CPU = "Skylake-Server-v1"


def find_vmlinuz(pattern: str = "/boot/vmlinuz-6.1.0-*-amd64") -> Path | None:
    """Debian's 6.1 kernel (the newest installed ABI)."""
    found = sorted(glob.glob(pattern), key=lambda p: int(p.split("-")[2]))
    return Path(found[-1]) if found else None


def kernel_release(vmlinuz: Path) -> str:
    """ "6.1.0-56-amd64" from /boot/vmlinuz-6.1.0-56-amd64."""
    return vmlinuz.name.removeprefix("vmlinuz-")


def version() -> str:
    """First line of `qemu-system-x86_64 --version`, or "unknown"."""
    try:
        r = subprocess.run([QEMU, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (r.stdout.splitlines() or ["unknown"])[0]


@dataclass(frozen=True)
class Topology:
    """A guest of `sockets` NUMA nodes (one per socket), each of `cores` cores with `threads` SMT
    threads: `2x2x2` is 8 vCPUs on 2 nodes. The flat default (no Topology) is `-smp N -cpu max`."""

    sockets: int
    cores: int
    threads: int
    # kernel command line: NUMA balancing on from boot, whatever the kernel's default
    append: ClassVar[str] = "numa_balancing=enable"

    @classmethod
    def parse(cls, spec: str) -> Topology:
        """SOCKETSxCORESxTHREADS, each >= 1; ValueError with one line otherwise."""
        m = re.fullmatch(r"([0-9]+)x([0-9]+)x([0-9]+)", spec)
        if not m or min(int(g) for g in m.groups()) < 1:
            raise ValueError(
                f"topology {spec!r}: expected SOCKETSxCORESxTHREADS, each a whole number >= 1 (e.g. 2x2x2)"
            )
        return cls(*(int(g) for g in m.groups()))

    @property
    def spec(self) -> str:
        return f"{self.sockets}x{self.cores}x{self.threads}"

    @property
    def cpus(self) -> int:
        return self.sockets * self.cores * self.threads

    def node_mem_mb(self, mem_mb: int) -> int:
        """Memory per NUMA node: mem_mb split evenly; ValueError when it does not split."""
        if mem_mb % self.sockets:
            raise ValueError(f"{mem_mb} MB of memory does not split evenly over {self.sockets} NUMA nodes")
        return mem_mb // self.sockets

    def qemu_args(self, mem_mb: int) -> list[str]:
        """-cpu, -smp, and per node a RAM backend and a -numa node holding its socket's CPUs
        (qemu numbers CPUs socket by socket, so node n has CPUs n*per..(n+1)*per-1)."""
        per_node = self.node_mem_mb(mem_mb)
        per_socket = self.cores * self.threads
        args = [
            "-cpu",
            TOPOLOGY_CPU,
            "-smp",
            f"{self.cpus},sockets={self.sockets},cores={self.cores},threads={self.threads}",
        ]
        for n in range(self.sockets):
            args += ["-object", f"memory-backend-ram,id=node{n},size={per_node}M"]
        for n in range(self.sockets):
            first = n * per_socket
            cpus = f"{first}-{first + per_socket - 1}" if per_socket > 1 else str(first)
            args += ["-numa", f"node,nodeid={n},cpus={cpus},memdev=node{n}"]
        return args


def guest_cpus(topology: str | None, smp: int | None, mem_mb: int, default_smp: int) -> tuple[int, Topology | None]:
    """(vCPUs, Topology or None) from a command line's --topology and --smp: a topology decides
    the CPUs, and an explicit --smp must agree with it. ValueError with one line otherwise."""
    if topology is None:
        return (default_smp if smp is None else smp), None
    try:
        shape = Topology.parse(topology)
        shape.node_mem_mb(mem_mb)
    except ValueError as e:
        raise ValueError(f"--topology: {e}") from None
    if smp is not None and smp != shape.cpus:
        raise ValueError(f"--smp {smp} conflicts with --topology {shape.spec} ({shape.cpus} CPUs); give one of them")
    return shape.cpus, shape


@dataclass
class Boot:
    console: str  # serial console, stdout of qemu
    stderr: str
    returncode: int | None  # None: killed at the timeout or by the ready watchdog
    seconds: float
    stalled: bool = False  # killed by boot()'s ready watchdog


def share_args(path: Path, tag: str = "out") -> list[str]:
    """qemu options that share a host folder with the guest over virtio 9p, mounted there with
    `mount -t 9p -o trans=virtio,version=9p2000.L <tag> <dir>`."""
    return [
        "-fsdev",
        f"local,id={tag},path={path},security_model=none",
        "-device",
        f"virtio-9p-pci,fsdev={tag},mount_tag={tag}",
    ]


def command(
    kernel: Path,
    initrd: Path,
    mem_mb: int = 512,
    cpus: int = 1,
    accel: str = "tcg",
    extra: list[str] | tuple[str, ...] = (),
    append: str = "",
    topology: Topology | None = None,
) -> list[str]:
    """The qemu command line; with a topology, its CPUs replace `cpus`."""
    if topology is None:
        cpu_args = ["-cpu", "max", "-smp", str(cpus)]
    else:
        cpu_args = topology.qemu_args(mem_mb)
        append = f"{append} {topology.append}".strip()
    return [
        QEMU,
        "-machine",
        "q35",
        "-accel",
        accel,
        *cpu_args,
        "-m",
        str(mem_mb),
        "-nodefaults",
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-kernel",
        str(kernel),
        "-initrd",
        str(initrd),
        *extra,
        # panic=-1 + -no-reboot: a panic (e.g. /init dying) ends qemu at once.
        "-append",
        f"console=ttyS0 panic=-1 quiet {append}".strip(),
    ]


def boot(
    kernel: Path,
    initrd: Path,
    timeout: float = 180,
    mem_mb: int = 512,
    cpus: int = 1,
    accel: str = "tcg",
    extra: list[str] | tuple[str, ...] = (),
    append: str = "",
    nice: int = 0,
    topology: Topology | None = None,
    ready: tuple[str, float] | None = None,
) -> Boot:
    """Run the guest to its end (or `timeout`). ready=(marker, seconds): a watchdog that kills a
    guest whose console has not printed `marker` within `seconds` (a boot that hung before /init;
    under TCG one now and then stops in early timer calibration) and marks the Boot stalled."""
    cmd = command(kernel, initrd, mem_mb, cpus, accel, extra, append, topology)
    if nice:
        cmd = ["nice", "-n", str(nice), *cmd]
    t0 = time.monotonic()
    out, err, seen = bytearray(), bytearray(), threading.Event()
    marker = ready[0].encode() if ready else b""

    def drain(stream, buf: bytearray, watch: bool) -> None:
        for chunk in iter(lambda: stream.read1(65536), b""):
            buf += chunk
            if watch and not seen.is_set() and marker in buf[-(len(chunk) + len(marker)) :]:
                seen.set()

    # its own process group: a kill reaches whatever holds the console pipe (a `nice` wrapper
    # execs qemu, but a test's stand-in may fork)
    p = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    readers = [
        threading.Thread(target=drain, args=(p.stdout, out, ready is not None), daemon=True),
        threading.Thread(target=drain, args=(p.stderr, err, False), daemon=True),
    ]
    rc, stalled = None, False
    try:
        for r in readers:
            r.start()
        if ready is not None:
            give_up = t0 + min(ready[1], timeout)
            while not seen.wait(0.5) and p.poll() is None and time.monotonic() < give_up:
                pass
            stalled = not seen.is_set() and p.poll() is None
        if not stalled:
            try:
                rc = p.wait(max(timeout - (time.monotonic() - t0), 0))
            except subprocess.TimeoutExpired:
                pass
    finally:  # the timeout, the watchdog, or an exception here (Ctrl-C): the guest goes
        if p.poll() is None or rc is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        for r in readers:
            r.join()
        p.stdout.close()
        p.stderr.close()
    return Boot(out.decode(errors="replace"), err.decode(errors="replace"), rc, time.monotonic() - t0, stalled)
