"""Tests for syncd.hybridbox._answers: the fast bulk parser against the straightforward one.

The bulk parser takes well-formed entries on a fast path; the property test below checks that, for
any mix of well-formed and odd entries, it returns exactly what the straightforward parser (kept
here as the reference) returns, and warns about the same entries. An entry only confirms a create
when its mailbox is the one asked for at its index, and an index answered twice confirms nothing:
both make the item unknown (looked up by the engine).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import syncd.hybridbox._answers as answers
import syncd.hybridbox._records as records
from syncd.hybridbox import (
    BulkResult,
    ItemCreated,
    ItemFailed,
    ItemKind,
    Mailbox,
    NewMailbox,
    classify_code,
)
from syncd.hybridbox._answers import bulk_result

DOMAIN = "example.com"
ITEMS = [NewMailbox(f"First{i}", f"Last{i}", f"first{i}.last{i}") for i in range(6)]


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def warnings() -> Iterator[Keep]:
    logger = logging.getLogger("syncd.hybridbox")
    keep, old_level = Keep(), logger.level
    logger.addHandler(keep)
    logger.setLevel(logging.DEBUG)
    yield keep
    logger.removeHandler(keep)
    logger.setLevel(old_level)


def _asked_for(mailbox: Mailbox, domain: str, item: NewMailbox) -> bool:
    def same(answered: str, asked: str) -> bool:
        return answered.strip().casefold() == asked.strip().casefold()

    return (
        same(mailbox.local_part, item.local_part)
        and same(mailbox.domain_name, domain)
        and same(mailbox.first_name, item.first_name)
        and same(mailbox.last_name, item.last_name)
    )


def _reference(
    data: Mapping[str, Any], domain: str, items: Sequence[NewMailbox]
) -> tuple[BulkResult | None, int, int]:
    """The parser without a fast path: the result, the number of ignored entries and the number
    of created entries whose mailbox is not the one asked for."""
    created_raw = data.get("created") or []
    failed_raw = data.get("failed") or []
    if not isinstance(created_raw, list) or not isinstance(failed_raw, list):
        return None, 0, 0
    count, ignored, mismatched = len(items), 0, 0
    result = BulkResult()
    answered: set[int] = set()
    doubtful: set[int] = set()
    for outcome, entries in (("created", created_raw), ("failed", failed_raw)):
        for entry in entries:
            index = answers._index(entry, count) if isinstance(entry, dict) else None
            if index is None or index in answered:
                ignored += 1
                if index is not None:
                    doubtful.add(index)
                continue
            answered.add(index)
            if outcome == "created":
                raw = entry.get("mailbox")
                if not isinstance(raw, dict):
                    raw = {key: value for key, value in entry.items() if key != "index"}
                item = items[index]
                asked = {
                    "local_part": item.local_part,
                    "domain_name": domain,
                    "first_name": item.first_name,
                    "last_name": item.last_name,
                }
                mailbox = Mailbox.from_json(
                    asked | {key: value for key, value in raw.items() if value is not None}
                )
                if not _asked_for(mailbox, domain, item):
                    mismatched += 1
                    doubtful.add(index)
                    continue
                result.created.append(ItemCreated(index, mailbox))
            else:
                code = records.text_field(entry, "code")
                result.failed.append(
                    ItemFailed(
                        index, code, records.text_field(entry, "message"), classify_code(code)
                    )
                )
    result.created = [entry for entry in result.created if entry.index not in doubtful]
    result.failed = [entry for entry in result.failed if entry.index not in doubtful]
    result.unknown = [i for i in range(len(items)) if i not in answered or i in doubtful]
    return result, ignored, mismatched


# Values a field may have: mostly well-formed strings, sometimes missing, empty or of a wrong type.
_odd: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.integers(-2, 9), st.booleans(), st.just({}), st.just([])
)
_word = st.sampled_from(["", "anna", "bo.lind", "x@y.test", "already_exists", "quota", "Chloé"])
_field = st.one_of(_word, _word, _word, _odd)
_index_value = st.one_of(st.integers(-1, 7), st.integers(0, 5), st.sampled_from(["2", "x", True]))
_MAILBOX_KEYS = ("id", "local_part", "domain_name", "primary_email", "first_name", "last_name")


@st.composite
def _mailbox(draw: st.DrawFn) -> dict[str, Any]:
    mailbox: dict[str, Any] = {}
    for key in (*_MAILBOX_KEYS, "status"):
        if draw(st.integers(0, 9)):  # present nine times in ten
            mailbox[key] = draw(_field)
    if draw(st.booleans()):
        mailbox |= {"quota": {"allowed": 1, "used": 0}, "aliases": [], "domain_id": "d1"}
    return mailbox


@st.composite
def _well_formed(draw: st.DrawFn, index: int) -> dict[str, Any]:
    """An entry for ITEMS[index], mostly the mailbox asked for, sometimes another one (the
    neighbour's, a trimmed or recased one, a namesake's)."""
    item = ITEMS[index]
    neighbour = ITEMS[(index + 1) % len(ITEMS)]
    local_part = draw(
        st.sampled_from([item.local_part] * 3 + [item.local_part.upper(), neighbour.local_part])
    )
    first = draw(st.sampled_from([item.first_name] * 3 + ["", neighbour.first_name]))
    last = draw(st.sampled_from([item.last_name] * 3 + [f" {item.last_name}", "Meier"]))
    return {
        "index": index,
        "mailbox": {
            "id": draw(st.sampled_from(["", "m-1", "00000000-0000-4000-8000-000000000001"])),
            "local_part": local_part,
            "domain_name": draw(st.sampled_from([DOMAIN, DOMAIN, DOMAIN.upper(), "other.test"])),
            "primary_email": draw(st.sampled_from([f"{local_part}@{DOMAIN}", "odd"])),
            "first_name": first,
            "last_name": last,
            "status": draw(st.sampled_from([None, "active"])),
        },
    }


_MISSING = object()


@st.composite
def _nearly_well_formed(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed entry with one or two fields made odd: the fast path's boundary."""
    entry = draw(st.integers(0, 5).flatmap(_well_formed))
    mailbox = entry["mailbox"]
    keys = st.sampled_from((*_MAILBOX_KEYS, "status"))
    for key in draw(st.lists(keys, min_size=1, max_size=2)):
        value = draw(st.sampled_from(["", None, 3, True, {}, [], _MISSING]))
        if value is _MISSING:
            mailbox.pop(key, None)
        else:
            mailbox[key] = value
    if draw(st.integers(0, 4)) == 0:
        entry = {"index": entry["index"], **mailbox}  # a terse entry, without "mailbox"
    if draw(st.integers(0, 4)) == 0:
        entry["index"] = draw(_index_value)
    return entry


