"""The field rules the emulator enforces (Hybridbox does not document its own).

``local_part``: 1 to 64 characters of ``[a-z0-9._-]``, no leading, trailing or doubled dot.
Names: 1 to 100 characters of any script; spaces, apostrophes, hyphens and dots are fine; empty,
all-blank, or containing a control character is ``invalid_name``. Names are stored exactly as sent.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

INVALID_LOCAL_PART = "invalid_local_part"
INVALID_NAME = "invalid_name"

MAX_LOCAL_PART_LENGTH = 64  # what RFC 5321 allows before the @
_LOCAL_PART = re.compile(rf"[a-z0-9._-]{{1,{MAX_LOCAL_PART_LENGTH}}}")
MAX_NAME_LENGTH = 100


class FieldError(Exception):
    """One field broke a rule; ``code`` is what the API reports."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_local_part(value: Any, field: str = "local_part") -> str:
    if not isinstance(value, str):
        raise FieldError(INVALID_LOCAL_PART, f"{field} is required and must be a string")
    if not _LOCAL_PART.fullmatch(value):
        if not value:
            raise FieldError(INVALID_LOCAL_PART, f"{field} must not be empty")
        if len(value) > MAX_LOCAL_PART_LENGTH:
            raise FieldError(
                INVALID_LOCAL_PART, f"{field} is longer than {MAX_LOCAL_PART_LENGTH} characters"
            )
        raise FieldError(
            INVALID_LOCAL_PART,
            f"{field} {value!r} may only contain a-z, 0-9, '.', '_' and '-'",
        )
    if value.startswith(".") or value.endswith(".") or ".." in value:
        raise FieldError(
            INVALID_LOCAL_PART,
            f"{field} {value!r} must not start or end with a dot or contain two dots in a row",
        )
    return value


def check_name(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise FieldError(INVALID_NAME, f"{field} is required and must be a string")
    if not value.strip():
        raise FieldError(INVALID_NAME, f"{field} must not be empty or blank")
    if len(value) > MAX_NAME_LENGTH:
        raise FieldError(INVALID_NAME, f"{field} is longer than {MAX_NAME_LENGTH} characters")
    # Only real control characters (category Cc): format characters such as the zero-width
    # non-joiner are part of correctly spelled names in several scripts.
    if any(unicodedata.category(char) == "Cc" for char in value):
        raise FieldError(INVALID_NAME, f"{field} must not contain control characters")
    return value
