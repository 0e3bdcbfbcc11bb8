"""Reading the config file: duplicate keys, the line of every problem, and hostile files.

Every case ends in a ConfigError that says where (file, line, key) and what to do; none hangs,
recurses into a crash, or silently keeps one of two values.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from syncd.config import MAX_CONFIG_BYTES, load_config
from syncd.errors import ConfigError
from tests.config.test_config import MINIMAL, write

# MINIMAL's lines: 1 source, 2 type, 3 path, 4 columns, 5 hybridbox, 6 url, 7 account_id,
# 8 domain, 9 token_file; what a test appends starts on line 10.
APPENDED = 10
LDAP = """\
source:
  type: ldap
  url: ldaps://ldap1.example.org
  base_dn: ou=people,dc=example,dc=org
  bind_dn: cn=syncd,dc=example,dc=org
  bind_password_env: SYNCD_TEST_LDAP_PASSWORD
""" + MINIMAL[MINIMAL.index("hybridbox:") :]


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return str(caught.value)


# ------------------------------------------------------------------------------ duplicate keys


def test_a_key_given_twice_is_refused_naming_it_and_both_lines(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "  batch_size: 50\n  batch_size: 500\n")
    assert error_of(path) == (
        f"config error in {path}, line 11: at 'hybridbox.batch_size': given twice, on lines 10 "
        "and 11; YAML would silently keep only the last value, so syncd refuses the file: keep one"
    )


def test_a_second_section_does_not_replace_the_first(tmp_path: Path) -> None:
    """Issue item 21: a second `safety:` silently dropped `max_creates_per_cycle: 5`."""
    text = (
        MINIMAL + "safety:\n  max_creates_per_cycle: 5\nsync: {}\nsafety:\n  min_source_people: 1\n"
    )
    message = error_of(write(tmp_path, text))
    assert "line 13: at 'safety': given twice, on lines 10 and 13" in message
    assert "replace the whole first one" in message and "merge them into one" in message


@pytest.mark.parametrize(
    ("text", "where"),
    [
        (MINIMAL.replace("anchor: id,", "anchor: id, anchor: emp,"), "source.columns.anchor"),
        (MINIMAL + '  "batch_size": 5\n  batch_size: 6\n', "hybridbox.batch_size"),
        (
            MINIMAL + "safety: {quarantine_after: {days: 1, days: 2}}\n",
            "safety.quarantine_after.days",
        ),
    ],
    ids=["flow-mapping", "quoted-and-plain", "three-levels-down"],
)
def test_duplicates_are_found_at_any_depth_and_spelling(
    tmp_path: Path, text: str, where: str
) -> None:
    assert f"at '{where}': given twice" in error_of(write(tmp_path, text))


def test_a_yaml_merge_is_not_a_duplicate_and_the_key_written_wins(tmp_path: Path) -> None:
    text = MINIMAL + "safety:\n  quarantine_after:\n    <<: {attempts: 3, days: 2}\n    days: 5\n"
    config = load_config(write(tmp_path, text))
    assert (config.safety.quarantine_after.attempts, config.safety.quarantine_after.days) == (3, 5)


# ------------------------------------------------------------------------------ lines and hints


def test_a_bad_value_names_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path, MINIMAL + "safety:\n  min_source_people: 1\n  max_creates_per_cycle: -1\n"
    )
    assert error_of(path) == (
        f"config error in {path}, line 12: at 'safety.max_creates_per_cycle': Input should be "
        "greater than or equal to 0"
    )


def test_a_missing_key_is_reported_at_its_section(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("  domain: example.com\n", ""))
    assert error_of(path) == (
        f"config error in {path}, line 5: at 'hybridbox.domain': required key is missing"
    )


def test_a_list_item_is_reported_at_its_own_line(tmp_path: Path) -> None:
    text = LDAP.replace(
        "  url: ldaps://ldap1.example.org\n", "  url:\n    - ldaps://ldap1\n    - ftp://x\n"
    )
    assert "line 5: at 'source.url[1]': must look like ldap://host" in error_of(
        write(tmp_path, text)
    )


@pytest.mark.parametrize(
    ("appended", "hint"),
    [
        ("sync:\n  update_name: true\n", "did you mean 'update_names'?"),
        ("safty:\n  min_source_people: 1\n", "did you mean 'safety'?"),
        ("sync:\n  max_creates_per_cycle: 3\n", "it is a key of 'safety'"),
    ],
    ids=["typo", "typo-of-a-section", "wrong-section"],
)
def test_an_unknown_key_suggests_the_known_one(tmp_path: Path, appended: str, hint: str) -> None:
    message = error_of(write(tmp_path, MINIMAL + appended))
    assert "unknown key; " + hint in message and "line 1" in message


def test_an_unknown_ldap_key_in_a_csv_source_gets_no_misleading_hint(tmp_path: Path) -> None:
    text = MINIMAL.replace("  path: people.csv\n", "  path: people.csv\n  bind_dn: cn=x\n")
    message = error_of(write(tmp_path, text))
    assert "at 'source.bind_dn': unknown key (see" in message


@pytest.mark.parametrize("key", ["origin", "key_lines"])
def test_what_syncd_fills_in_itself_is_not_a_key(tmp_path: Path, key: str) -> None:
    path = write(tmp_path, MINIMAL + f"{key}: /elsewhere.yaml\n")
    assert error_of(path) == f"config error in {path}, line 10: at '{key}': unknown key"


# ------------------------------------------------------------------------------ hostile files


def test_ten_thousand_nested_brackets_are_a_yaml_error(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "[" * 10_000 + "\n"))
    assert "nested hundreds of levels deep" in message


def test_a_hundred_levels_of_nesting_are_refused_with_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "sync:\n  date_format: " + "[" * 100 + "]" * 100 + "\n")
    assert "line 11: YAML nested more than 20 levels deep" in error_of(path)


def test_an_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for name, previous in zip("bcdefghi", "abcdefgh", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    started = time.monotonic()
    message = error_of(write(tmp_path, "\n".join(lines) + "\n"))
    assert "more than 50000 values once its YAML aliases" in message
    assert time.monotonic() - started < 10


def test_a_self_referencing_alias_is_refused(tmp_path: Path) -> None:
    assert "nested more than" in error_of(write(tmp_path, "a: &a [*a]\n"))


def test_a_file_over_the_limit_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "#" * MAX_CONFIG_BYTES + "\n")
    assert error_of(path) == (
        f"config error in {path}: the file is larger than {MAX_CONFIG_BYTES // 1024} KiB; a "
        "syncd config is a few KiB (is this the right file?)"
    )


def test_a_file_just_under_the_limit_loads(tmp_path: Path) -> None:
    filler = "#" * (MAX_CONFIG_BYTES - len(MINIMAL) - 1) + "\n"
    assert load_config(write(tmp_path, MINIMAL + filler)).hybridbox.domain == "example.com"


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("directory", "it is a directory; give the YAML file itself"),
        ("device", "it is not a regular file (a FIFO, device or socket)"),
    ],
)
def test_a_config_that_is_not_a_regular_file_is_refused(
    tmp_path: Path, kind: str, expected: str
) -> None:
    path = tmp_path if kind == "directory" else Path("/dev/zero")
    assert error_of(path).startswith(f"config error in {path}: {expected}")


def test_a_fifo_as_config_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "syncd.yaml"
    os.mkfifo(fifo)
    outcome: list[str] = []
    # In a thread, so that a regression (an open that waits for a writer) fails, not hangs.
    reader = threading.Thread(target=lambda: outcome.append(error_of(fifo)), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "loading a FIFO waited for a writer"
    assert "it is not a regular file (a FIFO, device or socket)" in outcome[0]


def test_a_fifo_as_log_file_is_refused_rather_than_waited_on(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "syncd.log")
    path = write(tmp_path, MINIMAL + "logging: {file: syncd.log}\n")
    assert f"line 10: at 'logging.file': {tmp_path / 'syncd.log'} is a named pipe" in error_of(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the file is empty; it must be a YAML mapping of sections"),
        ("# nothing but a comment\n", "the file is empty"),
        ("- source\n- hybridbox\n", "the file is a YAML list; it must be a YAML mapping"),
        ("just words\n", "the file is a single value (str)"),
        ("a: 1\n---\nb: 2\n", "line 2, column 1: YAML syntax: expected a single document"),
        ("source:\n\ttype: csv\n", "line 2, column 1: YAML syntax: found character '\\t'"),
        ("x: !!python/object/apply:os.system [id]\n", "could not determine a constructor"),
        ("1: a\n", "at '(top level)': YAML reads the key 1 as int, not as a name"),
    ],
    ids=["empty", "comments", "list", "scalar", "two-documents", "tab", "python-tag", "int-key"],
)
def test_a_file_that_is_no_config_says_what_it_is(tmp_path: Path, text: str, expected: str) -> None:
    assert expected in error_of(write(tmp_path, text))


def test_a_tab_gets_a_word_about_tabs(tmp_path: Path) -> None:
    assert "never tabs" in error_of(write(tmp_path, "source:\n\ttype: csv\n"))


def test_a_non_utf8_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "syncd.yaml"
    path.write_bytes(MINIMAL.encode() + "sync:\n  date_format: '%d.%m.%Y \xe4'\n".encode("latin-1"))
    assert error_of(path) == (
        f"config error in {path}, line 11: the file is not UTF-8 text (save it as UTF-8)"
    )


def test_a_nul_character_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "sync:\n  update_names: tr\x00ue\n")
    assert "line 11: YAML does not allow the non-printable character #x00" in error_of(path)


def test_a_byte_order_mark_is_fine(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "\ufeff" + MINIMAL)).hybridbox.domain == "example.com"


# ------------------------------------------------------------------------------ bounds


@pytest.mark.parametrize(
    ("appended", "where"),
    [
        ("sync: {provision_days_before: 3651}", "sync.provision_days_before"),
        ("sync: {provision_days_before: 99999999999999999999999}", "sync.provision_days_before"),
        ("sync: {leaver_after_missing: 99999999999999999999}", "sync.leaver_after_missing"),
        ("addresses: {reserve_days: 1000000}", "addresses.reserve_days"),
        ("schedule: {every: 99999999999999999999d}", "schedule.every"),
        ("schedule: {every: .inf}", "schedule.every"),
        ("schedule: {every: .nan}", "schedule.every"),
        ("health: {max_age: -5}", "health.max_age"),
        ("  timeout_s: .inf", "hybridbox.timeout_s"),
        ("  timeout_s: 1.0e+300", "hybridbox.timeout_s"),
        ("  retry_budget_s: 1.0e+12", "hybridbox.retry_budget_s"),
        ("  max_retry_after_s: .nan", "hybridbox.max_retry_after_s"),
    ],
)
def test_huge_numbers_are_config_errors_not_crashes(
    tmp_path: Path, appended: str, where: str
) -> None:
    assert f"line {APPENDED}: at '{where}'" in error_of(write(tmp_path, MINIMAL + appended + "\n"))


def test_the_largest_sane_values_load(tmp_path: Path) -> None:
    text = MINIMAL + (
        "  timeout_s: 3600\nsync: {provision_days_before: 3650}\n"
        "addresses: {reserve_days: 36500}\nhealth: {max_age: 3650d}\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.sync.provision_days_before == 3650
    assert config.addresses.reserve_days == 36500
