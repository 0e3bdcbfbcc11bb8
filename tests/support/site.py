"""A syncd installation in a temp dir: config, HR export, token, state, and the CLI as a subprocess.

``Site`` points syncd at a running emulator. Tests write the HR export with ``write_people``,
run ``site.syncd("apply")`` (a real ``python -m syncd`` process, as cron or systemd would run it)
and look at the outcome through the exit code, the output, the log file, the state database and
the emulator's admin API.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from tests.support.emulator import RunningEmulator

REPO_ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ["employee_id", "first_name", "last_name", "email", "start_date", "status", "Department"]
# The domains of the three-domain sites (``domains_site``): people of the Research or Labs
# department get their mailbox in labs.example.com, Vertrieb in example.de, everyone else in
# example.com. The rules as README shows them, on a Department column.
DOMAINS = ("example.com", "labs.example.com", "example.de")
DOMAIN_RULES = [
    {"domain": "labs.example.com", "when": {"department": ["Research", "Labs"]}},
    {"domain": "example.de", "when": {"department": ["Vertrieb"]}},
]


@dataclass
class Row:
    anchor: str
    first: str
    last: str
    email: str = ""
    start: str = ""
    status: str = "active"
    department: str = ""

    def cells(self) -> list[str]:
        return [
            self.anchor, self.first, self.last, self.email, self.start, self.status,
            self.department,
        ]  # fmt: skip


def people(n: int, prefix: str = "E") -> list[Row]:
    """``n`` people with distinct, plain names (so every address is predictable)."""
    return [Row(f"{prefix}{i:05d}", f"First{i}", f"Last{i}") for i in range(1, n + 1)]


def log_field(line: str, name: str) -> str:
    """The value of ``name=`` on a log line (up to the next space)."""
    match = re.search(rf"\b{name}=(\S+)", line)
    assert match is not None, (name, line)
    return match[1]


class Site:
    def __init__(self, root: Path, emulator: RunningEmulator) -> None:
        self.root = root
        self.emulator = emulator
        self.csv_path = root / "hr.csv"
        self.config_path = root / "syncd.yaml"
        self.state_path = root / "state" / "state.db"
        self.log_path = root / "syncd.log"
        self.settings: dict[str, Any] = {
            "source": {
                "type": "csv",
                "path": str(self.csv_path),
                "columns": {
                    "anchor": "employee_id",
                    "first_name": "first_name",
                    "last_name": "last_name",
                    "email": "email",
                    "start_date": "start_date",
                    "status": "status",
                },
            },
            "hybridbox": {
                "url": emulator.url,
                "account_id": emulator.account_id,
                "domain": emulator.domain,
                "token_file": str(emulator.token_file),
                "batch_size": 10,
                "timeout_s": 5,
                "max_retry_after_s": 2,
                "retry_budget_s": 30,
            },
            "state": {"path": str(self.state_path)},
            "logging": {"file": str(self.log_path)},
            "safety": {"max_creates_per_cycle": 1000, "max_creates_percent": 100_000},
        }
        self.write_config()

    # ------------------------------------------------------------------ set-up

    def configure(self, **sections: Mapping[str, Any]) -> None:
        """Merge keys into sections (``site.configure(sync={"update_names": True})``)."""
        for name, values in sections.items():
            self.settings.setdefault(name, {}).update(values)
        self.write_config()

    def route_by_department(self) -> None:
        """Read the Department column as the field ``department`` and route by DOMAIN_RULES."""
        self.settings["source"]["columns"]["fields"] = {"department": "Department"}
        self.configure(hybridbox={"domains": DOMAIN_RULES})

    def write_config(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.settings, sort_keys=False))

    def write_people(self, rows: Iterable[Row]) -> None:
        with self.csv_path.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(COLUMNS)
            writer.writerows(row.cells() for row in rows)

    # ------------------------------------------------------------------ running

    def syncd(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = str(REPO_ROOT)
        full_env.update(env or {})
        return subprocess.run(
            [sys.executable, "-m", "syncd", "--config", str(self.config_path), *args],
            capture_output=True,
            text=True,
            env=full_env,
            timeout=timeout,
            check=False,
        )

    # ------------------------------------------------------------------ looking

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.state_path)
        conn.row_factory = sqlite3.Row
        return conn

    def mailbox_states(self) -> dict[str, str]:
        with self.db() as conn:
            return dict(conn.execute("SELECT anchor, state FROM mailboxes").fetchall())

    def full_addresses_of(self) -> dict[str, str]:
        """anchor → full address of every created or adopted mailbox."""
        with self.db() as conn:
            rows = conn.execute(
                "SELECT anchor, local_part || '@' || domain FROM mailboxes "
                "WHERE state IN ('created', 'adopted')"
            )
            return dict(rows.fetchall())

    def addresses_of(self) -> dict[str, str]:
        """anchor → local part of every created or adopted mailbox."""
        with self.db() as conn:
            rows = conn.execute(
                "SELECT anchor, local_part FROM mailboxes WHERE state IN ('created', 'adopted')"
            )
            return dict(rows.fetchall())

    def remote_names(self) -> list[tuple[str, str]]:
        return [(m["first_name"], m["last_name"]) for m in self.emulator.mailboxes()]

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads((self.state_path.parent / "status.json").read_text())
        return result

    def log_events(self, name: str) -> list[str]:
        if not self.log_path.exists():
            return []
        return [line for line in self.log_path.read_text().splitlines() if f" {name} " in line]
