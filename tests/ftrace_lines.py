"""Synthetic ftrace text lines, printed the way the kernel and trace-cmd print them.

For unit tests of formats this machine cannot produce (trace-cmd report, older kernels) and
for property tests with random task names. Synthetic lines are test inputs, not traces.
"""

from __future__ import annotations

KERNEL_BODY = {
    "sched_switch": b"prev_comm=%(prev_comm)s prev_pid=%(prev_pid)d prev_prio=%(prev_prio)d "
    b"prev_state=%(prev_state)s ==> next_comm=%(next_comm)s next_pid=%(next_pid)d "
    b"next_prio=%(next_prio)d",
    "sched_waking": b"comm=%(comm)s pid=%(pid)d prio=%(prio)d target_cpu=%(target_cpu)03d",
    "sched_wakeup": b"comm=%(comm)s pid=%(pid)d prio=%(prio)d target_cpu=%(target_cpu)03d",
    "sched_wakeup_new": b"comm=%(comm)s pid=%(pid)d prio=%(prio)d target_cpu=%(target_cpu)03d",
    "sched_migrate_task": b"comm=%(comm)s pid=%(pid)d prio=%(prio)d orig_cpu=%(orig_cpu)d dest_cpu=%(dest_cpu)d",
    "sched_process_fork": b"comm=%(parent_comm)s pid=%(parent_pid)d child_comm=%(child_comm)s child_pid=%(child_pid)d",
    "sched_process_exit": b"comm=%(comm)s pid=%(pid)d prio=%(prio)d group_dead=%(group_dead)s",
}

# libtraceevent's sched plugin, used by `trace-cmd report` for these three events.
PLUGIN_BODY = {
    "sched_switch": b"%(prev_comm)s:%(prev_pid)d [%(prev_prio)d] %(prev_state)s ==> "
    b"%(next_comm)s:%(next_pid)d [%(next_prio)d]",
    "sched_wakeup": b"%(comm)s:%(pid)d [%(prio)d] CPU:%(target_cpu)03d",
    "sched_wakeup_new": b"%(comm)s:%(pid)d [%(prio)d] CPU:%(target_cpu)03d",
}


def body(event: str, fields: dict, plugin: bool = False) -> bytes:
    values = {k.encode(): (b"true" if v else b"false") if isinstance(v, bool) else v for k, v in fields.items()}
    return (PLUGIN_BODY if plugin else KERNEL_BODY)[event] % values


def kernel_line(
    comm: bytes,
    pid: int,
    cpu: int,
    ts_ns: int,
    event: str,
    text: bytes,
    flags: bytes | None = b"d..2.",
    tgid: int | None | str = "off",
) -> bytes:
    """tracefs `trace` / `trace_pipe`: "%16s-%-7d " [tgid] "[%03d] " [flags] " %5lu.%06lu: "."""
    line = comm.rjust(16) + b"-" + str(pid).ljust(7).encode() + b" "
    if tgid != "off":
        line += b"(-------) " if tgid is None else b"(%7d) " % tgid
    line += b"[%03d] " % cpu
    if flags is not None:
        line += flags
    secs, ns = divmod(ts_ns, 10**9)
    return line + b" %5d.%06d: %s: %s" % (secs, ns // 1000, event.encode(), text)


def tracecmd_line(comm: bytes, pid: int, cpu: int, ts_ns: int, event: str, text: bytes, nsec: bool = False) -> bytes:
    """trace-cmd report: "%16s-%-5d [%03d]", " %6.1000d:", " %s: " padded to 20, the fields."""
    secs, ns = divmod(ts_ns, 10**9)
    ts = b"%d.%09d" % (secs, ns) if nsec else b"%d.%06d" % (secs, ns // 1000)
    name = event.encode()
    return (
        comm.rjust(16)
        + b"-"
        + str(pid).ljust(5).encode()
        + b" [%03d]" % cpu
        + b" "
        + ts.rjust(6)
        + b": "
        + name
        + b": "
        + b" " * max(0, 20 - len(name))
        + text
    )
