"""What an admin sees, through a real `syncd` process, when the config or a secret is wrong or
unsafe: exit 78 with one clear line (file, line, key, what to do), never a traceback, never the
secret, and nothing sent or stored."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.site import REPO_ROOT, Site, people

EX_CONFIG = 78


def own_token(site: Site, tmp_path: Path, mode: int = 0o600, content: str | None = None) -> Path:
    """A copy of the emulator's token for this test (the emulator's own file is shared)."""
    path = tmp_path / "my-token"
    path.write_text(content if content is not None else site.emulator.token + "\n")
    path.chmod(mode)
    site.configure(hybridbox={"token_file": str(path)})
    return path


def use_reference(site: Site, key: str, value: str) -> None:
    """Give the token as ``key`` (token_env, token_credential) instead of token_file."""
    site.settings["hybridbox"].pop("token_file")
    site.configure(hybridbox={key: value})


def refused(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == EX_CONFIG, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr


def log_text(site: Site) -> str:
    return site.log_path.read_text() if site.log_path.exists() else ""


# ------------------------------------------------------------------------------ item 2 and 21


def test_a_duplicate_key_exits_78_naming_the_key_and_both_lines(site: Site) -> None:
    site.write_people(people(1))
    text = site.config_path.read_text().replace(
        "  batch_size: 10\n", "  batch_size: 50\n  batch_size: 500\n"
    )
    site.config_path.write_text(text)
    lines = text.splitlines()
    first, second = (n for n, line in enumerate(lines, start=1) if "batch_size" in line)
    stderr = refused(site.syncd("apply"))
    assert (
        f"line {second}: at 'hybridbox.batch_size': given twice, on lines {first} and {second}"
        in stderr
    )
    assert site.emulator.mailboxes() == []


def test_a_second_safety_section_creates_nothing(site: Site) -> None:
    """Item 21: the admin's `max_creates_per_cycle: 5` must not be dropped by a second section."""
    site.write_people(people(20))
    site.settings.pop("safety")
    site.write_config()
    with site.config_path.open("a") as config:
        config.write("safety:\n  max_creates_per_cycle: 5\nsafety:\n  min_source_people: 1\n")
    stderr = refused(site.syncd("apply"))
    assert "at 'safety': given twice" in stderr and "merge them into one" in stderr
    assert site.emulator.mailboxes() == [] and not site.state_path.exists()


def test_an_unknown_key_suggests_the_known_one_with_its_line(site: Site) -> None:
    site.configure(sync={"update_name": True})
    stderr = refused(site.syncd("plan"))
    line = next(
        n for n, t in enumerate(site.config_path.read_text().splitlines(), 1) if "update_name" in t
    )
    assert (
        f"line {line}: at 'sync.update_name': unknown key; did you mean 'update_names'?" in stderr
    )


# ------------------------------------------------------------------------------ item 3


def test_apply_with_nobody_new_still_refuses_a_token_everyone_can_read(
    site: Site, tmp_path: Path
) -> None:
    site.write_people(people(2))
    token = own_token(site, tmp_path)
    assert site.syncd("apply").returncode == 0  # created both and checked the token
    token.chmod(0o644)
    site.emulator.reset(mailboxes=False)
    stderr = refused(site.syncd("apply"))  # nothing to send, check not due: no contact at all
    assert f"at 'hybridbox.token_file': secret file {token} is readable by every user" in stderr
    assert f"(run: chmod o-rwx {token})" in stderr
    assert site.emulator.stats()["requests"]["total"] == 0
    assert "command.failed" in log_text(site) and "readable by every user" in log_text(site)


@pytest.mark.parametrize(
    "args", [("validate", "--offline"), ("apply",), ("adopt", "--dry-run"), ("run",)]
)
def test_every_command_that_uses_the_token_checks_it_first(
    site: Site, tmp_path: Path, args: tuple[str, ...]
) -> None:
    site.write_people(people(1))
    own_token(site, tmp_path, mode=0o604)
    stderr = refused(site.syncd(*args, timeout=60))
    # With the file and line: said by the check at the start, not by a later use of the token.
    assert f"config error in {site.config_path}, line " in stderr
    assert "at 'hybridbox.token_file'" in stderr and "readable by every user" in stderr
    assert site.emulator.stats()["requests"]["total"] == 0


@pytest.mark.parametrize("args", [("plan",), ("status",), ("failures",), ("leavers",)])
def test_commands_that_do_not_use_the_token_do_not_need_it(
    site: Site, tmp_path: Path, args: tuple[str, ...]
) -> None:
    site.write_people(people(1))
    assert site.syncd("apply").returncode == 0
    own_token(site, tmp_path, mode=0o604)
    result = site.syncd(*args)
    assert result.returncode == 0, result.stderr


def test_plan_checks_the_ldap_bind_password(site: Site, tmp_path: Path) -> None:
    site.settings["source"] = {
        "type": "ldap",
        "url": "ldap://127.0.0.1:9",
        "base_dn": "dc=example,dc=org",
        "bind_dn": "cn=syncd,dc=example,dc=org",
        "bind_password_env": "SYNCD_TEST_UNSET_PASSWORD",
    }
    site.write_config()
    env = {k: v for k, v in os.environ.items() if k != "SYNCD_TEST_UNSET_PASSWORD"}
    stderr = refused(site.syncd("plan", env=env))
    assert f"config error in {site.config_path}, line 6: at 'source.bind_password_env': " in stderr
    assert "environment variable SYNCD_TEST_UNSET_PASSWORD is not set" in stderr


# ------------------------------------------------------------------------------ item 25


