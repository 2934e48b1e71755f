"""The closed loop: the can_migrate model at can_migrate_task() in a booted patched kernel,
A/B against CFS (`python -m kernel.ab`).

`guest` packs and boots the guest (the cached tiny kernel from kernel/tiny_kernel.py, the
module around the export, the workloads, the static `abrun` timer/sampler) and parses its
console; `report` turns the runs into ab.json, report.md and ab.png.
"""
