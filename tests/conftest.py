"""Shared test helpers.

`require(condition, reason)` skips a test whose environment is missing (root, tracefs, a
compiler...). Under CI (`SCHEDLEARN_CI=1`, set by .ci/run) the same call fails instead, so a
CI run can never pass by skipping the tests that need the real machine.
"""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

IN_CI = os.environ.get("SCHEDLEARN_CI") == "1"


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI but missing: {reason}")
    pytest.skip(reason)


def is_root() -> bool:
    return os.geteuid() == 0
