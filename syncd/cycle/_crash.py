"""Test-only crash points: where syncd kills itself to prove that it never creates a mailbox twice.

``SYNCD_TEST_CRASH_AT`` (tests only) names a point where the process kills itself with SIGKILL, to
prove the intent journal of :mod:`syncd.cycle._provision`: ``after_intents``, ``after_send``
(request sent, answer not read), ``after_answer`` (answer read, not recorded) and ``mid_batch``
(half the outcomes written inside the open transaction). ``SYNCD_TEST_CRASH_COUNT=N`` crashes at the
Nth time the point is reached.

Kept out of the provisioning code so that the code a reader has to follow there is the protocol
itself; without the variable, every point is a no-op. Callers look :func:`crashpoint` up through
this module at each call (``_crash.crashpoint(...)``), so that an in-process test can replace it
in one place, for the provisioner and for :class:`CrashAfterSend` alike.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

import httpx

CRASH_ENV = "SYNCD_TEST_CRASH_AT"
CRASH_COUNT_ENV = "SYNCD_TEST_CRASH_COUNT"
_crash_hits: Counter[str] = Counter()


def crashpoint(name: str) -> None:
    if os.environ.get(CRASH_ENV) != name:
        return
    _crash_hits[name] += 1
    if _crash_hits[name] >= int(os.environ.get(CRASH_COUNT_ENV, "1")):
        os.kill(os.getpid(), signal.SIGKILL)


class CrashAfterSend(httpx.BaseTransport):
    """Lets a bulk request reach the server, then dies before syncd reads the answer."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.url.path.endswith("/mailboxes/bulk"):
            crashpoint("after_send")
        return response

    def close(self) -> None:
        self.inner.close()
