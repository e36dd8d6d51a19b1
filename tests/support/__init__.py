"""Helpers only the tests use (the shared ones ship in `ledger.testing`)."""
