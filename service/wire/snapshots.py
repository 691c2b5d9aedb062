"""Decode a record of the agents or sites topic into a directory snapshot, or into a `Rejection`.

Snapshots are rare next to chat events, so they take no fast path. An agent snapshot is ids,
flags and device tokens, decoded strictly, and one optional `display_name`, repaired when it
cannot be used (a bad name must not make an agent unreachable). A site snapshot is always decoded
leniently: only its ids make it unusable, and every other field is checked one by one and
repaired when it cannot be used (`repair.py`) — one bad phone number must not silence a site.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from service.domain.events import AgentSnapshot, Device, SiteSnapshot
from service.domain.push import ApnsEnvironment, Provider
from service.wire.envelope import (
    MAX_TEXT_CHARS,
    DataDecoders,
    DecodeLimits,
    Id,
    Rejected,
    decode_key,
    open_record,
    reject,
)
from service.wire.rejection import Reason, Rejection
from service.wire.repair import (
    ABSENT,
    OPTIONAL_INT,
    OPTIONAL_STR,
    Decoded,
    Repair,
    RepairAction,
    RepairedField,
    optional,
    optional_text,
    truncated,
)

AGENT_UPDATED = "livechat.agent.updated"
SITE_UPDATED = "livechat.site.updated"
MAX_SITE_NAME_CHARS = 200
EMAIL_CHARS = (3, 320)
PHONE_CHARS = (1, 64)
MAX_DISPLAY_NAME_CHARS = 100
"""An agent's name is shown in one line ("Taken by …") on a lock screen: anything longer is not a
name, and a cut one still tells colleagues who took the chat (so it is truncated, not dropped)."""
MAX_TEMPLATE_CHARS = 1024
"""An alert title or body template. A phone shows a few lines of an alert at most, and the filled
alert must fit the providers' 4096-byte payload beside its data; a longer template is dropped, not
cut (the default text applies): a cut could end inside a placeholder or lose the sentence's point."""
AGENT_REPAIRS = (
    Repair(RepairedField.DISPLAY_NAME, RepairAction.TRUNCATED),
    Repair(RepairedField.DISPLAY_NAME, RepairAction.DROPPED),
)
"""Every repair `decode_agent_with_repairs` can make."""
SITE_REPAIRS = (
    Repair(RepairedField.NAME, RepairAction.TRUNCATED),
    Repair(RepairedField.NAME, RepairAction.DROPPED),
    Repair(RepairedField.TIME_TO_ACCEPT, RepairAction.CLAMPED),
    Repair(RepairedField.TIME_TO_ACCEPT, RepairAction.DROPPED),
    Repair(RepairedField.CONTACT, RepairAction.DROPPED),
    Repair(RepairedField.CONTACT_EMAIL, RepairAction.DROPPED),
    Repair(RepairedField.CONTACT_PHONE, RepairAction.DROPPED),
    Repair(RepairedField.MISSED_MESSAGE, RepairAction.DROPPED),
    Repair(RepairedField.PUSH_TITLE, RepairAction.DROPPED),
    Repair(RepairedField.PUSH_BODY, RepairAction.DROPPED),
    Repair(RepairedField.HIDE_VISITOR_NAME, RepairAction.FAILED_SAFE),
    Repair(RepairedField.REMINDER_AFTER, RepairAction.DROPPED),
)
"""Every repair `decode_site` can make."""

Token = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class _SiteToggle(msgspec.Struct, frozen=True):
    site_id: Id
    push_enabled: bool


class _Device(msgspec.Struct, frozen=True):
    # The enums themselves, not Literals: msgspec builds the members, which saved ~1.5 µs per
    # device over calling `Provider(...)` afterwards (a million agents at start-up).
    device_id: Id
    provider: Provider
    token: Token
    apns_environment: ApnsEnvironment = ApnsEnvironment.PRODUCTION


class _AgentData(msgspec.Struct, frozen=True):
    agent_id: Id
    account_id: Id
    live_chat_available: bool
    sites: list[_SiteToggle]
    devices: list[_Device]
    display_name: msgspec.Raw = ABSENT


class _LooseContact(msgspec.Struct, frozen=True):
    email: msgspec.Raw = ABSENT
    phone: msgspec.Raw = ABSENT


