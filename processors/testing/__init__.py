"""Shipped helpers that exercise the processors (for tests and scripts): the deterministic simulator.

They live here, not in ``ledger.testing``, because they need the processors and ``ledger`` never
imports ``processors``.
"""
