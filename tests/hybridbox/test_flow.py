"""Tests for syncd.hybridbox._flow: the window and the pace, on a fake clock.

How the client feeds it (which answers are congestion) is tested in test_client.py; that the
provisioner keeps that many batches in flight, against the emulator, in tests/cycle/.
"""

from __future__ import annotations

import pytest

from syncd.hybridbox import FlowControl
from syncd.hybridbox._flow import CLEAN_RUN, RATE_GROWTH_PER_S
from tests.support.events import collecting
from tests.support.fake_time import FakeTime

NO_HEADERS: dict[str, str] = {}


def flow_of(fake_time: FakeTime, max_in_flight: int = 4) -> FlowControl:
    return FlowControl(max_in_flight, clock=fake_time.clock, sleep=fake_time.sleep)


def test_congestion_halves_the_window_once_per_round_and_logs_it(fake_time: FakeTime) -> None:
    flow = flow_of(fake_time)
    with collecting("syncd.hybridbox") as log:
        burst = [flow.wait_turn() for _ in range(4)]
        for ticket in burst:  # four answers to one burst: one signal
            flow.congested(ticket, "503", None)
        assert flow.limit == 2
        flow.congested(flow.wait_turn(), "429", None)  # sent after the cut: a new signal
        assert flow.limit == 1
        flow.congested(flow.wait_turn(), "timeout", None)
        assert flow.limit == 1  # never below one
    changes = [
        (e.fields["from"], e.fields["to"], e.fields["reason"])
        for e in log.named("hybridbox.in_flight")
    ]
    assert changes == [(4, 2, "503"), (2, 1, "429")]


def test_odd_windows_halve_rounding_up(fake_time: FakeTime) -> None:
    flow = flow_of(fake_time, max_in_flight=3)
    flow.congested(flow.wait_turn(), "503", None)
    assert flow.limit == 2


def test_a_run_of_clean_answers_raises_the_window_up_to_the_maximum(fake_time: FakeTime) -> None:
    flow = flow_of(fake_time)
    flow.congested(flow.wait_turn(), "timeout", None)
    assert flow.limit == 2
    # Four failed once, so three waits for a doubled run.
    for _ in range(2 * CLEAN_RUN - 1):
        flow.answered(flow.wait_turn(), NO_HEADERS, clean=True)
    assert flow.limit == 2
    flow.answered(flow.wait_turn(), NO_HEADERS, clean=True)
    assert flow.limit == 3
    for _ in range(10 * CLEAN_RUN):
        flow.answered(flow.wait_turn(), NO_HEADERS, clean=True)
    assert flow.limit == 4  # not beyond max_in_flight


def test_a_server_error_breaks_the_run(fake_time: FakeTime) -> None:
    flow = flow_of(fake_time)
    flow.congested(flow.wait_turn(), "timeout", None)
    for _ in range(2 * CLEAN_RUN - 1):
        flow.answered(flow.wait_turn(), NO_HEADERS, clean=True)
    flow.answered(flow.wait_turn(), NO_HEADERS, clean=False)  # a 500
    flow.answered(flow.wait_turn(), NO_HEADERS, clean=True)
    assert flow.limit == 2


def test_a_level_that_failed_is_tried_again_only_after_longer_runs(fake_time: FakeTime) -> None:
    # A server that serves two at once: each probe of a third costs a 503 and a pause, so the
    # probes grow rarer (16, then 32, then 64 clean answers).
    flow = flow_of(fake_time, max_in_flight=3)
    flow.congested(flow.wait_turn(), "503", None)  # 3 -> 2, level 3 failed once
    runs = []
    for _ in range(3):
        clean = 0
        while flow.limit == 2:
            flow.answered(flow.wait_turn(), NO_HEADERS, clean=True)
            clean += 1
        runs.append(clean)
        flow.congested(flow.wait_turn(), "503", None)  # the probe of 3 fails
    assert runs == [2 * CLEAN_RUN, 4 * CLEAN_RUN, 8 * CLEAN_RUN]


