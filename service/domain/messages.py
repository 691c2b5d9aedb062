"""Texts the worker writes: the chatbot's missed-chat message and the agents' push alert.

Templates come from other teams' data, so placeholders are substituted literally — never with
`str.format`, which would let a template reach into Python objects.

A site may lack its name or contact details (the decoder drops unusable ones), and a request's
site may be unknown altogether. The visitor is answered anyway: the default text names what exists
and, with no contact detail at all, apologises and suggests trying again later. A site's own
`missed_message` is used only when every placeholder it contains has a value; otherwise the
default text is sent, since a filled-in template with a hole ("call  or write to …") reads as
broken and may have lost the only contact the visitor was meant to get.
"""

from __future__ import annotations

import re

from service.domain.events import SiteSnapshot

_APOLOGY = "Sorry, nobody from {site_name} could join the chat just now. "
_APOLOGY_UNNAMED = "Sorry, nobody could join the chat just now. "
_REQUESTS = {
    (True, True): "Please contact us at {contact_email} or {contact_phone} and we will get back to you.",
    (True, False): "Please write to us at {contact_email} and we will get back to you.",
    (False, True): "Please call us at {contact_phone}.",
    (False, False): "Please try again a little later.",
}
"""What the default text asks the visitor to do, by (has e-mail, has phone)."""
_PLACEHOLDER = re.compile(r"\{(site_name|contact_email|contact_phone)\}")


def missed_message_text(site: SiteSnapshot | None) -> str:
    """The chatbot's text for a missed chat; `site` None means the site is unknown."""
    if site is None:
        return _APOLOGY_UNNAMED + _REQUESTS[False, False]
    values = {
        "site_name": site.name,
        "contact_email": site.contact_email,
        "contact_phone": site.contact_phone,
    }
    template = site.missed_message
    if not template or not all(values[found] for found in _PLACEHOLDER.findall(template)):
        apology = _APOLOGY if site.name else _APOLOGY_UNNAMED
        template = apology + _REQUESTS[bool(site.contact_email), bool(site.contact_phone)]
    return _PLACEHOLDER.sub(lambda match: values[match.group(1)] or "", template)


def alert_title(site: SiteSnapshot) -> str:
    return f"Live chat request · {site.name}" if site.name else "Live chat request"


def alert_body(visitor_name: str | None) -> str:
    if visitor_name:
        return f"{visitor_name} is waiting for an agent. Tap to open Active chats."
    return "A visitor is waiting for an agent. Tap to open Active chats."