class _SiteData(msgspec.Struct, frozen=True):
    """Only the ids are checked by msgspec; every other field is kept raw and checked by `_site`."""

    site_id: Id
    account_id: Id
    name: msgspec.Raw = ABSENT
    time_to_accept_seconds: msgspec.Raw = ABSENT
    contact: msgspec.Raw = ABSENT
    missed_message: msgspec.Raw = ABSENT
    push_title: msgspec.Raw = ABSENT
    push_body: msgspec.Raw = ABSENT
    hide_visitor_name: msgspec.Raw = ABSENT
    reminder_after_seconds: msgspec.Raw = ABSENT


_AGENTS: DataDecoders = {AGENT_UPDATED: msgspec.json.Decoder(_AgentData)}
_SITES: DataDecoders = {SITE_UPDATED: msgspec.json.Decoder(_SiteData)}
_CONTACT = msgspec.json.Decoder(_LooseContact | None)
_OPTIONAL_BOOL = msgspec.json.Decoder(bool | None)


def decode_agent(key: bytes | None, value: bytes, limits: DecodeLimits) -> AgentSnapshot | Rejection:
    """The agent, without the repairs made to get it (`decode_agent_with_repairs`)."""
    decoded = decode_agent_with_repairs(key, value, limits)
    return decoded if isinstance(decoded, Rejection) else decoded.value


def decode_agent_with_repairs(
    key: bytes | None, value: bytes, limits: DecodeLimits
) -> Decoded[AgentSnapshot] | Rejection:
    """The agent with its repairs (`AGENT_REPAIRS`): a `display_name` that is not a string is
    dropped, one over `MAX_DISPLAY_NAME_CHARS` truncated; absent, null or blank is no name."""
    try:
        _, data = open_record(value, _AGENTS, limits)
        assert isinstance(data, _AgentData)
        if decode_key(key) != data.agent_id:
            raise reject(Reason.KEY_MISMATCH, "record key differs from data.agent_id", agent_id=data.agent_id)
        device_ids = [device.device_id for device in data.devices]
        if len(set(device_ids)) != len(device_ids):
            raise reject(Reason.BAD_DATA, "duplicate device_id in devices", agent_id=data.agent_id)
        repairs: list[Repair] = []
        display_name = optional(data.display_name, OPTIONAL_STR, RepairedField.DISPLAY_NAME, repairs)
        if display_name is not None and len(display_name) > MAX_DISPLAY_NAME_CHARS:
            repairs.append(Repair(RepairedField.DISPLAY_NAME, RepairAction.TRUNCATED))
            display_name = truncated(display_name, MAX_DISPLAY_NAME_CHARS)
        agent = AgentSnapshot(
            agent_id=data.agent_id,
            account_id=data.account_id,
            live_chat_available=data.live_chat_available,
            push_enabled_by_site={toggle.site_id: toggle.push_enabled for toggle in data.sites},
            devices=tuple(
                Device(device.device_id, device.provider, device.token, device.apns_environment)
                for device in data.devices
            ),
            display_name=display_name if display_name and display_name.strip() else None,
        )
        return Decoded(agent, tuple(repairs))
    except Rejected as rejected:
        return rejected.rejection


def decode_site(key: bytes | None, value: bytes, limits: DecodeLimits) -> Decoded[SiteSnapshot] | Rejection:
    try:
        _, data = open_record(value, _SITES, limits)
        assert isinstance(data, _SiteData)
        if decode_key(key) != data.site_id:
            raise reject(Reason.KEY_MISMATCH, "record key differs from data.site_id", site_id=data.site_id)
        return _site(data, limits)
    except Rejected as rejected:
        return rejected.rejection