def test_congestion_at_a_level_makes_the_levels_below_it_wait_too(fake_time: FakeTime) -> None:
    flow = flow_of(fake_time, max_in_flight=4)
    burst = [flow.wait_turn() for _ in range(4)]
    flow.congested(burst[-1], "503", None)  # 4 -> 2: four failed, so three is doubtful too
    clean = 0
    while flow.limit == 2:
        flow.answered(flow.wait_turn(), NO_HEADERS, clean=True)
        clean += 1
    assert clean == 2 * CLEAN_RUN


def test_retry_after_pauses_every_sender(fake_time: FakeTime) -> None:
    flow = flow_of(fake_time)
    started = fake_time.now
    flow.congested(flow.wait_turn(), "503", 3.0)
    flow.wait_turn()  # another thread's next request
    assert fake_time.now - started == pytest.approx(3.0)
    flow.wait_turn()
    assert fake_time.now - started == pytest.approx(3.0)  # the pause is over


def test_a_429_paces_at_what_the_server_accepted_between_two_429s(fake_time: FakeTime) -> None:
    flow = flow_of(fake_time, max_in_flight=1)
    for _ in range(5):  # a burst the server let through
        flow.answered(flow.wait_turn(), NO_HEADERS, clean=True)
    flow.congested(flow.wait_turn(), "429", 1.0)
    assert flow.pace is None  # a burst's rate says nothing yet
    first_429 = fake_time.now
    # Then 8 accepted over the next 2 seconds (the 1 s pause, then 1 s of them), and a 429 again.
    for _ in range(8):
        ticket = flow.wait_turn()
        fake_time.now += 0.125
        flow.answered(ticket, NO_HEADERS, clean=True)
    assert fake_time.now == pytest.approx(first_429 + 2.0)
    with collecting("syncd.hybridbox") as log:
        flow.congested(flow.wait_turn(), "429", 1.0)
    assert flow.pace == pytest.approx(4.0, rel=0.01)
    assert [e.fields["reason"] for e in log.named("hybridbox.pace")] == ["429"]
    # Evenly spaced from then on, and the pace grows slowly while no 429 comes.
    fake_time.now += 10
    flow.wait_turn()
    before = fake_time.now
    flow.wait_turn()
    spacing = fake_time.now - before
    assert 1 / spacing == pytest.approx(4.0 * (1 + RATE_GROWTH_PER_S * 10), rel=0.02)


def test_429s_to_requests_sent_before_the_pace_was_set_do_not_lower_it(
    fake_time: FakeTime,
) -> None:
    flow = flow_of(fake_time)
    flow.congested(flow.wait_turn(), "429", None)  # the first: counting starts
    fake_time.now += 2.0
    for _ in range(16):
        flow.answered(flow.wait_turn(), NO_HEADERS, clean=True)
    in_flight = [flow.wait_turn() for _ in range(4)]  # all four meet the limit together
    with collecting("syncd.hybridbox") as log:
        for ticket in in_flight:
            flow.congested(ticket, "429", None)
    assert flow.pace == pytest.approx(8.0, rel=0.01)  # 16 accepted over 2 s, learned once
    assert len(log.named("hybridbox.pace")) == 1
    # A 429 to a request sent at that pace does lower it.
    fake_time.now += 0.25
    flow.congested(flow.wait_turn(), "429", None)
    assert flow.pace == pytest.approx(4.0, rel=0.01)


def test_an_announced_limit_is_used_instead_of_guessing(fake_time: FakeTime) -> None:
    flow = flow_of(fake_time)
    ticket = flow.wait_turn()
    flow.answered(ticket, {"x-ratelimit-limit": "8", "x-ratelimit-remaining": "7"}, clean=True)
    assert flow.pace == 8.0
    fake_time.now += 100
    assert flow.pace == 8.0  # announced: it does not grow
    flow.congested(flow.wait_turn(), "429", 1.0)
    assert flow.pace == 8.0  # nor is it re-learned from a 429
    flow.answered(flow.wait_turn(), {"ratelimit-limit": "120", "ratelimit-policy": "120;w=60"},
                  clean=True)  # fmt: skip
    assert flow.pace == 2.0


@pytest.mark.parametrize("value", ["", "lots", "nan", "-3", "0"])
def test_unusable_limit_headers_are_ignored(fake_time: FakeTime, value: str) -> None:
    flow = flow_of(fake_time)
    flow.answered(flow.wait_turn(), {"x-ratelimit-limit": value}, clean=True)
    assert flow.pace is None
