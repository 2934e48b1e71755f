"""The bottom layer every stage stands on: files written atomically, one-line command-line
errors, the Hydra entry points' edges, and booting a kernel under qemu with a cpio initramfs.

Nothing here imports a stage (data, models, evaluation, export, kernel)."""
