"""What the decoder did to an optional field it could not use as sent, so the rest of the record
could still be used: the field and the action (a bounded pair, fit for a metric label).

A repair never carries the field's value: visitor names and contact details are personal data,
and the value is what was wrong. `Decoded` pairs a decoded value with its repairs (usually none).
The decoders keep a repairable field raw (`ABSENT` when missing) and decode it here, one field at
a time, so one bad field is dropped and recorded instead of failing the record.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, NamedTuple, TypeVar

import msgspec

T = TypeVar("T")
V = TypeVar("V")

ABSENT = msgspec.Raw(b"null")
"""The default of a field kept raw: a missing field reads as null, as the contract's optional fields do."""
OPTIONAL_STR = msgspec.json.Decoder(str | None)
OPTIONAL_INT = msgspec.json.Decoder(int | None)


class RepairAction(StrEnum):
    TRUNCATED = "truncated"
    """Too long: cut on a character boundary, ending in an ellipsis."""
    CLAMPED = "clamped"
    """Above its range: set to the largest allowed value."""
    DROPPED = "dropped"
    """Wrong type, empty or out of range: treated as absent."""
    FAILED_SAFE = "failed_safe"
    """A privacy switch of the wrong type: treated as on. Whoever sent it meant something, and a
    name shown by mistake cannot be taken back, while one hidden by mistake costs a little context."""


class RepairedField(StrEnum):
    """Every field the decoder may repair, by its JSON path inside `data`. Bounded: a metric label."""

    NAME = "name"
    TIME_TO_ACCEPT = "time_to_accept_seconds"
    CONTACT = "contact"
    CONTACT_EMAIL = "contact.email"
    CONTACT_PHONE = "contact.phone"
    MISSED_MESSAGE = "missed_message"
    PUSH_TITLE = "push_title"
    PUSH_BODY = "push_body"
    HIDE_VISITOR_NAME = "hide_visitor_name"
    REMINDER_AFTER = "reminder_after_seconds"
    DISPLAY_NAME = "display_name"
    VISITOR = "visitor"
    VISITOR_NAME = "visitor.name"


@dataclass(frozen=True, slots=True)
class Repair:
    field: RepairedField
    action: RepairAction


class Decoded(NamedTuple, Generic[T]):
    """A usable record: its domain value and what was repaired to get it (empty when clean)."""

    value: T
    repairs: tuple[Repair, ...] = ()


def described(repairs: tuple[Repair, ...]) -> dict[str, str]:
    """`{field: action}` for a log line: names what was repaired, never the values."""
    return {repair.field.value: repair.action.value for repair in repairs}


def truncated(text: str, max_chars: int) -> str:
    """`text` cut to `max_chars` characters (code points, so never inside one), ending in '…'."""
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def optional(
    raw: msgspec.Raw, decoder: msgspec.json.Decoder[V | None], field: RepairedField, repairs: list[Repair]
) -> V | None:
    """The raw field decoded, or None (recorded as dropped) when it is of the wrong type."""
    try:
        return decoder.decode(raw)
    except (msgspec.ValidationError, RecursionError):
        repairs.append(Repair(field, RepairAction.DROPPED))
        return None


def optional_text(
    raw: msgspec.Raw, field: RepairedField, chars: tuple[int, int], repairs: list[Repair]
) -> str | None:
    """An optional text: None when absent or null, and (recorded as dropped) when it is not a
    string or its length is outside `chars`."""
    text = optional(raw, OPTIONAL_STR, field, repairs)
    if text is not None and not chars[0] <= len(text) <= chars[1]:
        repairs.append(Repair(field, RepairAction.DROPPED))
        return None
    return text
