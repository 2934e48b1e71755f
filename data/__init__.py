"""Trace collection, parsing, state replay and dataset building."""
