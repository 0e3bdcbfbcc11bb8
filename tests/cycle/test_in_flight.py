"""Several bulk requests in flight (``hybridbox.max_in_flight``), against the emulator over HTTP.

What the admin sees: how many requests the emulator served at once, the ``hybridbox.in_flight`` and
``hybridbox.pace`` lines when Hybridbox asks syncd to slow down, the summary's ``in_flight_max``,
and, whatever happened, one mailbox per person. The kill -9 cases are in test_exactly_once.py,
the flow control's arithmetic in tests/hybridbox/test_flow.py.
"""

from __future__ import annotations

import math
import re
from collections import Counter

from tests.support.site import Row, Site, people

N = 40
BATCH = 5
BULK_REQUESTS = math.ceil(N / BATCH)


def fields(line: str) -> dict[str, str]:
    return dict(re.findall(r"(\w+)=(\S+)", line))


def assert_one_mailbox_each(site: Site, n: int = N) -> None:
    remote = site.emulator.mailboxes()
    assert len(remote) == n
    assert len({m["primary_email"] for m in remote}) == n
    assert Counter(site.mailbox_states().values()) == {"created": n}
    assert site.emulator.stats()["bulk"]["items"] == n  # nobody was sent twice


def test_four_batches_are_on_the_wire_at_once_by_default(site: Site) -> None:
    site.configure(hybridbox={"batch_size": BATCH})
    site.emulator.set_faults(latency_ms=200, fault_routes=["bulk_create"])
    site.write_people(people(N))

    result = site.syncd("apply")

    assert result.returncode == 0, result.stderr
    stats = site.emulator.stats()
    assert stats["concurrency"]["max_in_service"] == 4
    assert stats["bulk"]["requests"] == BULK_REQUESTS  # exactly ceil(N / batch) when all is well
    assert_one_mailbox_each(site)
    (summary,) = site.log_events("cycle.summary")
    assert fields(summary)["in_flight_max"] == "4"
    assert site.log_events("hybridbox.in_flight") == []  # nothing asked it to slow down


def test_max_in_flight_1_sends_one_request_after_another(site: Site) -> None:
    site.configure(hybridbox={"batch_size": BATCH, "max_in_flight": 1})
    site.emulator.set_faults(latency_ms=50, fault_routes=["bulk_create"])
    site.write_people(people(N))

    result = site.syncd("apply")

    assert result.returncode == 0, result.stderr
    assert site.emulator.stats()["concurrency"]["max_in_service"] == 1
    assert fields(site.log_events("cycle.summary")[0])["in_flight_max"] == "1"
    assert_one_mailbox_each(site)


def test_a_server_that_serves_two_at_once_halves_the_window(site: Site) -> None:
    site.configure(hybridbox={"batch_size": BATCH})
    site.emulator.set_faults(
        max_concurrent=2, latency_ms=100, retry_after=1, fault_routes=["bulk_create"]
    )
    site.write_people(people(N))

    result = site.syncd("apply")

    assert result.returncode == 0, result.stderr
    changes = [fields(line) for line in site.log_events("hybridbox.in_flight")]
    assert changes[0] == {**changes[0], "from": "4", "to": "2", "reason": "503"}
    assert site.emulator.stats()["bulk"]["requests"] == BULK_REQUESTS  # a 503 is sent again
    assert_one_mailbox_each(site)


def test_a_rate_limit_is_learned_and_429s_stay_rare(site: Site) -> None:
    # 3 requests a second; 24 bulk requests of 2 people: about 8 s at that rate.
    n = 48
    site.configure(hybridbox={"batch_size": 2, "max_retry_after_s": 5})
    site.emulator.set_faults(rate_limit=3, fault_routes=["bulk_create"])
    site.write_people(people(n))

    result = site.syncd("apply")

    assert result.returncode == 0, result.stderr
    assert_one_mailbox_each(site, n)
    limited = site.emulator.stats()["requests"]["by_status"].get("429", 0)
    assert 1 <= limited <= 5  # learned from the first two; the rest paced below the limit
    paces = [fields(line) for line in site.log_events("hybridbox.pace")]
    assert paces and paces[0]["reason"] == "429"
    # What the server accepted between two 429s: near its 3/s, never above what it allowed by
    # much; lower when a busy machine made syncd itself slower (seen: 1.99).
    assert 1.0 <= float(paces[0]["rate_per_s"]) <= 4.0
    assert any(fields(line)["reason"] == "429" for line in site.log_events("hybridbox.in_flight"))


def test_an_announced_rate_limit_is_followed_without_429s(site: Site) -> None:
    n = 30
    site.configure(hybridbox={"batch_size": 2})
    site.emulator.set_faults(rate_limit=10, rate_limit_headers=True, fault_routes=["bulk_create"])
    site.write_people(people(n))

    result = site.syncd("apply")

    assert result.returncode == 0, result.stderr
    assert_one_mailbox_each(site, n)
    assert site.emulator.stats()["requests"]["by_status"].get("429", 0) == 0
    (pace,) = site.log_events("hybridbox.pace")
    assert fields(pace) == {**fields(pace), "rate_per_s": "10.00", "reason": "announced"}


def test_namesakes_in_batches_in_flight_together_get_distinct_addresses(site: Site) -> None:
    # Twelve people called Anna Berg, three to a batch: four batches on the wire at once, each
    # address chosen before any answer came back.
    site.configure(hybridbox={"batch_size": 3})
    site.emulator.set_faults(latency_ms=100, fault_routes=["bulk_create"])
    site.write_people(Row(f"E{i:03d}", "Anna", "Berg") for i in range(12))

    result = site.syncd("apply")

    assert result.returncode == 0, result.stderr
    assert site.emulator.stats()["concurrency"]["max_in_service"] == 4
    assert_one_mailbox_each(site, 12)
    parts = sorted(site.addresses_of().values())
    assert len(set(parts)) == 12 and "anna.berg" in parts
