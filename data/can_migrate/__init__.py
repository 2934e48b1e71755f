"""can_migrate_task(): the BPF record format, Chen's features (float and integer contract),
the kernel's own rule, record files, and the synthetic generator."""