_entry = st.one_of(
    st.integers(0, 5).flatmap(_well_formed),
    _nearly_well_formed(),
    _nearly_well_formed(),
    st.fixed_dictionaries({"index": _index_value, "mailbox": _mailbox()}),
    st.fixed_dictionaries({"index": _index_value, "mailbox": _odd}),
    st.fixed_dictionaries({}, optional={"index": _index_value}),
    st.sampled_from(["entry", 3, None, []]),
)
_failure = st.one_of(
    st.fixed_dictionaries(
        {"index": st.integers(0, 5), "code": _word, "message": _word},
    ),
    st.fixed_dictionaries({"index": st.integers(0, 5), "code": _field, "message": _field}),
    st.fixed_dictionaries({}, optional={"index": _index_value, "code": _field, "message": _field}),
    st.sampled_from(["failure", None]),
)


@settings(max_examples=300, deadline=None)
@given(
    created=st.one_of(st.lists(_entry, max_size=8), st.none(), st.just("oops")),
    failed=st.one_of(st.lists(_failure, max_size=6), st.none(), st.just({})),
    count=st.integers(0, 6),
)
def test_bulk_result_matches_the_straightforward_parser(
    created: Any, failed: Any, count: int
) -> None:
    data = {"created": created, "failed": failed}
    items = ITEMS[:count]
    keep = Keep()
    logger = logging.getLogger("syncd.hybridbox")
    logger.addHandler(keep)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        got = bulk_result(data, DOMAIN, items, lambda text: text)
    finally:
        logger.removeHandler(keep)
        logger.setLevel(old_level)

    want, want_ignored, want_mismatched = _reference(data, DOMAIN, items)
    assert got == want
    messages = [record.getMessage() for record in keep.records]
    assert messages.count("hybridbox.bulk_entry_ignored") == want_ignored
    assert messages.count("hybridbox.bulk_entry_mismatch") == want_mismatched
    assert ("hybridbox.bulk_items_unknown" in messages) == bool(want and want.unknown)


