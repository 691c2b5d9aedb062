"""Partial and oversized data: an unusable optional field is repaired and reported, never a reason
to drop a site snapshot or a handoff request. Only what makes the record unusable still rejects it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.domain.events import HandoffRequested, SiteSnapshot
from service.wire.inbound import (
    AGENT_UPDATED,
    HANDOFF_REQUESTED,
    REPAIRABLE,
    SITE_UPDATED,
    DecodeLimits,
    decode_agent_with_repairs,
    decode_chat_event,
    decode_site,
)
from service.wire.rejection import Reason, Rejection
from service.wire.repair import Decoded, Repair, described, truncated

LIMITS = DecodeLimits(max_time_to_accept_s=3_600)
NOW = 1_800_000_000_000 + 10_000
GOOD_CONTACT = {"email": "hi@alpine.example", "phone": "+41"}


def site_value(*, without: tuple[str, ...] = (), **data: Any) -> bytes:
    body = {
        "site_id": "s1",
        "account_id": "acct",
        "name": "Alpine Tours",
        "time_to_accept_seconds": 90,
        "contact": GOOD_CONTACT,
    } | data
    for name in without:
        del body[name]
    event = {"specversion": "1.0", "id": "v1", "source": "t", "type": SITE_UPDATED, "data": body}
    return json.dumps(event).encode()


def agent_value(**data: Any) -> bytes:
    body = {"agent_id": "a1", "account_id": "acct", "live_chat_available": True, "sites": [], "devices": []}
    event = {"specversion": "1.0", "id": "v1", "source": "t", "type": AGENT_UPDATED, "data": body | data}
    return json.dumps(event).encode()


def repaired_site(value: bytes) -> tuple[SiteSnapshot, set[tuple[str, str]]]:
    result = decode_site(b"s1", value, LIMITS)
    assert isinstance(result, Decoded), result
    assert set(result.repairs) <= set(REPAIRABLE[SITE_UPDATED]), "an undeclared repair: add it to REPAIRABLE"
    return result.value, {(r.field.value, r.action.value) for r in result.repairs}


@pytest.mark.parametrize(
    ("contact", "email", "phone", "repairs"),
    [
        ({"email": "hi@alpine.example"}, "hi@alpine.example", None, set()),
        ({"phone": "+41"}, None, "+41", set()),
        ({}, None, None, set()),
        ({"email": None, "phone": None}, None, None, set()),
        (
            {"email": "hi@alpine.example", "phone": 4144},
            "hi@alpine.example",
            None,
            {("contact.phone", "dropped")},
        ),
        (
            {"email": "hi@alpine.example", "phone": ""},
            "hi@alpine.example",
            None,
            {("contact.phone", "dropped")},
        ),
        (
            {"email": "hi@alpine.example", "phone": "9" * 65},
            "hi@alpine.example",
            None,
            {("contact.phone", "dropped")},
        ),
        ({"email": "x" * 321, "phone": "+41"}, None, "+41", {("contact.email", "dropped")}),
        ({"email": ["hi@alpine.example"], "phone": "+41"}, None, "+41", {("contact.email", "dropped")}),
        (
            {"email": "a@", "phone": {"n": 1}},
            None,
            None,
            {("contact.email", "dropped"), ("contact.phone", "dropped")},
        ),
    ],
)
def test_a_missing_or_unusable_contact_detail_is_dropped_and_the_site_is_known(
    contact: dict[str, Any], email: str | None, phone: str | None, repairs: set[tuple[str, str]]
) -> None:
    site, found = repaired_site(site_value(contact=contact))
    assert (site.contact_email, site.contact_phone) == (email, phone)
    assert (site.name, site.time_to_accept_s) == ("Alpine Tours", 90)  # the rest applies
    assert found == repairs  # absent or null is valid (optional); a bad value is reported


@pytest.mark.parametrize(
    ("value", "repairs"),
    [
        (site_value(without=("contact",)), set()),
        (site_value(contact=None), set()),
        (site_value(contact="hi@alpine.example"), {("contact", "dropped")}),
        (site_value(contact=["hi@alpine.example", "+41"]), {("contact", "dropped")}),
    ],
)
def test_a_site_without_any_contact_is_known(value: bytes, repairs: set[tuple[str, str]]) -> None:
    site, found = repaired_site(value)
    assert (site.contact_email, site.contact_phone) == (None, None)
    assert found == repairs


@pytest.mark.parametrize(
    ("tta", "expected", "repairs"),
    [
        (3_600, 3_600, set()),
        (1, 1, set()),
        (3_601, 3_600, {("time_to_accept_seconds", "clamped")}),
        (10**12, 3_600, {("time_to_accept_seconds", "clamped")}),
        (0, None, {("time_to_accept_seconds", "dropped")}),
        (-5, None, {("time_to_accept_seconds", "dropped")}),
        (1.5, None, {("time_to_accept_seconds", "dropped")}),
        ("90", None, {("time_to_accept_seconds", "dropped")}),
        (True, None, {("time_to_accept_seconds", "dropped")}),
        (None, None, set()),
    ],
)
def test_site_time_to_accept_is_clamped_or_left_to_the_default(
    tta: object, expected: int | None, repairs: set[tuple[str, str]]
) -> None:
    site, found = repaired_site(site_value(time_to_accept_seconds=tta))
    assert site.time_to_accept_s == expected
    assert found == repairs


def test_site_without_time_to_accept_uses_the_default_unreported() -> None:
    site, found = repaired_site(site_value(without=("time_to_accept_seconds",)))
    assert site.time_to_accept_s is None and found == set()


@pytest.mark.parametrize(
    ("value", "name", "repairs"),
    [
        (site_value(name="é" * 250), "é" * 199 + "…", {("name", "truncated")}),
        (site_value(name="x" * 200), "x" * 200, set()),
        (site_value(name=""), None, {("name", "dropped")}),
        (site_value(name=None), None, {("name", "dropped")}),
        (site_value(name=42), None, {("name", "dropped")}),
        (site_value(without=("name",)), None, {("name", "dropped")}),
    ],
)
def test_site_name_is_truncated_or_dropped(
    value: bytes, name: str | None, repairs: set[tuple[str, str]]
) -> None:
    site, found = repaired_site(value)
    assert site.name == name
    assert found == repairs


@pytest.mark.parametrize(
    ("missed_message", "kept", "repairs"),
    [
        ("Sorry! {contact_email}", "Sorry! {contact_email}", set()),
        ("x" * 1001, None, {("missed_message", "dropped")}),
        (["Sorry"], None, {("missed_message", "dropped")}),
        ("", None, set()),
    ],
)
def test_unusable_missed_message_is_dropped_for_the_default_text(
    missed_message: object, kept: str | None, repairs: set[tuple[str, str]]
) -> None:
    site, found = repaired_site(site_value(missed_message=missed_message))
    assert site.missed_message == kept
    assert found == repairs


def test_everything_optional_bad_at_once_still_makes_the_site_known() -> None:
    value = site_value(name="n" * 500, time_to_accept_seconds=0, contact={"email": 1}, missed_message=7)
    site, found = repaired_site(value)
    assert site == SiteSnapshot("s1", "acct", "n" * 199 + "…", None, None, None, None)
    assert found == {
        ("name", "truncated"),
        ("time_to_accept_seconds", "dropped"),
        ("contact.email", "dropped"),
        ("missed_message", "dropped"),
    }


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"s1", b"{not json", Reason.INVALID_JSON),
        (b"s1", site_value(without=("site_id",)), Reason.BAD_DATA),
        (b"s1", site_value(without=("account_id",)), Reason.BAD_DATA),
        (b"s1", site_value(account_id=7), Reason.BAD_DATA),
        (b"s1", site_value(account_id=""), Reason.BAD_DATA),
        (b"s1", site_value(site_id=["s1"]), Reason.BAD_DATA),
        (b"s2", site_value(), Reason.KEY_MISMATCH),
        (None, site_value(), Reason.KEY_MISMATCH),
    ],
)
def test_only_what_makes_a_site_unusable_rejects_it(key: bytes | None, value: bytes, reason: Reason) -> None:
    result = decode_site(key, value, LIMITS)
    assert isinstance(result, Rejection)
    assert result.reason is reason


# --------------------------------------------------------------------------- handoff requests


def handoff(**data: Any) -> bytes:
    body = {"chat_id": "c1", "site_id": "s1", "requested_at": "2027-01-15T08:00:00Z"} | data
    event = {"specversion": "1.0", "id": "ev-1", "source": "t", "type": "livechat.chat.handoff_requested"}
    return json.dumps(event | {"data": body}).encode()


def repaired_request(value: bytes) -> tuple[HandoffRequested, set[tuple[str, str]]]:
    result = decode_chat_event(b"c1", value, NOW, LIMITS)
    assert isinstance(result, Decoded), result
    assert isinstance(result.value, HandoffRequested)
    assert set(result.repairs) <= set(REPAIRABLE["livechat.chat.handoff_requested"])
    return result.value, {(r.field.value, r.action.value) for r in result.repairs}


@pytest.mark.parametrize(
    ("visitor", "name", "repairs"),
    [
        ({"name": "Ada"}, "Ada", set()),
        ({"name": "é" * 1500, "email": "ada@example.com"}, "é" * 999 + "…", {("visitor.name", "truncated")}),
        ({"name": 42}, None, {("visitor.name", "dropped")}),
        ({"name": {"first": "Ada"}}, None, {("visitor.name", "dropped")}),
        ({"email": "ada@example.com"}, None, set()),
        ("Ada", None, {("visitor", "dropped")}),
        (["Ada"], None, {("visitor", "dropped")}),
        (None, None, set()),
    ],
)
def test_request_with_a_bad_visitor_is_served_without_it(
    visitor: object, name: str | None, repairs: set[tuple[str, str]]
) -> None:
    request, found = repaired_request(handoff(visitor=visitor, time_to_accept_seconds=30))
    assert (request.chat_id, request.site_id, request.requested_at_ms) == ("c1", "s1", 1_800_000_000_000)
    assert request.visitor_name == name
    assert request.time_to_accept_s == 30
    assert found == repairs


@pytest.mark.parametrize("tta", [0, -5, 3_601, 10**12, 1.5, "60", True, [60]])
def test_request_with_a_bad_override_is_served_with_the_sites_setting(tta: object) -> None:
    request, found = repaired_request(handoff(visitor={"name": "Ada"}, time_to_accept_seconds=tta))
    assert request.time_to_accept_s is None  # the site's setting applies
    assert request.visitor_name == "Ada"
    assert found == {("time_to_accept_seconds", "dropped")}


def test_request_with_both_bad_reports_each_once() -> None:
    request, found = repaired_request(handoff(visitor={"name": "x" * 5000}, time_to_accept_seconds=0))
    assert request.visitor_name == "x" * 999 + "…"
    assert found == {("visitor.name", "truncated"), ("time_to_accept_seconds", "dropped")}


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"c1", handoff(chat_id=None, visitor=5), Reason.BAD_DATA),
        (b"c1", handoff(site_id=7, time_to_accept_seconds=0), Reason.BAD_DATA),
        (b"c1", handoff(requested_at="yesterday", visitor="Ada"), Reason.BAD_DATA),
        (b"c1", handoff(requested_at="2099-01-01T00:00:00Z", visitor="Ada"), Reason.BAD_TIMESTAMP),
        (b"other", handoff(visitor="Ada"), Reason.KEY_MISMATCH),
        (
            b"c1",
            b'{"specversion": "1.0", "id": "e", "source": "s", "type": "livechat.chat.handoff',
            Reason.INVALID_JSON,
        ),
    ],
)
def test_only_what_makes_a_round_impossible_rejects_a_request(
    key: bytes, value: bytes, reason: Reason
) -> None:
    result = decode_chat_event(key, value, NOW, LIMITS)
    assert isinstance(result, Rejection)
    assert result.reason is reason


def test_repairs_are_described_by_field_and_action_never_the_value() -> None:
    result = decode_chat_event(b"c1", handoff(visitor={"name": "Secret Visitor" * 100}), NOW, LIMITS)
    assert isinstance(result, Decoded)
    assert described(result.repairs) == {"visitor.name": "truncated"}
    assert "Secret" not in repr(result.repairs)


def test_truncation_keeps_short_texts_and_cuts_on_a_character_boundary() -> None:
    assert truncated("Ada", 3) == "Ada"
    assert truncated("🙂🙂🙂🙂", 3) == "🙂🙂…"
    assert len(truncated("x" * 10, 5)) == 5


# One record per repair the decoders declare: each must really make it, so no metric label
# series is initialised for a repair that can never happen (and every one can be alerted on).
MAKES_EACH_REPAIR = {
    SITE_UPDATED: [
        site_value(name="x" * 201),
        site_value(name=""),
        site_value(time_to_accept_seconds=3_601),
        site_value(time_to_accept_seconds=0),
        site_value(contact="hi@alpine.example"),
        site_value(contact={"email": 1}),
        site_value(contact={"phone": 1}),
        site_value(missed_message=7),
        site_value(push_title=7),
        site_value(push_body="x" * 1025),
        site_value(hide_visitor_name="yes"),
        site_value(reminder_after_seconds=0),
    ],
    HANDOFF_REQUESTED: [
        handoff(visitor="Ada"),
        handoff(visitor={"name": "x" * 1001}),
        handoff(visitor={"name": 1}),
        handoff(time_to_accept_seconds=0),
    ],
    AGENT_UPDATED: [
        agent_value(display_name="x" * 101),
        agent_value(display_name=7),
    ],
}


def test_the_declared_repairs_are_exactly_those_the_decoders_make() -> None:
    made: dict[str, list[Repair]] = {}
    for value in MAKES_EACH_REPAIR[SITE_UPDATED]:
        site = decode_site(b"s1", value, LIMITS)
        assert isinstance(site, Decoded), site
        made.setdefault(SITE_UPDATED, []).extend(site.repairs)
    for value in MAKES_EACH_REPAIR[HANDOFF_REQUESTED]:
        request = decode_chat_event(b"c1", value, NOW, LIMITS)
        assert isinstance(request, Decoded), request
        made.setdefault(HANDOFF_REQUESTED, []).extend(request.repairs)
    for value in MAKES_EACH_REPAIR[AGENT_UPDATED]:
        agent = decode_agent_with_repairs(b"a1", value, LIMITS)
        assert isinstance(agent, Decoded), agent
        made.setdefault(AGENT_UPDATED, []).extend(agent.repairs)
    assert {name: sorted(set(repairs), key=str) for name, repairs in made.items()} == {
        name: sorted(repairs, key=str) for name, repairs in REPAIRABLE.items()
    }
    assert all(len(set(repairs)) == len(repairs) for repairs in REPAIRABLE.values()), "declared twice"
