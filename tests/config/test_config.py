"""The config schema: the example stays valid, and every mistake names its key."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from syncd.config import CsvSource, load_config
from syncd.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "7c0e6e1a-2f4b-4c8e-9d3a-5b1f0e2d4c6a"

MINIMAL = f"""\
source:
  type: csv
  path: people.csv
  columns: {{anchor: id, first_name: first, last_name: last}}
hybridbox:
  url: http://127.0.0.1:1
  account_id: {ACCOUNT}
  domain: example.com
  token_file: token
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "syncd.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_annotated_example_config_is_valid() -> None:
    config = load_config(REPO / "config" / "syncd.example.yaml")
    assert config.source.type == "csv"
    assert config.hybridbox.batch_size == 100


@pytest.mark.parametrize("name", sorted(p.name for p in (REPO / "config").glob("syncd*.yaml")))
def test_every_bundled_config_is_valid(name: str) -> None:
    config = load_config(REPO / "config" / name)
    # Each example is named after the source it shows (syncd.example.yaml: the CSV one).
    expected = "ldap" if name.endswith(("ad.yaml", "ldap.yaml")) else "csv"
    assert config.source.type == expected
    assert config.origin == REPO / "config" / name


def test_defaults_and_relative_paths(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert isinstance(config.source, CsvSource)
    assert config.source.path == tmp_path.resolve() / "people.csv"
    assert config.hybridbox.token_file == tmp_path.resolve() / "token"
    assert config.addresses.templates == ["{first}.{last}", "{first}.{last}{n}"]
    assert config.schedule.every == timedelta(minutes=15)
    assert config.safety.max_creates_per_cycle == 500


def test_unknown_key_names_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "  batch_sise: 50\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"config error in {path}, line 10: at 'hybridbox.batch_sise': unknown key; did you "
        "mean 'batch_size'? (see config/syncd.example.yaml)"
    )


def test_bad_value_names_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "  batch_size: 0\n")
    with pytest.raises(ConfigError, match=r"at 'hybridbox.batch_size': .*greater than"):
        load_config(path)


def test_yaml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "safety:\n  max_creates_per_cycle: [1\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+: YAML syntax"):
        load_config(path)


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_exactly_one_token_reference(tmp_path: Path) -> None:
    both = MINIMAL + "  token_env: HB_TOKEN\n"
    with pytest.raises(ConfigError, match="give only one of token_file, token_env"):
        load_config(write(tmp_path, both))


def test_secret_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    token.chmod(0o644)
    with pytest.raises(ConfigError) as caught:
        config.hybridbox.token()
    assert "readable by every user" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    token.chmod(0o600)
    assert config.hybridbox.token() == "s3cret"


def test_token_from_credentials_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = MINIMAL.replace("token_file: token", "token_credential: hybridbox-token")
    config = load_config(write(tmp_path, text))
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match="CREDENTIALS_DIRECTORY is not set"):
        config.hybridbox.token()
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "hybridbox-token").write_text("abc")
    os.chmod(creds / "hybridbox-token", 0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert config.hybridbox.token() == "abc"


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("schedule: {every: 15m, cron: '*/5 * * * *'}", "exactly one of"),
        ("schedule: {cron: '*/5 * *'}", "5 fields"),
        ("schedule: {every: 2s}", "at least 10s"),
    ],
)
def test_schedule_is_checked(tmp_path: Path, schedule: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, MINIMAL + schedule + "\n"))


def test_durations_accept_units(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, MINIMAL + "schedule: {every: 2h}\nhealth: {max_age: 1d}\n")
    )
    assert config.schedule.every == timedelta(hours=2)
    assert config.health.max_age == timedelta(days=1)