@pytest.mark.parametrize("key", ["token_file", "token_env", "token_credential"])
def test_a_token_pasted_in_place_of_a_name_is_never_echoed(
    site: Site, tmp_path: Path, key: str
) -> None:
    site.write_people(people(1))
    token = site.emulator.token
    use_reference(site, key, token)
    stderr = refused(site.syncd("apply", env={"CREDENTIALS_DIRECTORY": str(tmp_path)}))
    assert f"at 'hybridbox.{key}'" in stderr
    assert token not in stderr and token not in log_text(site)


def test_a_token_file_with_a_second_line_is_never_sent_nor_stored(
    site: Site, tmp_path: Path
) -> None:
    site.write_people(people(1))
    own_token(site, tmp_path, content=site.emulator.token + "\nX-Evil: second-line-secret\n")
    stderr = refused(site.syncd("apply"))
    assert "at 'hybridbox.token_file': the secret has more than one line" in stderr
    assert "second-line-secret" not in stderr + log_text(site)
    assert site.emulator.token not in stderr + log_text(site)
    assert site.emulator.stats()["requests"]["total"] == 0
    assert not site.state_path.exists()  # no runs row, no status.json


def test_a_token_with_a_bom_and_crlf_works(site: Site, tmp_path: Path) -> None:
    site.write_people(people(1))
    own_token(site, tmp_path, content="\ufeff" + site.emulator.token + "\r\n")
    result = site.syncd("apply")
    assert result.returncode == 0, result.stderr
    assert len(site.emulator.mailboxes()) == 1


def test_a_non_ascii_token_exits_78_without_it(site: Site, tmp_path: Path) -> None:
    site.write_people(people(1))
    own_token(site, tmp_path, content="\u201c" + site.emulator.token + "\u201d\n")
    stderr = refused(site.syncd("validate"))
    assert "character 1 of the token is not printable ASCII" in stderr
    assert site.emulator.token not in stderr


def test_a_password_in_the_url_is_refused_and_never_printed(site: Site) -> None:
    url = site.emulator.url.replace("http://", "http://syncd:pa55word@")
    site.configure(hybridbox={"url": url})
    stderr = refused(site.syncd("validate"))
    assert "at 'hybridbox.url': the URL contains a user name or password" in stderr
    assert "pa55word" not in stderr and "pa55word" not in log_text(site)


# ------------------------------------------------------------------------------ item 26


def test_http_to_another_host_is_refused(site: Site) -> None:
    site.configure(hybridbox={"url": "http://api.hybridbox.io"})
    stderr = refused(site.syncd("validate", "--offline"))
    assert "at 'hybridbox.url': http:// sends the token in clear text" in stderr


# ------------------------------------------------------------------------------ item 27


@pytest.mark.parametrize(("mode", "fix"), [(0o602, "o-rwx"), (0o620, "g-w"), (0o666, "g-w,o-rwx")])
def test_a_token_file_others_may_write_is_refused(
    site: Site, tmp_path: Path, mode: int, fix: str
) -> None:
    token = own_token(site, tmp_path, mode=mode)
    stderr = refused(site.syncd("validate", "--offline"))
    assert f"(mode {mode:04o})" in stderr and f"(run: chmod {fix} {token})" in stderr


def test_a_config_everyone_may_write_is_warned_about_not_refused(site: Site) -> None:
    site.write_people(people(1))
    site.config_path.chmod(0o666)
    result = site.syncd("apply")
    assert result.returncode == 0, result.stderr
    warning = (
        f"syncd: warning: config file {site.config_path} is writable by every user on this "
        f"machine (mode 0666)"
    )
    assert warning in result.stderr and f"run: chmod o-w {site.config_path}" in result.stderr
    assert len(site.log_events("config.insecure")) == 1
    site.config_path.chmod(0o644)
    assert "warning" not in site.syncd("plan").stderr


# ------------------------------------------------------------------------------ item 30


def test_deeply_nested_yaml_exits_78(site: Site) -> None:
    site.config_path.write_text("[" * 10_000 + "\n")
    assert "nested hundreds of levels deep" in refused(site.syncd("validate"))


def test_a_huge_provision_days_before_exits_78(site: Site) -> None:
    site.configure(sync={"provision_days_before": 10**30})
    assert "at 'sync.provision_days_before': Input should be less than or equal to 3650" in (
        refused(site.syncd("plan"))
    )


def test_a_huge_config_is_refused_before_it_is_parsed(site: Site) -> None:
    with site.config_path.open("a") as config:
        config.write(("# " + "x" * 98 + "\n") * 600_000)  # 60 MB
    stderr = refused(site.syncd("validate", timeout=30))
    assert "the file is larger than 256 KiB" in stderr


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_a_config_that_is_not_a_file_is_refused_at_once(tmp_path: Path, kind: str) -> None:
    path = {"fifo": tmp_path / "syncd.yaml", "directory": tmp_path, "device": Path("/dev/zero")}[
        kind
    ]
    if kind == "fifo":
        os.mkfifo(path)
    result = subprocess.run(
        [sys.executable, "-m", "syncd", "--config", str(path), "validate"],
        capture_output=True,
        text=True,
        timeout=30,  # a regression that waits for a writer, or reads /dev/zero, fails here
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    stderr = refused(result)
    assert f"config error in {path}: it is" in stderr


def test_the_quick_start_home_token_keeps_working(site: Site, tmp_path: Path) -> None:
    """Item 13: `~` in a token path still expands."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(site.emulator.token_file, home / "hybridbox-token")
    (home / "hybridbox-token").chmod(0o600)
    site.configure(hybridbox={"token_file": "~/hybridbox-token"})
    site.write_people(people(1))
    result = site.syncd("validate", env={"HOME": str(home)})
    assert result.returncode == 0, result.stderr
