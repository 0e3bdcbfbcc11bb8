"""``make demo``: a real sync cycle of the bundled HR export against the bundled emulator.

Everything lives in ``./demo-run/`` (config, token, state, log, the emulator's own database), so
running the demo again continues from where the last one stopped: the second run creates nothing,
exactly like a second cycle in production. ``rm -rf demo-run`` starts over.

The demo drives the real ``syncd`` command as a subprocess; it only adds narration.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from syncd.emulator import DEFAULT_ACCOUNT_ID, DEFAULT_DOMAIN, LISTENING_PREFIX

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "config" / "sample-hr-export.csv"
TOKEN = "demo-token"


def _say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _start_emulator(work: Path) -> tuple[subprocess.Popen[str], str]:
    token_file = work / "emulator-token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o600)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "syncd.emulator",
            "--port",
            "0",
            "--token-file",
            str(token_file),
            "--state",
            str(work / "emulator.db"),
        ],
        stdout=subprocess.PIPE,
        stderr=open(work / "emulator.log", "a"),  # noqa: SIM115 - lives as long as the process
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(LISTENING_PREFIX):
        process.kill()
        raise SystemExit(f"the emulator did not start; see {work / 'emulator.log'}")
    url = line[len(LISTENING_PREFIX) :].split()[0]
    return process, url


def _write_config(work: Path, url: str) -> Path:
    token = work / "hybridbox-token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    config = work / "syncd.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            # Written by `make demo`; see config/syncd.example.yaml for every key.
            source:
              type: csv
              path: {SAMPLE}
              columns:
                anchor: employee_id
                first_name: first_name
                last_name: last_name
                email: email
                start_date: start_date
                status: status
            hybridbox:
              url: {url}
              account_id: {DEFAULT_ACCOUNT_ID}
              domain: {DEFAULT_DOMAIN}
              token_file: hybridbox-token
              batch_size: 50
            addresses:
              locale: de
            state:
              path: state/state.db
            logging:
              file: syncd.log
            """
        )
    )
    return config


def _syncd(config: Path, *args: str) -> int:
    command = [sys.executable, "-m", "syncd", "--config", str(config), *args]
    print(f"$ syncd --config {config.relative_to(Path.cwd())} {' '.join(args)}", flush=True)
    return subprocess.run(command, check=False).returncode


def main() -> int:
    work = Path("demo-run").resolve()
    work.mkdir(exist_ok=True)
    first_time = not (work / "state" / "state.db").exists()
    _say("starting the bundled Hybridbox emulator (its mailboxes persist in demo-run/emulator.db)")
    emulator, url = _start_emulator(work)
    try:
        print(f"emulator at {url}")
        config = _write_config(work, url)
        _say("checking the configuration")
        _syncd(config, "validate")
        _say("what a cycle would do (a dry run: nothing is changed)")
        _syncd(config, "plan", "--summary")
        _say("cycle 1: " + ("provisioning the new hires" if first_time else "the demo ran before"))
        code = _syncd(config, "apply")
        _say("cycle 2: nothing changed in the export, so nothing is created")
        code = _syncd(config, "apply") or code
        _say("health and totals, as monitoring sees them")
        _syncd(config, "status")
        log = work / "syncd.log"
        _say(f"the log file ({log}), last lines")
        lines = log.read_text(encoding="utf-8").splitlines()
        print("\n".join(lines[-6:]))
        _say(
            "done. Try: syncd --config demo-run/syncd.yaml failures | leavers | addresses "
            "ADDRESS; rm -rf demo-run to start over"
        )
        return code
    finally:
        emulator.terminate()
        emulator.wait(10)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
