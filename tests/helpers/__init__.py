"""Test helpers: plain functions and classes (no fixtures: those are all in tests/conftest.py)."""
