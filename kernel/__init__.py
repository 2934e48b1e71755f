"""schedlearn kernel side: module build, blob tool, VM harness (see kernel/README.md)."""
