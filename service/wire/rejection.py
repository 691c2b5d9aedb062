"""Why a record was not usable: a reason code (metric label, dead-letter header) and a detail."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Every reason a consumed record can be rejected for. Bounded: used as a metric label."""

    NULL_VALUE = "null_value"
    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    INVALID_JSON = "invalid_json"
    TOO_DEEP = "too_deep"
    """JSON nested deeper than the decoder's recursion limit (about 1,000 levels)."""
    NOT_AN_OBJECT = "not_an_object"
    BAD_SPECVERSION = "bad_specversion"
    BAD_ENVELOPE = "bad_envelope"
    UNKNOWN_TYPE = "unknown_type"
    BAD_DATA = "bad_data"
    KEY_MISMATCH = "key_mismatch"
    BAD_TIMESTAMP = "bad_timestamp"


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: Reason
    detail: str
    """Human-readable; never contains secrets or visitor personal data."""
    chat_id: str | None = None
    site_id: str | None = None
    agent_id: str | None = None
