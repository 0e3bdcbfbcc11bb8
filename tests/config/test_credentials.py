"""Tests for syncd.credentials: each kind of secret reference, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncd.config import resolve_secret
from syncd.errors import ConfigError


def resolve(**reference: object) -> str:
    given = {"file": None, "env": None, "credential": None, **reference}
    return resolve_secret("hybridbox", "token", **given)  # type: ignore[arg-type]


def test_a_file_is_read_and_stripped(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("  s3cret\n")
    secret.chmod(0o600)
    assert resolve(file=secret) == "s3cret"


@pytest.mark.parametrize(
    ("content", "mode", "message"),
    [
        (None, 0o600, r"at 'hybridbox\.token_file': the file it names does not exist"),
        ("\n", 0o600, r"at 'hybridbox\.token_file': the secret is empty"),
        ("s3cret", 0o604, "readable by every user"),
    ],
    ids=["missing", "empty", "world-readable"],
)
def test_a_bad_file_names_the_key_and_never_the_secret(
    tmp_path: Path, content: str | None, mode: int, message: str
) -> None:
    secret = tmp_path / "token"
    if content is not None:
        secret.write_text(content)
        secret.chmod(mode)
    with pytest.raises(ConfigError, match=message) as caught:
        resolve(file=secret)
    assert "s3cret" not in str(caught.value)


def test_an_environment_variable_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCD_TEST_TOKEN", " abc \n")
    assert resolve(env="SYNCD_TEST_TOKEN") == "abc"


@pytest.mark.parametrize("value", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_an_unset_or_empty_variable_names_the_key(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("SYNCD_TEST_TOKEN", raising=False)
    else:
        monkeypatch.setenv("SYNCD_TEST_TOKEN", value)
    with pytest.raises(ConfigError, match=r"at 'hybridbox\.token_env': environment variable"):
        resolve(env="SYNCD_TEST_TOKEN")


def test_a_systemd_credential_is_read_from_its_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "hybridbox-token").write_text("xyz")
    (tmp_path / "hybridbox-token").chmod(0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert resolve(credential="hybridbox-token") == "xyz"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY is not set") as caught:
        resolve(credential="hybridbox-token")
    assert "LoadCredential=" in (caught.value.hint or "")


def test_no_reference_at_all_says_which_section() -> None:
    with pytest.raises(ConfigError, match="at 'hybridbox': no token configured"):
        resolve()
