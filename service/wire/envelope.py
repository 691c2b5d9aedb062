"""The first step of every inbound decoder: open a record's CloudEvents envelope and decode its
`data` by `type`, or reject the record — with what all the data decoders share (limits, field
types, the record key, the rejection they raise).

Only the envelope is checked here; `data` is kept raw until its `type` picks the schema, so one
decoder per topic (`chat_events.py`, `snapshots.py`) passes the schemas it consumes. A rejection
is raised as `Rejected` inside the wire package (it unwinds nested helpers in one step) and
returned as a `Rejection` value at each public decoder: nothing outside the package sees it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

import msgspec

from service.wire.rejection import Reason, Rejection

Id = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
MAX_TEXT_CHARS = 1000
Text = Annotated[str, msgspec.Meta(max_length=MAX_TEXT_CHARS)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True)]
MAX_DETAIL_CHARS = 500
"""Longest rejection detail: whatever a record holds, its log line and dead-letter headers stay small."""


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_value_bytes: int = 1_048_576
    max_time_to_accept_s: int = 86_400
    clock_skew_ms: int = 300_000
    """How far in the future an event time may lie (producers' clocks drift)."""
    max_event_age_ms: int = 7 * 86_400_000
    """Event times older than this are absurd, not late."""


class Envelope(msgspec.Struct, frozen=True):
    specversion: str
    id: Id
    source: Annotated[str, msgspec.Meta(min_length=1)]
    type: Annotated[str, msgspec.Meta(min_length=1)]
    data: msgspec.Raw = msgspec.Raw(b"null")
    time: str | None = None


DataDecoders = Mapping[str, msgspec.json.Decoder[object]]
"""The `data` schemas a topic consumes, by CloudEvents `type`."""
_NO_DECODERS: DataDecoders = {}
_ENVELOPE = msgspec.json.Decoder(Envelope)


class Rejected(Exception):  # noqa: N818 -- internal control flow, converted to Rejection at the boundary
    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.detail)
        self.rejection = rejection


def reject(reason: Reason, detail: str, **ids: str) -> Rejected:
    if len(detail) > MAX_DETAIL_CHARS:  # it becomes a log field and a dead-letter header
        detail = detail[: MAX_DETAIL_CHARS - 1] + "…"
    return Rejected(Rejection(reason, detail, **ids))


def decode_key(key: bytes | None) -> str | None:
    """The record key as text, or None when it is absent or not UTF-8."""
    if key is None:
        return None
    try:
        return key.decode()
    except UnicodeDecodeError:
        return None


def open_record(
    value: bytes | None, decoders: DataDecoders, limits: DecodeLimits, lenient: DataDecoders = _NO_DECODERS
) -> tuple[Envelope, object]:
    """The envelope and its `data` decoded by the schema of its `type` in `decoders` (a type not
    there is not consumed from this topic). When that strict schema fails and `lenient` has one
    for the type, `data` is decoded once more by it: an optional field may be what failed."""
    if value is None:
        raise reject(Reason.NULL_VALUE, "record value is null")
    if len(value) > limits.max_value_bytes:
        raise reject(Reason.TOO_LARGE, f"value of {len(value)} bytes exceeds {limits.max_value_bytes}")
    try:
        value.decode()
    except UnicodeDecodeError as error:
        raise reject(Reason.NOT_UTF8, f"value is not UTF-8 at byte {error.start}") from None
    envelope = _envelope(value)
    if envelope.specversion != "1.0":
        raise reject(Reason.BAD_SPECVERSION, "specversion must be '1.0'")
    decoder = decoders.get(envelope.type)
    if decoder is None:
        raise reject(Reason.UNKNOWN_TYPE, f"type {envelope.type[:100]!r} is not consumed from this topic")
    try:
        data = decoder.decode(envelope.data)
    except msgspec.ValidationError as error:
        loose = lenient.get(envelope.type)
        if loose is None:
            raise reject(Reason.BAD_DATA, f"{envelope.type}: {_validation_message(error)}") from None
        try:
            data = loose.decode(envelope.data)
        except msgspec.ValidationError as loose_error:
            raise reject(Reason.BAD_DATA, f"{envelope.type}: {_validation_message(loose_error)}") from None
    except RecursionError:
        raise reject(Reason.TOO_DEEP, f"{envelope.type}: data is nested too deeply to decode") from None
    return envelope, data


def _envelope(value: bytes) -> Envelope:
    try:
        return _ENVELOPE.decode(value)
    except msgspec.ValidationError as error:
        message = _validation_message(error)
        if message.startswith("Expected `object`") and " - at `$" not in message:
            raise reject(Reason.NOT_AN_OBJECT, f"value is not a JSON object: {message}") from None
        raise reject(Reason.BAD_ENVELOPE, f"CloudEvents envelope: {message}") from None
    except msgspec.DecodeError as error:
        raise reject(Reason.INVALID_JSON, f"value is not JSON: {error}") from None
    except RecursionError:  # msgspec recurses even to skip a value (`data` is kept raw)
        raise reject(Reason.TOO_DEEP, "value is nested too deeply to decode") from None


def _validation_message(error: msgspec.ValidationError) -> str:
    """The message of msgspec without the offending value, which it quotes for enums (a token, say)."""
    message = str(error)
    if message.startswith("Invalid enum value "):
        _, at, path = message.rpartition(" - at `")
        return f"Invalid enum value - at `{path}" if at else "Invalid enum value"
    return message
