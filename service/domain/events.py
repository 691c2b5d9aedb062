"""Typed inputs of the core: chat events and directory snapshots, already decoded and validated.

Only the fields the worker uses are kept. Of the visitor, only the display name survives
decoding: the e-mail address and other personal data never enter the worker's state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from service.domain.push import ApnsEnvironment, Provider


@dataclass(frozen=True, slots=True)
class HandoffRequested:
    event_id: str
    chat_id: str
    site_id: str
    requested_at_ms: int
    visitor_name: str | None = None
    time_to_accept_s: int | None = None
    """Overrides the site's Time To Accept Chat for this round."""


@dataclass(frozen=True, slots=True)
class AgentJoined:
    event_id: str
    chat_id: str
    site_id: str
    agent_id: str
    joined_at_ms: int


@dataclass(frozen=True, slots=True)
class ChatEnded:
    event_id: str
    chat_id: str
    site_id: str
    ended_at_ms: int
    reason: str | None = None


ChatEvent = HandoffRequested | AgentJoined | ChatEnded


class Device(msgspec.Struct, frozen=True, gc=False):
    """A frozen msgspec Struct with GC tracking off, like `AgentSnapshot`: a worker holds every
    agent's devices (two million for a million agents; figures: docs/benchmarks.md, "Directory
    scale"), and a Struct is 16 B smaller and about 10x quicker to build than a frozen dataclass."""

    device_id: str
    provider: Provider
    token: str
    apns_environment: ApnsEnvironment = ApnsEnvironment.PRODUCTION


class AgentSnapshot(msgspec.Struct, frozen=True, gc=False):
    """Full state of one agent, from the compacted agents topic. It holds no reference cycles
    (strings, a str -> bool mapping, Devices), so the cyclic collector need not track it."""

    agent_id: str
    account_id: str
    live_chat_available: bool
    push_enabled_by_site: Mapping[str, bool]
    devices: tuple[Device, ...]
    display_name: str | None = None
    """Optional: the agent's name as colleagues see it (the "taken by" update names it)."""


@dataclass(frozen=True, slots=True)
class SiteSnapshot:
    """Full state of one site, from the compacted sites topic.

    Only the ids are sure to be there: the decoder drops a field the site's producer left out or
    sent unusable (`service/wire/snapshots.py`), and the site is still known. None then means
    "not known": no name in the alert and texts, the worker's default time to accept, no such
    contact detail in the chatbot's message."""

    site_id: str
    account_id: str
    name: str | None
    time_to_accept_s: int | None
    contact_email: str | None
    contact_phone: str | None
    missed_message: str | None = None
    push_title: str | None = None
    """Optional alert title template with `{site_name}` / `{visitor_name}`, filled literally."""
    push_body: str | None = None
    """Optional alert body template, same placeholders."""
    hide_visitor_name: bool = False
    """No visitor name leaves the worker for this site (pushes, texts)."""
    reminder_after_s: int | None = None
    """`reminder_after_seconds`: one reminder alert this long after the request if the round is
    still pending then; None: no reminder."""


@dataclass(frozen=True, slots=True)
class TokenRejection:
    """A provider declared a device's token dead (reported by the push shell)."""

    agent_id: str
    device_id: str
    provider: Provider
    reason: str
    token_fingerprint: str
    """A short hash of the token: identifies the rejection without carrying the token."""
