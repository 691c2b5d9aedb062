"""The words of the pushes (`messages.alert_texts`, `messages.closing_texts`): site templates filled
literally with the default text as fallback, localization keys only for default texts, the visitor's
name never shown for a site that hides it, and a lock-screen version whenever the alert names them."""

from __future__ import annotations

import pytest

from service.domain.messages import (
    BODY_ANONYMOUS_KEY,
    BODY_KEY,
    CLOSED_ACCEPTED_BY_KEY,
    CLOSED_ACCEPTED_KEY,
    CLOSED_ENDED_KEY,
    CLOSED_MISSED_KEY,
    TITLE_KEY,
    TITLE_UNNAMED_KEY,
    PushTexts,
    alert_texts,
    closing_texts,
)
from service.domain.push import LocalizedText
from service.domain.rounds import Outcome
from tests.unit.factories import site

DEFAULT_BODY = "Ada is waiting for an agent. Tap to open Active chats."
ANONYMOUS_BODY = "A visitor is waiting for an agent. Tap to open Active chats."


def test_default_alert_names_site_and_visitor_with_keys_and_a_nameless_lock_screen_version() -> None:
    assert alert_texts(site(), "Ada") == PushTexts(
        title="Live chat request · Alpine Tours",
        body=DEFAULT_BODY,
        title_loc=LocalizedText(TITLE_KEY, ("Alpine Tours",)),
        body_loc=LocalizedText(BODY_KEY, ("Ada",)),
        public_title="Live chat request · Alpine Tours",
        public_body=ANONYMOUS_BODY,
    )


def test_default_alert_without_visitor_or_site_name_uses_the_argument_less_keys() -> None:
    assert alert_texts(site(name=None), None) == PushTexts(
        title="Live chat request",
        body=ANONYMOUS_BODY,
        title_loc=LocalizedText(TITLE_UNNAMED_KEY),
        body_loc=LocalizedText(BODY_ANONYMOUS_KEY),
    )  # nothing names the visitor: no lock-screen version needed


def test_empty_visitor_name_counts_as_none() -> None:
    assert alert_texts(site(), "") == alert_texts(site(), None)


def test_site_templates_are_filled_literally_and_sent_without_keys() -> None:
    templated = site(push_title="{site_name}: chat!", push_body="{visitor_name} wartet auf {site_name}")
    texts = alert_texts(templated, "Ada")
    assert (texts.title, texts.body) == ("Alpine Tours: chat!", "Ada wartet auf Alpine Tours")
    assert (texts.title_loc, texts.body_loc) == (None, None), "the site's own wording wins over the app's"
    # The lock screen gets the title (no name in it) and the default body without the name.
    assert (texts.public_title, texts.public_body) == ("Alpine Tours: chat!", ANONYMOUS_BODY)


def test_only_the_templated_part_loses_its_key() -> None:
    texts = alert_texts(site(push_title="Chat at {site_name}"), "Ada")
    assert texts.title_loc is None
    assert (texts.body, texts.body_loc) == (DEFAULT_BODY, LocalizedText(BODY_KEY, ("Ada",)))
    texts = alert_texts(site(push_body="Someone is waiting"), "Ada")
    assert texts.title_loc == LocalizedText(TITLE_KEY, ("Alpine Tours",))
    assert (texts.body, texts.body_loc) == ("Someone is waiting", None)


def test_templates_that_do_not_name_the_visitor_need_no_lock_screen_version() -> None:
    texts = alert_texts(site(push_title="New chat", push_body="On {site_name}"), "Ada")
    assert (texts.title, texts.body) == ("New chat", "On Alpine Tours")
    assert (texts.public_title, texts.public_body) == (None, None)


