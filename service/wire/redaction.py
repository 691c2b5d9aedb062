"""Personal data taken out of a dead letter's value, for clusters where the dead-letter topic may
not hold it (setting `dead_letter_redact_personal_data`; docs/dead-letters.md says what a dead
letter can hold and why the default keeps the original bytes).

A rejected record is by definition not what its schema says, so the personal fields are looked
for by name at any depth, not at their contract path: a `visitor`, `email`, `phone`, `token` or
`display_name` member anywhere is replaced by a marker whatever its type, and so is any string
that looks like it holds an e-mail address, and any string that is itself JSON (a producer that
encoded twice) holding such a member. A value that is not JSON cannot be searched field-wise, so
its body is dropped rather than guessed at; the dead letter's headers still point to the original
(source topic, partition and offset). A redacted value is never longer than the original, so its
dead letter fits wherever the original fitted.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

import msgspec

REDACTED: Final = "[redacted]"
"""What a personal value is replaced by."""

PERSONAL_MEMBERS: Final = frozenset({"visitor", "email", "phone", "token", "display_name"})
"""Members whose value is personal data wherever they appear: the visitor (name, e-mail, location,
device) of a handoff request, a site's contact details, a device's push token, an agent's name."""


class Redaction(StrEnum):
    """What was done to a dead letter's value (its `redacted` header)."""

    FIELDS = "fields"
    """Personal members replaced by the marker; the rest of the JSON kept."""
    BODY = "body"
    """No value: the original was not JSON (or its redacted form would have been larger)."""


@dataclass(frozen=True, slots=True)
class RedactedValue:
    value: bytes | None
    redaction: Redaction | None
    """None: nothing personal was found and `value` is the original, byte for byte."""


_JSON = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


def redact_personal_data(value: bytes | None) -> RedactedValue:
    """`value` with its personal data replaced by REDACTED, or dropped when it is not JSON."""
    if value is None:
        return RedactedValue(None, None)
    try:
        document = _JSON.decode(value)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # not UTF-8, not JSON, too deep
        return RedactedValue(None, Redaction.BODY)
    redacted, changed = _redact_tree(document)
    if not changed:
        return RedactedValue(value, None)
    try:
        encoded = _ENCODER.encode(redacted)
    except (msgspec.EncodeError, RecursionError, UnicodeEncodeError):
        return RedactedValue(None, Redaction.BODY)
    if len(encoded) > len(value):  # many tiny personal values: the marker is longer than each
        return RedactedValue(None, Redaction.BODY)
    return RedactedValue(encoded, Redaction.FIELDS)


def _redact_tree(document: object) -> tuple[object, bool]:
    """The freshly decoded `document` with personal values replaced in place, and whether any was.
    Iterative: a document nested as deep as the decoder allows must not exhaust Python's stack."""
    changed = False
    root: list[object] = [document]
    stack: list[dict[str, object] | list[object]] = [root]
    while stack:
        container = stack.pop()
        slots: list[tuple[str | int, object]] = (
            list(container.items()) if isinstance(container, dict) else list(enumerate(container))
        )
        for slot, item in slots:
            personal_member = isinstance(slot, str) and slot in PERSONAL_MEMBERS
            if personal_member or (isinstance(item, str) and _is_personal_text(item)):
                _put(container, slot, REDACTED)
                changed = True
            elif isinstance(item, dict | list):
                stack.append(item)
    return root[0], changed


def _put(container: dict[str, object] | list[object], slot: str | int, value: object) -> None:
    if isinstance(container, dict):
        container[str(slot)] = value
    else:
        container[int(slot)] = value


def _is_personal_text(text: str) -> bool:
    return _looks_like_email(text) or _json_with_personal_data(text)


def _looks_like_email(text: str) -> bool:
    """An @ with a dot somewhere after it: linear, unlike an e-mail regex on hostile input."""
    at = text.find("@")
    return at != -1 and text.find(".", at + 1) != -1


def _json_with_personal_data(text: str) -> bool:
    """A string that is itself a JSON object or array holding personal data (encoded twice)."""
    if not text.lstrip().startswith(("{", "[")):
        return False
    try:
        inner = _JSON.decode(text)
    except (msgspec.DecodeError, RecursionError):
        return False
    return _redact_tree(inner)[1]
