"""Collection: real scheduler traces from a kernel while named workloads run.

    python -m data.collect WORKLOAD... --out DIR          # host ftrace (tracefs)
    python -m data.collect --bcc WORKLOAD... --out DIR    # + can_migrate_task BPF records
    python -m data.collect --vm WORKLOAD... --out DIR     # inside a qemu guest kernel

command.py (the CLI and the host ftrace run), tracefs.py, workloads.py (the registry),
runs.py (run folders, the trace streamer, foreign load), bcc/ (the BPF recorder), guest/
(the same inside a booted guest)."""