@pytest.mark.parametrize(
    ("template", "site_name", "visitor"),
    [
        ("{visitor_name} is waiting", "Alpine Tours", None),
        ("{site_name} has a visitor", None, "Ada"),
    ],
)
def test_a_template_whose_placeholder_has_no_value_falls_back_to_the_default_text(
    template: str, site_name: str | None, visitor: str | None
) -> None:
    plain = site(name=site_name)
    assert alert_texts(site(name=site_name, push_title=template), visitor).title == (
        alert_texts(plain, visitor).title
    )
    with_body_template = alert_texts(site(name=site_name, push_body=template), visitor)
    assert with_body_template.body == alert_texts(plain, visitor).body
    assert with_body_template.body_loc == alert_texts(plain, visitor).body_loc, "the default's key comes back"


def test_templates_cannot_reach_into_python_objects_nor_reread_filled_values() -> None:
    odd = "{site_name.__class__} {0} {visitor_name!r} {contact_email}"
    assert alert_texts(site(push_title=odd), "Ada").title == odd
    texts = alert_texts(site(name="{visitor_name}", push_body="{site_name}/{visitor_name}"), "{site_name}")
    assert texts.body == "{visitor_name}/{site_name}"


def test_a_site_that_hides_the_visitor_name_never_gets_it_in_any_text() -> None:
    hiding = site(hide_visitor_name=True)
    assert alert_texts(hiding, "Ada") == alert_texts(hiding, None)
    texts = alert_texts(hiding, "Ada")
    assert "Ada" not in repr(texts)
    assert texts.body_loc == LocalizedText(BODY_ANONYMOUS_KEY)
    templated = alert_texts(site(hide_visitor_name=True, push_title="{visitor_name} @ {site_name}"), "Ada")
    assert templated.title == "Live chat request · Alpine Tours", "its template needs the name: default"
    assert "Ada" not in repr(templated)


def test_a_visitor_named_in_the_title_only_is_left_out_of_the_lock_screen_title() -> None:
    texts = alert_texts(site(push_title="{visitor_name} · {site_name}", push_body="Tap to answer"), "Ada")
    assert (texts.title, texts.body) == ("Ada · Alpine Tours", "Tap to answer")
    assert (texts.public_title, texts.public_body) == ("Live chat request · Alpine Tours", "Tap to answer")


@pytest.mark.parametrize(
    ("outcome", "agent_name", "body", "body_loc"),
    [
        (Outcome.ACCEPTED, "Bea", "Taken by Bea", LocalizedText(CLOSED_ACCEPTED_BY_KEY, ("Bea",))),
        (Outcome.ACCEPTED, None, "Taken by an agent", LocalizedText(CLOSED_ACCEPTED_KEY)),
        (Outcome.ENDED, None, "The visitor left", LocalizedText(CLOSED_ENDED_KEY)),
        (Outcome.MISSED, None, "Missed: nobody answered in time", LocalizedText(CLOSED_MISSED_KEY)),
    ],
)
def test_closing_texts_state_the_outcome_under_the_alerts_heading(
    outcome: Outcome, agent_name: str | None, body: str, body_loc: LocalizedText
) -> None:
    assert closing_texts(site(), outcome, agent_name) == PushTexts(
        title="Live chat request · Alpine Tours",
        body=body,
        title_loc=LocalizedText(TITLE_KEY, ("Alpine Tours",)),
        body_loc=body_loc,
    )


def test_closing_title_of_an_unknown_site_and_of_templated_titles() -> None:
    unknown = closing_texts(None, Outcome.MISSED)
    assert (unknown.title, unknown.title_loc) == ("Live chat request", LocalizedText(TITLE_UNNAMED_KEY))
    plain = closing_texts(site(push_title="Chat on {site_name}"), Outcome.ENDED)
    assert (plain.title, plain.title_loc) == ("Chat on Alpine Tours", None)
    naming = closing_texts(site(push_title="{visitor_name} on {site_name}"), Outcome.ENDED)
    assert naming.title == "Live chat request · Alpine Tours", "a closing update never names the visitor"


def test_other_outcomes_ignore_an_agent_name() -> None:
    assert closing_texts(site(), Outcome.ENDED, "Bea") == closing_texts(site(), Outcome.ENDED)