def _site(data: _SiteData, limits: DecodeLimits) -> Decoded[SiteSnapshot]:
    """The snapshot with every unusable optional field repaired.

    Absent or null `time_to_accept_seconds`, `contact`, `contact.email`, `contact.phone` and
    `missed_message` are valid (the contract makes them optional) and not reported. A name that
    is missing, empty or not a string is dropped (alerts and texts then go without it), one too
    long is truncated. A time to accept above the maximum is clamped to it; zero, negative or not
    an integer is dropped, so the worker's default applies (clamping 0 up to 1 s would miss every
    request of the site at once). A contact detail out of its length bounds is dropped, not cut
    (a cut address reaches nobody); so is an over-long `missed_message`, whose cut would lose the
    contact details it was written to give: the default text, which names them, applies instead.
    """
    repairs: list[Repair] = []
    name = optional(data.name, OPTIONAL_STR, RepairedField.NAME, repairs)
    if not name:  # the contract requires a name: missing, null or empty is reported too
        if not repairs:  # (once: `optional` already reported a name of the wrong type)
            repairs.append(Repair(RepairedField.NAME, RepairAction.DROPPED))
        name = None
    elif len(name) > MAX_SITE_NAME_CHARS:
        repairs.append(Repair(RepairedField.NAME, RepairAction.TRUNCATED))
        name = truncated(name, MAX_SITE_NAME_CHARS)
    tta = optional(data.time_to_accept_seconds, OPTIONAL_INT, RepairedField.TIME_TO_ACCEPT, repairs)
    if tta is not None and tta > limits.max_time_to_accept_s:
        repairs.append(Repair(RepairedField.TIME_TO_ACCEPT, RepairAction.CLAMPED))
        tta = limits.max_time_to_accept_s
    elif tta is not None and tta <= 0:
        repairs.append(Repair(RepairedField.TIME_TO_ACCEPT, RepairAction.DROPPED))
        tta = None
    email = phone = None
    contact = optional(data.contact, _CONTACT, RepairedField.CONTACT, repairs)
    if contact is not None:
        email = optional_text(contact.email, RepairedField.CONTACT_EMAIL, EMAIL_CHARS, repairs)
        phone = optional_text(contact.phone, RepairedField.CONTACT_PHONE, PHONE_CHARS, repairs)
    missed_message = optional_text(
        data.missed_message, RepairedField.MISSED_MESSAGE, (0, MAX_TEXT_CHARS), repairs
    )
    snapshot = SiteSnapshot(
        site_id=data.site_id,
        account_id=data.account_id,
        name=name,
        time_to_accept_s=tta,
        contact_email=email,
        contact_phone=phone,
        missed_message=missed_message or None,
        push_title=_template(data.push_title, RepairedField.PUSH_TITLE, repairs),
        push_body=_template(data.push_body, RepairedField.PUSH_BODY, repairs),
        hide_visitor_name=_hide_visitor_name(data.hide_visitor_name, repairs),
        reminder_after_s=_reminder_after(data.reminder_after_seconds, limits, repairs),
    )
    return Decoded(snapshot, tuple(repairs))


def _template(raw: msgspec.Raw, field: RepairedField, repairs: list[Repair]) -> str | None:
    """An alert template: not a string or over `MAX_TEMPLATE_CHARS` is dropped (the default text
    applies); absent, null or blank is no template (a producer clearing the field), not reported."""
    template = optional_text(raw, field, (0, MAX_TEMPLATE_CHARS), repairs)
    return template if template and template.strip() else None


def _hide_visitor_name(raw: msgspec.Raw, repairs: list[Repair]) -> bool:
    """Absent or null: off (the contract's default). Not a boolean: on, and reported — a privacy
    switch fails safe (`RepairAction.FAILED_SAFE`)."""
    try:
        return bool(_OPTIONAL_BOOL.decode(raw))
    except (msgspec.ValidationError, RecursionError):
        repairs.append(Repair(RepairedField.HIDE_VISITOR_NAME, RepairAction.FAILED_SAFE))
        return True


def _reminder_after(raw: msgspec.Raw, limits: DecodeLimits, repairs: list[Repair]) -> int | None:
    """Seconds from the request to the reminder. Zero, negative, not an integer or above the
    longest time to accept is dropped (no reminder): a reminder at or after every possible
    deadline could never be sent, and clamping would pretend it could."""
    after = optional(raw, OPTIONAL_INT, RepairedField.REMINDER_AFTER, repairs)
    if after is not None and not 0 < after <= limits.max_time_to_accept_s:
        repairs.append(Repair(RepairedField.REMINDER_AFTER, RepairAction.DROPPED))
        return None
    return after
