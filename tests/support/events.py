"""Collect syncd's log events in tests, whatever the root logging config is.

``collecting("syncd.source.ldap")`` attaches an :class:`EventCollector` to that logger for the
duration of a ``with`` block; each record becomes an :class:`Event` (its name and fields), so
tests assert on ``events.named("record.rejected")`` instead of parsing text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


@dataclass
class Event:
    name: str
    level: int
    fields: dict[str, Any]


class EventCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.events: list[Event] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = dict(getattr(record, "syncd_fields", {}))
        self.events.append(Event(record.getMessage(), record.levelno, fields))

    def named(self, name: str) -> list[Event]:
        return [e for e in self.events if e.name == name]


@contextmanager
def collecting(logger_name: str) -> Iterator[EventCollector]:
    logger = logging.getLogger(logger_name)
    collector = EventCollector()
    old_level = logger.level
    logger.addHandler(collector)
    logger.setLevel(logging.DEBUG)
    try:
        yield collector
    finally:
        logger.removeHandler(collector)
        logger.setLevel(old_level)