_ODD_VALUES: list[Any] = ["", None, 3, True, {}, [], _MISSING]


def _with(entry: dict[str, Any], changes: Sequence[tuple[str, Any]]) -> dict[str, Any]:
    entry = dict(entry)
    for key, value in changes:
        if value is _MISSING:
            entry.pop(key, None)
        else:
            entry[key] = value
    return entry


def test_every_odd_field_next_to_good_ones_parses_like_the_straightforward_parser() -> None:
    # Where a fast path that checks too little would differ: one or two odd fields next to good
    # ones. Every such pair is tried, in a nested and in a terse (flat) created entry.
    good = {
        "id": "m-1",
        "local_part": ITEMS[0].local_part,
        "domain_name": DOMAIN,
        "primary_email": f"{ITEMS[0].local_part}@{DOMAIN}",
        "first_name": ITEMS[0].first_name,
        "last_name": ITEMS[0].last_name,
        "status": "active",
    }
    changes = [(key, value) for key in (*_MAILBOX_KEYS, "status") for value in _ODD_VALUES]
    failure = {"index": 1, "code": "already_exists", "message": "taken"}
    cases: list[dict[str, Any]] = []
    for first in changes:
        for second in [None, *changes]:
            mailbox = _with(good, [first] if second is None else [first, second])
            cases.append({"created": [{"index": 0, "mailbox": mailbox}]})
            cases.append({"created": [{"index": 0, **mailbox}]})
    for key in ("index", "code", "message"):
        for value in [*_ODD_VALUES, "1", -1, 6]:
            cases.append({"failed": [_with(failure, [(key, value)])]})
    for data in cases:
        assert (
            bulk_result(data, DOMAIN, ITEMS, lambda text: text)
            == _reference(data, DOMAIN, ITEMS)[0]
        ), data


def test_fast_built_mailbox_is_a_normal_frozen_record(warnings: Keep) -> None:
    mailbox_json = {
        "id": "m-1",
        "local_part": "first0.last0",
        "domain_name": DOMAIN,
        "primary_email": f"first0.last0@{DOMAIN}",
        "first_name": "First0",
        "last_name": "Last0",
        "status": "active",
        "quota": {"allowed": 1, "used": 0},
    }
    data = {"created": [{"index": 0, "mailbox": mailbox_json}], "failed": []}

    result = bulk_result(data, DOMAIN, ITEMS[:1], lambda text: text)

    assert result is not None
    (created,) = result.created
    expected = Mailbox(
        "m-1", "first0.last0", DOMAIN, f"first0.last0@{DOMAIN}", "First0", "Last0", "active"
    )
    assert created == ItemCreated(0, expected)
    assert hash(created.mailbox) == hash(expected)
    assert repr(created.mailbox) == repr(expected)
    with pytest.raises(dataclasses.FrozenInstanceError):
        created.mailbox.first_name = "Bob"  # type: ignore[misc]
    assert result.unknown == [] and warnings.records == []


def test_repeated_failure_codes_are_classified_like_classify_code() -> None:
    failed = [{"index": i, "code": "already_exists", "message": "taken"} for i in range(3)]
    failed.append({"index": 3, "code": "domain_not_ready", "message": "later"})
    result = bulk_result({"created": [], "failed": failed}, DOMAIN, ITEMS[:4], lambda text: text)

    assert result is not None
    assert [f.kind for f in result.failed] == [ItemKind.TAKEN] * 3 + [ItemKind.RETRY]


def test_ignored_entries_are_logged_with_secrets_scrubbed(warnings: Keep) -> None:
    data = {"created": [{"index": 9, "note": "hb_sa_secret"}], "failed": []}

    result = bulk_result(data, DOMAIN, ITEMS[:1], lambda text: text.replace("hb_sa_secret", "***"))

    assert result == BulkResult(unknown=[0])
    ignored = [r for r in warnings.records if r.getMessage() == "hybridbox.bulk_entry_ignored"]
    assert len(ignored) == 1
    entry = getattr(ignored[0], "syncd_fields", {})["entry"]
    assert "***" in entry and "hb_sa_secret" not in entry
