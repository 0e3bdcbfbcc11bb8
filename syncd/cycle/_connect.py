"""A Hybridbox client for one cycle, its token and domain checked before anything is sent.

Opened by :mod:`syncd.cycle._engine` on first need (see its ``_Hybridbox``) and by ``syncd adopt``.
It lives apart from :mod:`syncd.cycle._provision` because both need a checked client, and neither
should have to load the provisioner to get one.
"""

from __future__ import annotations

import os
import threading
import time

import httpx

from syncd.config import Config
from syncd.cycle._crash import CRASH_ENV, CrashAfterSend
from syncd.errors import HybridboxUnavailable
from syncd.hybridbox import HybridboxClient, RetryBudget


def connect(config: Config, stop: threading.Event | None = None) -> HybridboxClient:
    """A client whose token and domain have been checked (401/403/404 raise here).

    With ``stop``, waits before retries end as soon as it is set (SIGTERM), so a stop never has
    to outlast a Retry-After storm; the batch in flight stays journaled as intents.
    """
    settings = config.hybridbox
    transport: httpx.BaseTransport | None = None
    if os.environ.get(CRASH_ENV) == "after_send":
        transport = CrashAfterSend(httpx.HTTPTransport())

    def sleep(seconds: float) -> None:
        if stop is None:
            time.sleep(seconds)
        elif stop.wait(seconds):
            raise HybridboxUnavailable(
                "stop requested while waiting to retry Hybridbox; the rest is left for the "
                "next cycle"
            )

    budget = RetryBudget(settings.retry_budget_s, sleep=sleep)
    client = HybridboxClient(settings, settings.token(), budget=budget, transport=transport)
    try:
        for domain, key in settings.domain_keys().items():
            client.check_domain(domain, key)
    except BaseException:
        client.close()
        raise
    return client
