"""can_migrate: imitate the kernel's `can_migrate_task` verdict on bcc records (Chen et al.)."""

from __future__ import annotations

from models.tasks.migration import BinaryDecisionModule


class CanMigrateModule(BinaryDecisionModule):
    """Same loss and metrics as migration; inputs are Chen's 15 features (window 1 by default)."""

    task_name = "can_migrate"
