"""Texts the worker writes: the chatbot's missed-chat message and the agents' push alert.

Templates come from other teams' data, so placeholders are substituted literally — never with
`str.format`, which would let a template reach into Python objects.
"""

from __future__ import annotations

import re

from service.domain.events import SiteSnapshot

DEFAULT_MISSED_MESSAGE = (
    "Sorry, nobody from {site_name} could join the chat just now. "
    "Please contact us at {contact_email} or {contact_phone} and we will get back to you."
)
_PLACEHOLDER = re.compile(r"\{(site_name|contact_email|contact_phone)\}")


def missed_message_text(site: SiteSnapshot) -> str:
    values = {
        "site_name": site.name,
        "contact_email": site.contact_email,
        "contact_phone": site.contact_phone,
    }
    template = site.missed_message or DEFAULT_MISSED_MESSAGE
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)], template)


def alert_title(site: SiteSnapshot) -> str:
    return f"Live chat request · {site.name}"


def alert_body(visitor_name: str | None) -> str:
    if visitor_name:
        return f"{visitor_name} is waiting for an agent. Tap to open Active chats."
    return "A visitor is waiting for an agent. Tap to open Active chats."
