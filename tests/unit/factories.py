"""Factories of domain values for unit tests: sensible defaults, override what the test is about."""

from __future__ import annotations

from typing import TypeVar

from service.domain.decide import Policy, World
from service.domain.directory import AgentDirectory, SiteDirectory
from service.domain.effects import Effect
from service.domain.events import (
    AgentJoined,
    AgentSnapshot,
    ChatEnded,
    Device,
    HandoffRequested,
    SiteSnapshot,
)
from service.domain.push import ApnsEnvironment, Provider

T0 = 1_800_000_000_000
"""A fixed 'now' (epoch ms) so tests never depend on the wall clock."""


def site(site_id: str = "site-1", account_id: str = "acct-1", **overrides: object) -> SiteSnapshot:
    values: dict[str, object] = {
        "site_id": site_id,
        "account_id": account_id,
        "name": "Alpine Tours",
        "time_to_accept_s": 60,
        "contact_email": "hello@alpine.example",
        "contact_phone": "+41 44 000 00 00",
        "missed_message": None,
    }
    values.update(overrides)
    return SiteSnapshot(**values)  # type: ignore[arg-type]


def device(
    device_id: str = "d1", provider: Provider = Provider.FCM, token: str | None = None, **kw: object
) -> Device:
    env = kw.get("apns_environment", ApnsEnvironment.PRODUCTION)
    return Device(device_id, provider, token or f"token-{device_id}", env)  # type: ignore[arg-type]


def agent(
    agent_id: str = "agent-1",
    account_id: str = "acct-1",
    *,
    available: bool = True,
    push_enabled: dict[str, bool] | None = None,
    devices: tuple[Device, ...] | None = None,
    display_name: str | None = None,
) -> AgentSnapshot:
    return AgentSnapshot(
        agent_id=agent_id,
        account_id=account_id,
        live_chat_available=available,
        push_enabled_by_site=push_enabled if push_enabled is not None else {"site-1": True},
        devices=devices if devices is not None else (device(f"{agent_id}-phone"),),
        display_name=display_name,
    )


def request(
    chat_id: str = "chat-1", *, event_id: str | None = None, at_ms: int = T0, **kw: object
) -> HandoffRequested:
    return HandoffRequested(
        event_id=event_id or f"req-{chat_id}",
        chat_id=chat_id,
        site_id=str(kw.get("site_id", "site-1")),
        requested_at_ms=at_ms,
        visitor_name=kw.get("visitor_name", "Ada"),  # type: ignore[arg-type]
        time_to_accept_s=kw.get("time_to_accept_s"),  # type: ignore[arg-type]
    )


def joined(chat_id: str = "chat-1", *, at_ms: int = T0 + 1_000, agent_id: str = "agent-1") -> AgentJoined:
    return AgentJoined(f"join-{chat_id}-{at_ms}", chat_id, "site-1", agent_id, at_ms)


def ended(chat_id: str = "chat-1", *, at_ms: int = T0 + 1_000) -> ChatEnded:
    return ChatEnded(f"end-{chat_id}-{at_ms}", chat_id, "site-1", at_ms, "visitor_left")


def world(*agents: AgentSnapshot, sites: tuple[SiteSnapshot, ...] | None = None, **policy: object) -> World:
    site_dir = SiteDirectory()
    for s in sites if sites is not None else (site(),):
        site_dir.upsert(s)
    agent_dir = AgentDirectory()
    for a in agents:
        agent_dir.upsert(a)
    return World(site_dir, agent_dir, Policy(**policy))  # type: ignore[arg-type]


E = TypeVar("E")


def only(effects: list[Effect], kind: type[E]) -> list[E]:
    """The effects of one kind, in order."""
    return [effect for effect in effects if isinstance(effect, kind)]
