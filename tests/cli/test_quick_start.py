"""README's Quick start, run as written: its shell lines, the edits its comments ask for, and
every `syncd` command it shows, against the emulator. A Quick start that fails loses an admin in
the first ten minutes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.emulator import RunningEmulator
from tests.support.site import REPO_ROOT, Site, people

SYNCD_LINE = re.compile(r"^\.venv/bin/syncd (?P<args>[^#]+?)\s*(?:#.*)?$")


def quick_start_lines() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.split("#", 1)[0].strip()]


def test_the_quick_start_works_as_written(tmp_path: Path, emulator: RunningEmulator) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = {**os.environ, "HOME": str(home), "TOKEN": emulator.token, "PYTHONPATH": str(REPO_ROOT)}
    lines = quick_start_lines()
    shell, commands = lines[:2], [SYNCD_LINE.match(line) for line in lines[2:]]
    assert all(commands), lines

    for line in shell:  # install the token, copy the example config
        command = line.split("#", 1)[0].replace("config/", f"{REPO_ROOT}/config/")
        subprocess.run(["bash", "-c", command], cwd=work, env=env, check=True)
    assert (home / "hybridbox-token").read_text().strip() == emulator.token
    assert oct((home / "hybridbox-token").stat().st_mode & 0o777) == "0o600"

    # The edits the comments ask for, written as an admin would (token_file with its ~).
    (tmp_path / "site").mkdir()
    site = Site(tmp_path / "site", emulator)
    site.write_people(people(3))
    config = yaml.safe_load((work / "syncd.yaml").read_text(encoding="utf-8"))
    config["source"]["path"] = str(site.csv_path)
    config["hybridbox"].update(
        url=emulator.url, account_id=emulator.account_id, domain="example.com"
    )
    config["hybridbox"]["token_file"] = "~/hybridbox-token"
    config["state"]["path"] = "./state.db"
    config["logging"]["file"] = None
    (work / "syncd.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    for match in commands:
        assert match is not None
        args = match["args"].split()
        result = subprocess.run(
            [sys.executable, "-m", "syncd", *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    addresses = {mailbox["primary_email"] for mailbox in emulator.mailboxes()}
    assert {f"first{i}.last{i}@example.com" for i in (1, 2, 3)} <= addresses
    assert (work / "state.db").exists()
