"""Boot Debian's 6.1 kernel under qemu (TCG) with a busybox initramfs that tests the module."""
