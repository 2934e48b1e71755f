"""qemu boot for the kernel tests: the code lives on the collector floor (data/guest/qemu.py),
where the guest collector uses it too."""
from data.guest.qemu import QEMU, Boot, boot, find_vmlinuz  # noqa: F401
