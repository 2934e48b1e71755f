"""Collection inside a booted guest kernel (qemu TCG), for hosts whose kernel lacks kprobes.

    python -m data.collect --vm WORKLOAD... --out DIR [--runs N] [--seconds S] [--smp 4 | --topology 2x2x2]

Pieces: init.sh (the guest's /init: ftrace + the can_migrate loader around each workload,
results written to a 9p share), workloads.c (the built-in workloads as a static program: the
guest has no Python), collect.py (build, boot, turn the share into runs in the host layout),
topology.py (the guest's view of its NUMA/SMT topology and sched domains, for meta.json).
Booting and the cpio writer (programs with their libraries, kernel modules with their
dependencies) are plumbing/qemu.py and plumbing/initramfs.py, shared with kernel/.
"""
