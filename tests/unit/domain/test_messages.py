"""Missed-chat text: the site's template filled in literally, or a default that names everything."""

from __future__ import annotations

from service.domain.messages import alert_body, missed_message_text
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
