"""Shared fixtures. The heavy lifting lives in tests/support/; fixtures here are thin wrappers."""

from __future__ import annotations
