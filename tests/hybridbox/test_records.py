"""Tests for syncd._hybridbox_records: classifying failed-item codes and reading a mailbox record.

These need no HTTP; how the client turns whole answers into these records is tested in
tests/hybridbox/test_client.py and tests/hybridbox/test_answers.py.
"""

from __future__ import annotations

import pytest

from syncd.hybridbox import ItemKind, Mailbox, classify_code

# ------------------------------------------------------------------------------ classification


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("already_exists", None, ItemKind.TAKEN),
        ("conflict", None, ItemKind.TAKEN),
        ("duplicate", None, ItemKind.TAKEN),
        ("exists", None, ItemKind.TAKEN),
        ("taken", None, ItemKind.TAKEN),
        ("ADDRESS_TAKEN", None, ItemKind.TAKEN),
        ("local_part_in_use", None, ItemKind.TAKEN),
        ("invalid_local_part", None, ItemKind.INVALID),
        ("invalid_name", None, ItemKind.INVALID),
        ("validation_error", None, ItemKind.INVALID),
        ("quota_exceeded", None, ItemKind.RETRY),
        ("domain_not_ready", None, ItemKind.RETRY),
        ("backend_busy", None, ItemKind.RETRY),
        ("does_not_exist", None, ItemKind.RETRY),
        ("something_new", None, ItemKind.RETRY),
        ("", None, ItemKind.RETRY),
        ("", 409, ItemKind.TAKEN),
        ("something_new", 409, ItemKind.TAKEN),
        ("bad_request", 422, ItemKind.INVALID),
        ("", 400, ItemKind.INVALID),
        ("domain_not_ready", 422, ItemKind.RETRY),
        ("something_new", 200, ItemKind.RETRY),
    ],
)
def test_classify_code(code: str, status: int | None, kind: ItemKind) -> None:
    assert classify_code(code, status) is kind


def test_mailbox_from_json_tolerates_missing_and_odd_fields() -> None:
    assert Mailbox.from_json({}) == Mailbox("", "", "", "", "", "", None)
    derived = Mailbox.from_json({"id": 7, "primary_email": "x.y@example.org", "quota": {}})
    assert (derived.id, derived.local_part, derived.domain_name) == ("7", "x.y", "example.org")
    built = Mailbox.from_json({"local_part": "a", "domain_name": "d.test", "first_name": None})
    assert built.primary_email == "a@d.test"
    assert built.first_name == ""
