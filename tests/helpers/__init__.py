"""Shared helpers of the tests (importable as ``helpers`` through pytest's ``pythonpath = ["tests"]``)."""
