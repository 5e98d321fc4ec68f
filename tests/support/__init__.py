"""Helpers shared by the test suites (no fixtures here: those live in conftest.py)."""
