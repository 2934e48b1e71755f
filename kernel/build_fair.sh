#!/usr/bin/env bash
# Apply patches/0001-sched-fair-consult-learned-model.patch to Debian's
# linux-source-6.1 and compile it.
#
#   kernel/build_fair.sh [--tiny] [WORKDIR]
#
# Default: Debian's /boot/config-6.1* (else defconfig), compile kernel/sched/fair.o
# only, to prove the patch builds in the distribution's configuration.
# --tiny: a small bootable kernel (tinyconfig + SMP, modules, serial console,
# initramfs, devtmpfs, sysfs): bzImage and Module.symvers, so that the module
# can be built against the patched tree and the hook run under qemu.
# WORKDIR (default: a new temp dir, removed afterwards unless KEEP=1) receives
# the unpacked tree (~1.3 GB).  Heavy: minutes of CPU.
set -euo pipefail

tiny=0
if [ "${1:-}" = --tiny ]; then
	tiny=1
	shift
fi

here=$(cd "$(dirname "$0")" && pwd)
patch_file=$here/patches/0001-sched-fair-consult-learned-model.patch
tarball=${SRC_TAR:-/usr/src/linux-source-6.1.tar.xz}
jobs=${JOBS:-$(nproc)}

[ -r "$tarball" ] || { echo "build_fair: $tarball missing (apt-get install linux-source-6.1)" >&2; exit 2; }

work=${1:-}
if [ -z "$work" ] && [ $tiny = 1 ]; then
	echo "build_fair: --tiny needs a WORKDIR to keep the kernel in" >&2
	exit 2
fi
if [ -z "$work" ]; then
	work=$(mktemp -d /tmp/build_fair.XXXXXX)
	[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work"

echo "build_fair: unpacking $tarball into $work"
tar -xJf "$tarball" -C "$work"
cd "$work"/linux-source-6.1

echo "build_fair: checking the patch applies"
patch -p1 --dry-run --quiet < "$patch_file"
patch -p1 --quiet < "$patch_file"

if [ $tiny = 1 ]; then
	make -s tinyconfig
	# Boot and the module: SMP, modules, serial console, initramfs.
	# Workloads (hackbench, stress-ng): UNIX sockets, SysV IPC, mqueues.
	# Measuring: tracefs (ftrace events), schedstats, sched debugfs.
	# The BPF collector: kprobes, BPF syscall/JIT/events, BTF (pahole).
	# The A/B's runqueue sampler (kernel/ab/rqsample.bpf.c) reads the per-CPU
	# variable runqueues as a typed __ksym: the verifier finds its address in
	# kallsyms, which lists data symbols only with KALLSYMS_ALL.
	# Topology (kernel.ab --topology): NUMA with balancing; the ACPI ones make
	# it read the SRAT that qemu's -numa passes (without them: one node).
	scripts/config -e 64BIT -e SMP --set-val NR_CPUS 8 -e SCHED_MC -e SCHED_SMT \
		-e NUMA -e NUMA_BALANCING -e NUMA_BALANCING_DEFAULT_ENABLED \
		-e ACPI_NUMA -e X86_64_ACPI_NUMA \
		-e MODULES -e MODULE_UNLOAD -e PRINTK -e TTY -e SERIAL_8250 \
		-e SERIAL_8250_CONSOLE -e BLK_DEV_INITRD -e RD_GZIP -e DEVTMPFS \
		-e PROC_FS -e SYSFS -e BINFMT_ELF -e BINFMT_SCRIPT -e CRC32 \
		-e FUTEX -e EPOLL -e MULTIUSER -e POSIX_TIMERS -e PCI -e ACPI \
		-e SHMEM -e TMPFS -e FILE_LOCKING -e SIGNALFD -e TIMERFD -e EVENTFD \
		-d HZ_100 -d HZ_1000 -e HZ_250 -d PREEMPT_NONE -e PREEMPT_VOLUNTARY -e HIGH_RES_TIMERS -e NO_HZ_IDLE \
		-e NET -e UNIX -e SYSVIPC -e POSIX_MQUEUE -e PROC_SYSCTL -e AIO \
		-e FTRACE -e DEBUG_FS -e SCHED_DEBUG -e SCHEDSTATS -e PERF_EVENTS \
		-e KPROBES -e KPROBE_EVENTS -e BPF_SYSCALL -e BPF_JIT -e BPF_EVENTS \
		-e DEBUG_INFO -e DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT -e DEBUG_INFO_BTF \
		-d DEBUG_INFO_BTF_MODULES -d DEBUG_INFO_REDUCED -d DEBUG_INFO_SPLIT \
		-e DEBUG_KERNEL -e EXPERT -e KALLSYMS -e KALLSYMS_ALL
	make -s olddefconfig
	for opt in SMP MODULES KPROBES BPF_SYSCALL BPF_EVENTS DEBUG_INFO_BTF FTRACE SCHEDSTATS UNIX \
		SCHED_SMT NUMA NUMA_BALANCING ACPI ACPI_NUMA X86_64_ACPI_NUMA KALLSYMS_ALL PERF_EVENTS; do
		grep -q "^CONFIG_$opt=y" .config || { echo "build_fair: CONFIG_$opt did not stick" >&2; exit 1; }
	done
	echo "build_fair: make bzImage modules (tinyconfig)"
	make -j"$jobs" -s bzImage modules
	nm vmlinux | grep -E " T sched_lb_model_(register|unregister)$"
	echo "build_fair: OK $PWD/arch/x86/boot/bzImage"
	exit 0
fi

config=$(ls /boot/config-6.1.0-*-amd64 2>/dev/null | sort -V | tail -n 1 || true)
if [ -n "$config" ]; then
	echo "build_fair: config $config"
	cp "$config" .config
	# Debian's signing certificates are not part of the source package.
	scripts/config --set-str SYSTEM_TRUSTED_KEYS "" --set-str SYSTEM_REVOCATION_KEYS ""
	make -s olddefconfig
else
	echo "build_fair: config defconfig"
	make -s defconfig
fi

echo "build_fair: make kernel/sched/fair.o"
make -j"$jobs" kernel/sched/fair.o 2>&1 | tee build.log
if grep -E "fair\.c:[0-9]+:[0-9]+: (warning|error)" build.log; then
	echo "build_fair: FAIL, compiler diagnostics in fair.c" >&2
	exit 1
fi
test -s kernel/sched/fair.o
nm kernel/sched/fair.o | grep -E " T sched_lb_model_(register|unregister)$"
echo "build_fair: OK kernel/sched/fair.o ($(stat -c %s kernel/sched/fair.o) bytes)"
