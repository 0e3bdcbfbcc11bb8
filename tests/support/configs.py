"""A valid config for unit tests that never read a source or reach Hybridbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from syncd.config import Config, parse_config


def offline_config(
    tmp_path: Path, state_path: Path, *, hybridbox: dict[str, Any] | None = None, **sections: Any
) -> Config:
    """A CSV config in ``tmp_path`` whose Hybridbox URL goes nowhere (nothing is ever sent).

    ``hybridbox`` keys are merged into that section; other keyword arguments are whole sections
    (``addresses={...}``, ``safety={...}``).
    """
    data: dict[str, Any] = {
        "source": {
            "type": "csv",
            "path": str(tmp_path / "hr.csv"),
            "columns": {"anchor": "id", "first_name": "first", "last_name": "last"},
        },
        "hybridbox": {
            "url": "http://127.0.0.1:9",
            "account_id": "5f0c7b1e-2a4d-4c8e-9b3f-6d1a0e2c4b7a",
            "domain": "example.com",
            "token_file": str(tmp_path / "token"),
            **(hybridbox or {}),
        },
        "state": {"path": str(state_path)},
        **sections,
    }
    return parse_config(data, tmp_path / "syncd.yaml")
