"""Missed-chat text: the site's template filled in literally, or a default that names everything."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from service.domain.messages import alert_body, alert_title, missed_message_text
from tests.unit.factories import site


def test_default_message_names_site_email_and_phone() -> None:
    text = missed_message_text(site())
    assert "Alpine Tours" in text
    assert "hello@alpine.example" in text
    assert "+41 44 000 00 00" in text


def test_template_placeholders_are_filled() -> None:
    template = "{site_name}: write to {contact_email} or call {contact_phone}."
    text = missed_message_text(site(missed_message=template))
    assert text == "Alpine Tours: write to hello@alpine.example or call +41 44 000 00 00."


def test_template_cannot_reach_into_python_objects() -> None:
    template = "{site_name.__class__} {0} {contact_email!r} {unknown}"
    assert missed_message_text(site(missed_message=template)) == template


def test_alert_body_without_visitor_name_is_generic() -> None:
    assert "A visitor" in alert_body(None)
    assert "Ada" in alert_body("Ada")


def test_default_message_with_only_an_email_names_it_and_no_phone() -> None:
    text = missed_message_text(site(contact_phone=None))
    assert text == (
        "Sorry, nobody from Alpine Tours could join the chat just now. "
        "Please write to us at hello@alpine.example and we will get back to you."
    )


def test_default_message_with_only_a_phone_names_it() -> None:
    text = missed_message_text(site(contact_email=None))
    assert (
        text
        == "Sorry, nobody from Alpine Tours could join the chat just now. Please call us at +41 44 000 00 00."
    )


def test_default_message_without_contact_still_answers_with_an_apology() -> None:
    text = missed_message_text(site(contact_email=None, contact_phone=None))
    assert (
        text
        == "Sorry, nobody from Alpine Tours could join the chat just now. Please try again a little later."
    )


def test_default_message_without_a_site_name_goes_without_it() -> None:
    text = missed_message_text(site(name=None, contact_phone=None))
    assert text.startswith("Sorry, nobody could join the chat just now. Please write to us at hello@")
    assert "None" not in text


def test_unknown_site_gets_a_generic_answer() -> None:
    assert (
        missed_message_text(None)
        == "Sorry, nobody could join the chat just now. Please try again a little later."
    )


@pytest.mark.parametrize(
    ("overrides", "template"),
    [
        ({"contact_phone": None}, "Call {contact_phone}!"),
        ({"contact_email": None}, "{site_name}: write to {contact_email} or call {contact_phone}."),
        ({"name": None}, "{site_name} is busy. Call {contact_phone}."),
    ],
)
def test_template_needing_a_missing_field_falls_back_to_the_default_text(
    overrides: dict[str, Any], template: str
) -> None:
    fallback = replace(site(), **overrides)
    with_template = replace(fallback, missed_message=template)
    assert missed_message_text(with_template) == missed_message_text(fallback)


def test_template_not_needing_the_missing_field_is_used() -> None:
    text = missed_message_text(site(contact_phone=None, missed_message="Mail {contact_email}, {site_name}."))
    assert text == "Mail hello@alpine.example, Alpine Tours."


def test_site_data_is_never_read_as_a_placeholder() -> None:
    text = missed_message_text(site(name="{contact_phone}", contact_phone=None))
    assert text.startswith("Sorry, nobody from {contact_phone} could join")


def test_alert_title_without_a_site_name() -> None:
    assert alert_title(site()) == "Live chat request · Alpine Tours"
    assert alert_title(site(name=None)) == "Live chat request"
