"""A wrong ``hybridbox.url`` ends `validate` and `apply` in seconds, with exit 69 and the key named.

Retrying with backoff is for a server that was answering and stopped: before the fix, a closed
port was retried for the whole ``hybridbox.retry_budget_s`` (five minutes by default; 30 s here),
and `validate` then promised a "next cycle" it does not have.
"""

from __future__ import annotations

import socket
import time

import pytest

from tests.support.site import Site, people

EX_UNAVAILABLE = 69
# A subprocess start, a config load and one refused connection; far below the 30 s retry budget.
FEW_SECONDS = 10.0


def closed_port() -> int:
    """A loopback port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("command", ["validate", "apply"])
@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("closed port", "(connection refused)"),
        ("https://nonexistent.invalid", "the host name nonexistent.invalid does not resolve"),
        ("https to the emulator's plain HTTP", "the TLS handshake failed"),
    ],
)
def test_a_wrong_url_fails_fast_with_69_naming_the_key(
    site: Site, command: str, url: str, says: str
) -> None:
    if url == "closed port":
        url = f"http://127.0.0.1:{closed_port()}"
    elif url.startswith("https to"):
        url = f"https://127.0.0.1:{site.emulator.port}"
    site.configure(hybridbox={"url": url})
    site.write_people(people(3))

    started = time.monotonic()
    result = site.syncd(command, timeout=60)
    took = time.monotonic() - started

    assert result.returncode == EX_UNAVAILABLE, result.stderr
    assert took < FEW_SECONDS
    # One line says what failed, where, and what to check.
    (line,) = [line for line in result.stderr.splitlines() if "cannot reach Hybridbox" in line]
    assert f"cannot reach Hybridbox at {url}: " in line
    assert says in line and "hybridbox.url" in line
    assert "Traceback" not in result.stderr
    assert site.emulator.token not in result.stderr + result.stdout
    if command == "validate":
        assert "next cycle" not in result.stderr + result.stdout
    else:
        assert site.emulator.requests() == []  # nothing was sent anywhere
