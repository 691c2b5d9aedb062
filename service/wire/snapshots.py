"""Decode a record of the agents or sites topic into a directory snapshot, or into a `Rejection`.

Snapshots are rare next to chat events, so they take no fast path. An agent snapshot is all ids,
flags and device tokens: nothing in it can be repaired, so it is decoded strictly. A site snapshot
is always decoded leniently: only its ids make it unusable, and every other field is checked one
by one and repaired when it cannot be used (`repair.py`) — one bad phone number must not silence a
site.
"""

from __future__ import annotations

from typing import Annotated, Literal

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
SITE_REPAIRS = (
    Repair(RepairedField.NAME, RepairAction.TRUNCATED),
    Repair(RepairedField.NAME, RepairAction.DROPPED),
    Repair(RepairedField.TIME_TO_ACCEPT, RepairAction.CLAMPED),
    Repair(RepairedField.TIME_TO_ACCEPT, RepairAction.DROPPED),
    Repair(RepairedField.CONTACT, RepairAction.DROPPED),
    Repair(RepairedField.CONTACT_EMAIL, RepairAction.DROPPED),
    Repair(RepairedField.CONTACT_PHONE, RepairAction.DROPPED),
    Repair(RepairedField.MISSED_MESSAGE, RepairAction.DROPPED),
)
"""Every repair `decode_site` can make."""

Token = Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class _SiteToggle(msgspec.Struct, frozen=True):
    site_id: Id
    push_enabled: bool


class _Device(msgspec.Struct, frozen=True):
    device_id: Id
    provider: Literal["fcm", "apns"]
    token: Token
    apns_environment: Literal["production", "sandbox"] = "production"


class _AgentData(msgspec.Struct, frozen=True):
    agent_id: Id
    account_id: Id
    live_chat_available: bool
    sites: list[_SiteToggle]
    devices: list[_Device]


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


_AGENTS: DataDecoders = {AGENT_UPDATED: msgspec.json.Decoder(_AgentData)}
_SITES: DataDecoders = {SITE_UPDATED: msgspec.json.Decoder(_SiteData)}
_CONTACT = msgspec.json.Decoder(_LooseContact | None)


def decode_agent(key: bytes | None, value: bytes, limits: DecodeLimits) -> AgentSnapshot | Rejection:
    try:
        _, data = open_record(value, _AGENTS, limits)
        assert isinstance(data, _AgentData)
        if decode_key(key) != data.agent_id:
            raise reject(Reason.KEY_MISMATCH, "record key differs from data.agent_id", agent_id=data.agent_id)
        device_ids = [device.device_id for device in data.devices]
        if len(set(device_ids)) != len(device_ids):
            raise reject(Reason.BAD_DATA, "duplicate device_id in devices", agent_id=data.agent_id)
        return AgentSnapshot(
            agent_id=data.agent_id,
            account_id=data.account_id,
            live_chat_available=data.live_chat_available,
            push_enabled_by_site={toggle.site_id: toggle.push_enabled for toggle in data.sites},
            devices=tuple(
                Device(
                    device.device_id,
                    Provider(device.provider),
                    device.token,
                    ApnsEnvironment(device.apns_environment),
                )
                for device in data.devices
            ),
        )
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
    )
    return Decoded(snapshot, tuple(repairs))
