"""Texts the worker writes: the chatbot's missed-chat message, and the agents' pushes (the alert
and the closing update) with their localization keys and lock-screen versions.

Templates come from other teams' data, so placeholders are substituted literally — never with
`str.format`, which would let a template reach into Python objects.

A site may lack its name or contact details (the decoder drops unusable ones), and a request's
site may be unknown altogether. The visitor is answered anyway: the default text names what exists
and, with no contact detail at all, apologises and suggests trying again later. A site's own
template (`missed_message`, `push_title`, `push_body`) is used only when every placeholder it
contains has a value; otherwise the default text is sent, since a filled-in template with a hole
("call  or write to …", " is waiting") reads as broken and may have lost the only contact the
visitor was meant to get.

Localization (`LocalizedText`): the default texts go with a fixed key and its arguments, so the
agent app can show them in the phone's language (keys below; docs/integration-guide.md lists them
for the app teams). A text from the site's own template goes without a key: the site chose its
wording, in its own language, and a key would make the phone show the app's default instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, assert_never

from service.domain.events import SiteSnapshot
from service.domain.push import LocalizedText
from service.domain.rounds import Outcome

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
_TITLE = "Live chat request"
_PUSH_PLACEHOLDER = re.compile(r"\{(site_name|visitor_name)\}")

TITLE_KEY: Final = "livechat_request_title"
"""Alert title, args [site name]: "Live chat request · %@"."""
TITLE_UNNAMED_KEY: Final = "livechat_request_title_unnamed"
"""Alert title of a site without a name (or not known yet), no args: "Live chat request"."""
BODY_KEY: Final = "livechat_request_body"
"""Alert body, args [visitor name]: "%@ is waiting for an agent. Tap to open Active chats." """
BODY_ANONYMOUS_KEY: Final = "livechat_request_body_anonymous"
"""Alert body without the visitor's name (none given, or the site hides it), no args."""
CLOSED_ACCEPTED_BY_KEY: Final = "livechat_closed_accepted_by"
"""Closing update, args [agent's display name]: "Taken by %@"."""
CLOSED_ACCEPTED_KEY: Final = "livechat_closed_accepted"
"""Closing update, the joining agent's name not known, no args: "Taken by an agent"."""
CLOSED_ENDED_KEY: Final = "livechat_closed_ended"
"""Closing update, no args: "The visitor left"."""
CLOSED_MISSED_KEY: Final = "livechat_closed_missed"
"""Closing update, no args: "Missed: nobody answered in time"."""


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


@dataclass(frozen=True, slots=True)
class PushTexts:
    """What a push says: its rendered title and body (the fallback), their localization keys
    (None: show the rendered text as is) and, when the title or body names the visitor, what a
    locked screen may show instead (`Push.public_title` / `public_body`)."""

    title: str
    body: str
    title_loc: LocalizedText | None
    body_loc: LocalizedText | None
    public_title: str | None = None
    public_body: str | None = None


def alert_title(site: SiteSnapshot | None) -> str:
    """The default alert title (`site` None: not known)."""
    return f"{_TITLE} · {site.name}" if site is not None and site.name else _TITLE


def alert_body(visitor_name: str | None) -> str:
    """The default alert body."""
    if visitor_name:
        return f"{visitor_name} is waiting for an agent. Tap to open Active chats."
    return "A visitor is waiting for an agent. Tap to open Active chats."


def alert_texts(site: SiteSnapshot, visitor_name: str | None) -> PushTexts:
    """The alert's texts for a request of `site` by `visitor_name`. A site that hides the
    visitor's name gets texts without it; otherwise, when the texts name the visitor, the
    lock-screen version is the same alert worded without the name."""
    shown = None if site.hide_visitor_name else visitor_name or None
    texts = _alert_texts(site, shown)
    if shown is None:
        return texts
    anonymous = _alert_texts(site, None)
    if (texts.title, texts.body) == (anonymous.title, anonymous.body):
        return texts  # the site's templates do not name the visitor
    return PushTexts(
        texts.title, texts.body, texts.title_loc, texts.body_loc, anonymous.title, anonymous.body
    )


def _alert_texts(site: SiteSnapshot, visitor_name: str | None) -> PushTexts:
    values = {"site_name": site.name, "visitor_name": visitor_name}
    title = _filled(site.push_title, values)
    if title is None:
        title = alert_title(site)
        title_loc = LocalizedText(TITLE_KEY, (site.name,)) if site.name else LocalizedText(TITLE_UNNAMED_KEY)
    else:
        title_loc = None
    body = _filled(site.push_body, values)
    if body is None:
        body = alert_body(visitor_name)
        body_loc = (
            LocalizedText(BODY_KEY, (visitor_name,)) if visitor_name else LocalizedText(BODY_ANONYMOUS_KEY)
        )
    else:
        body_loc = None
    return PushTexts(title, body, title_loc, body_loc)


def _filled(template: str | None, values: Mapping[str, str | None]) -> str | None:
    """`template` with its placeholders filled literally; None (use the default text) when there
    is no template or one of its placeholders has no value."""
    if not template or not all(values[found] for found in _PUSH_PLACEHOLDER.findall(template)):
        return None
    return _PUSH_PLACEHOLDER.sub(lambda match: values[match.group(1)] or "", template)


def closing_texts(site: SiteSnapshot | None, outcome: Outcome, agent_name: str | None = None) -> PushTexts:
    """The closing update's texts: the alert's title without the visitor's name (the update
    replaces the alert, so it keeps its heading; `site` None: not known any more) and a body
    stating the outcome — for an accepted chat, who took it (`agent_name`) when known."""
    title_loc: LocalizedText | None
    if site is None:
        title, title_loc = _TITLE, LocalizedText(TITLE_UNNAMED_KEY)
    else:
        heading = _alert_texts(site, None)
        title, title_loc = heading.title, heading.title_loc
    match outcome:
        case Outcome.ACCEPTED if agent_name:
            body, body_loc = f"Taken by {agent_name}", LocalizedText(CLOSED_ACCEPTED_BY_KEY, (agent_name,))
        case Outcome.ACCEPTED:
            body, body_loc = "Taken by an agent", LocalizedText(CLOSED_ACCEPTED_KEY)
        case Outcome.ENDED:
            body, body_loc = "The visitor left", LocalizedText(CLOSED_ENDED_KEY)
        case Outcome.MISSED:
            body, body_loc = "Missed: nobody answered in time", LocalizedText(CLOSED_MISSED_KEY)
        case _:
            assert_never(outcome)
    return PushTexts(title, body, title_loc, body_loc)
