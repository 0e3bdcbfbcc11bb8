"""Helpers behind the pytest fixtures in tests/conftest.py (real servers, sample data)."""
