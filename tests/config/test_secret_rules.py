"""The rules for secrets and URLs: what is refused, what is cleaned, and that no message repeats a
value that may be a secret (a token pasted where a file or variable name belongs, a password in a
URL)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from syncd.config import check_secrets, config_file_warnings, load_config, resolve_secret
from syncd.errors import ConfigError
from syncd.logs import redact
from tests.config.test_config import MINIMAL, write

TOKEN = "hb_live-Zx8Q2.kT9pW4vRr7"  # shaped like a real one: letters, digits, _ - .


def resolve(*, ascii_only: bool = True, **reference: object) -> str:
    given = {"file": None, "env": None, "credential": None, **reference}
    return resolve_secret("hybridbox", "token", ascii_only=ascii_only, **given)  # type: ignore[arg-type]


def secret_file(tmp_path: Path, content: bytes, mode: int = 0o600) -> Path:
    path = tmp_path / "token"
    path.write_bytes(content)
    path.chmod(mode)
    return path


def refusal(
    *, file: Path | None = None, env: str | None = None, credential: str | None = None
) -> str:
    with pytest.raises(ConfigError) as caught:
        resolve(file=file, env=env, credential=credential)
    return str(caught.value)


# ------------------------------------------------------------------------------ token bytes


@pytest.mark.parametrize(
    "content",
    [b"abc-123\n", b"abc-123\r\n", b"\xef\xbb\xbfabc-123\n", b"  abc-123 \n", b"abc-123"],
    ids=["newline", "crlf", "bom", "blanks", "bare"],
)
def test_one_line_end_a_bom_and_blanks_are_dropped(tmp_path: Path, content: bytes) -> None:
    assert resolve(file=secret_file(tmp_path, content)) == "abc-123"


@pytest.mark.parametrize(
    ("content", "rule"),
    [
        (b"first-line-secret\nsecond-line-secret\n", "has more than one line"),
        (b"first-line-secret\n\n", "has more than one line"),
        (b"first-line-secret\r\nX-Injected: second-line-secret\r\n", "has more than one line"),
        ("t\u00f8ken-secret\n".encode(), "character 2 of the token is not printable ASCII"),
        ("\u201ctoken-secret\u201d\n".encode(), "character 1 of the token is not printable ASCII"),
        (b"token secret\n", "character 6 of the token is not printable ASCII"),
        (b"token\x07secret\n", "character 6 of the token is not printable ASCII"),
        (b"\xef\xbb\xbf\r\n", "the secret is empty"),
        (b"\xff\xfesecret\n", "is not UTF-8 text"),
    ],
    ids=[
        "two-lines",
        "blank-line",
        "header",
        "non-ascii",
        "quotes",
        "space",
        "bell",
        "bom-only",
        "utf16",
    ],
)
def test_a_token_that_is_not_one_line_of_printable_ascii_is_refused_unquoted(
    tmp_path: Path, content: bytes, rule: str
) -> None:
    message = refusal(file=secret_file(tmp_path, content))
    assert "at 'hybridbox.token_file': " in message and rule in message
    assert "secret" not in message.replace("the secret", "").replace("secret file", "")


def test_a_token_from_the_environment_follows_the_same_rules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SYNCD_TEST_TOKEN", "\ufeffabc-123\r\n")
    assert resolve(env="SYNCD_TEST_TOKEN") == "abc-123"
    monkeypatch.setenv("SYNCD_TEST_TOKEN", "first-part\nsecond-part")
    message = refusal(env="SYNCD_TEST_TOKEN")
    assert "at 'hybridbox.token_env': the secret has more than one line" in message
    assert "first-part" not in message and "second-part" not in message


def test_a_password_may_be_any_printable_text_but_one_line(tmp_path: Path) -> None:
    path = secret_file(tmp_path, "pässwört mit Leerzeichen\n".encode())
    assert resolve(file=path, ascii_only=False) == "pässwört mit Leerzeichen"
    path.write_bytes(b"pass\x00word\n")
    with pytest.raises(ConfigError, match="character 5 of the secret is a control code"):
        resolve(file=path, ascii_only=False)


def test_what_is_read_is_masked_in_logs(tmp_path: Path) -> None:
    resolve(file=secret_file(tmp_path, b"masked-token-123\n"))
    assert redact("sent Bearer masked-token-123") == "sent Bearer ***"


# ------------------------------------------------------------------------------ modes and kinds


@pytest.mark.parametrize(
    ("mode", "what", "fix"),
    [
        (0o604, "readable by every user on this machine (mode 0604)", "chmod o-rwx"),
        (0o602, "writable by every user (mode 0602)", "chmod o-rwx"),
        (0o620, "writable by its group (mode 0620)", "chmod g-w"),
        (
            0o666,
            "readable by every user on this machine and writable by its group and by every user",
            "chmod g-w,o-rwx",
        ),
    ],
)
def test_a_secret_file_others_can_read_or_write_is_refused(
    tmp_path: Path, mode: int, what: str, fix: str
) -> None:
    path = secret_file(tmp_path, b"abc-123\n", mode)
    message = refusal(file=path)
    assert f"at 'hybridbox.token_file': secret file {path} is {what}" in message
    assert f"(run: {fix} {path})" in message and "abc-123" not in message


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640, 0o440])
def test_a_secret_file_its_owner_and_group_may_read_is_accepted(tmp_path: Path, mode: int) -> None:
    assert resolve(file=secret_file(tmp_path, b"abc-123\n", mode)) == "abc-123"


def test_a_directory_or_a_device_is_no_secret_file(tmp_path: Path) -> None:
    assert f"{tmp_path} is a directory" in refusal(file=tmp_path)
    assert "/dev/zero is not a regular file" in refusal(file=Path("/dev/zero"))


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "token"
    os.mkfifo(fifo, 0o600)
    outcome: list[str] = []
    reader = threading.Thread(target=lambda: outcome.append(refusal(file=fifo)), daemon=True)
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "reading a FIFO waited for a writer"
    assert "is not a regular file" in outcome[0]


def test_a_huge_secret_file_is_refused(tmp_path: Path) -> None:
    path = secret_file(tmp_path, b"a" * (64 * 1024 + 1))
    assert "larger than 64 KiB" in refusal(file=path)


# ------------------------------------------------------------------------------ pasted tokens


def test_a_token_pasted_as_token_file_is_not_repeated(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, MINIMAL.replace("token_file: token", f"token_file: {TOKEN}"))
    )
    with pytest.raises(ConfigError) as caught:
        check_secrets(config, hybridbox=True, source=False)
    message = str(caught.value)
    assert message.startswith(
        f"config error in {tmp_path / 'syncd.yaml'}, line 9: at 'hybridbox.token_file': the "
        "file it names does not exist"
    )
    assert TOKEN not in message and "Zx8Q2" not in message


@pytest.mark.parametrize("key", ["token_env", "token_credential"])
def test_a_token_pasted_as_a_name_is_refused_on_load_and_not_repeated(
    tmp_path: Path, key: str
) -> None:
    token = TOKEN if key == "token_env" else "abc/def+ghi=="  # a base64 token has a /
    path = write(tmp_path, MINIMAL.replace("token_file: token", f"{key}: '{token}'"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert f"line 9: at 'hybridbox.{key}': must be the name of" in message
    assert token not in message


def test_a_token_shaped_like_a_variable_name_is_not_repeated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("hbLiveZx8Q2kT9pW4vRr7", "AKIAIOSFODNN7EXAMPLE", "HYBRIDBOX_TOKEN"):
        monkeypatch.delenv(name, raising=False)
        config = load_config(
            write(tmp_path, MINIMAL.replace("token_file: token", f"token_env: {name}"))
        )
        with pytest.raises(ConfigError) as caught:
            check_secrets(config, hybridbox=True, source=False)
        shown = name == "HYBRIDBOX_TOKEN"  # only a conventional name is repeated
        assert (name in str(caught.value)) is shown, str(caught.value)
        assert "line 9: at 'hybridbox.token_env'" in str(caught.value)


def test_a_missing_credential_is_not_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    message = refusal(credential="hbLiveZx8Q2kT9pW4vRr7")
    assert "no credential of the name it gives is in $CREDENTIALS_DIRECTORY" in message
    assert "hbLiveZx8Q2kT9pW4vRr7" not in message


# ------------------------------------------------------------------------------ URLs


@pytest.mark.parametrize(
    "url",
    [
        "http://syncd:pa55word@127.0.0.1:8080",
        "https://pa55word@api.hybridbox.io",
        "https://u:pa55word@h",
    ],
)
def test_a_password_in_the_hybridbox_url_is_refused_unrepeated(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, MINIMAL.replace("url: http://127.0.0.1:1", f"url: '{url}'"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "line 6: at 'hybridbox.url': the URL contains a user name or password" in message
    assert "give the token through token_file, token_env or token_credential" in message
    assert "pa55word" not in message


@pytest.mark.parametrize(
    "url", ["http://api.hybridbox.io", "http://10.0.0.5:8080", "http://127.0.0.1.example.com"]
)
def test_http_to_another_machine_is_refused(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, MINIMAL.replace("url: http://127.0.0.1:1", f"url: '{url}'"))
    with pytest.raises(ConfigError, match=r"line 6: at 'hybridbox.url': http:// sends the token"):
        load_config(path)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "http://127.9.9.9",
        "http://[::1]:8080/",
        "http://localhost:8080",
        "HTTP://LOCALHOST",
        "https://hybridbox.proxy.example.org/api",
    ],
)
def test_loopback_http_and_any_https_are_accepted(tmp_path: Path, url: str) -> None:
    path = write(tmp_path, MINIMAL.replace("url: http://127.0.0.1:1", f"url: '{url}'"))
    assert load_config(path).hybridbox.url == url


def test_a_query_in_the_hybridbox_url_is_refused_unrepeated(tmp_path: Path) -> None:
    url = "https://api.hybridbox.io/?access_token=pa55word"
    path = write(tmp_path, MINIMAL.replace("url: http://127.0.0.1:1", f"url: '{url}'"))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "must not have a query" in str(caught.value)
    assert "pa55word" not in str(caught.value)


def test_a_password_in_an_ldap_url_is_refused_unrepeated(tmp_path: Path) -> None:
    ldap = (
        "source:\n  type: ldap\n  url: [ldaps://ldap1.example.org, 'ldaps://cn=admin:pa55word@ldap2']\n"
        "  base_dn: dc=example,dc=org\n"
    )
    path = write(tmp_path, ldap + MINIMAL[MINIMAL.index("hybridbox:") :])
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "line 3: at 'source.url[1]': the URL contains a user name or password" in message
    assert "pa55word" not in message


# ------------------------------------------------------------------------------ check_secrets


LDAP_SOURCE = (
    "source:\n  type: ldap\n  url: ldaps://ldap.example.org\n  base_dn: dc=example,dc=org\n"
    "  bind_dn: cn=syncd,dc=example,dc=org\n  bind_password_env: SYNCD_TEST_BIND_PW\n"
)


def test_check_secrets_reads_only_what_the_command_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, LDAP_SOURCE + MINIMAL[MINIMAL.index("hybridbox:") :])
    config = load_config(path)  # its token file does not exist, nor the variable
    monkeypatch.delenv("SYNCD_TEST_BIND_PW", raising=False)
    check_secrets(config, hybridbox=False, source=False)  # status, failures, ...: nothing read
    with pytest.raises(ConfigError, match=r"line 6: at 'source.bind_password_env': environment"):
        check_secrets(config, hybridbox=False, source=True)  # plan
    monkeypatch.setenv("SYNCD_TEST_BIND_PW", "pässwört")
    check_secrets(config, hybridbox=False, source=True)
    with pytest.raises(ConfigError, match=r"line 11: at 'hybridbox.token_file': the file"):
        check_secrets(config, hybridbox=True, source=True)  # apply
    secret_file(tmp_path, b"abc-123\n")
    check_secrets(config, hybridbox=True, source=True)


# ------------------------------------------------------------------------------ the config file


def test_a_config_file_everyone_may_write_gets_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    path.chmod(0o644)
    assert config_file_warnings(load_config(path)) == []
    path.chmod(0o666)
    assert config_file_warnings(load_config(path)) == [
        f"config file {path} is writable by every user on this machine (mode 0666): any of them "
        "can change which domain syncd provisions and which token it sends; run: chmod o-w "
        f"{path}"
    ]
