"""The snapshots' optional push fields (#12): the agent's `display_name`, the site's `push_title`,
`push_body`, `hide_visitor_name` and `reminder_after_seconds`. A usable value is taken as sent; an
unusable one is repaired and reported — dropped, truncated, or (the privacy switch) taken as on —
and the snapshot is used all the same: never a dead letter for an optional field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from service.domain.events import AgentSnapshot, SiteSnapshot
from service.wire.inbound import AGENT_UPDATED, SITE_UPDATED, DecodeLimits, decode_agent, decode_site
from service.wire.repair import Decoded
from service.wire.snapshots import AGENT_REPAIRS, MAX_TEMPLATE_CHARS, decode_agent_with_repairs

LIMITS = DecodeLimits(max_time_to_accept_s=3_600)
ABSENT = object()


def _event(event_type: str, body: dict[str, Any]) -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": "v1", "source": "t", "type": event_type, "data": body}
    ).encode()


def site_value(field: str, value: object) -> bytes:
    body: dict[str, Any] = {"site_id": "s1", "account_id": "acct", "name": "Alpine Tours"}
    if value is not ABSENT:
        body[field] = value
    return _event(SITE_UPDATED, body)


def agent_value(value: object) -> bytes:
    body: dict[str, Any] = {
        "agent_id": "a1",
        "account_id": "acct",
        "live_chat_available": True,
        "sites": [{"site_id": "s1", "push_enabled": True}],
        "devices": [{"device_id": "d1", "provider": "fcm", "token": "t1"}],
    }
    if value is not ABSENT:
        body["display_name"] = value
    return _event(AGENT_UPDATED, body)


def decoded_site(value: bytes) -> tuple[SiteSnapshot, set[tuple[str, str]]]:
    result = decode_site(b"s1", value, LIMITS)
    assert isinstance(result, Decoded), result
    assert result.value.name == "Alpine Tours", "the rest of the snapshot applies"
    return result.value, {(r.field.value, r.action.value) for r in result.repairs}


TEMPLATE = "{visitor_name} wartet · {site_name}"


@pytest.mark.parametrize("field", ["push_title", "push_body"])
@pytest.mark.parametrize(
    ("value", "expected", "repaired"),
    [
        (TEMPLATE, TEMPLATE, False),
        ("x" * MAX_TEMPLATE_CHARS, "x" * MAX_TEMPLATE_CHARS, False),
        (ABSENT, None, False),
        (None, None, False),
        ("", None, False),  # a producer clearing its template
        ("  \n", None, False),
        ("x" * (MAX_TEMPLATE_CHARS + 1), None, True),  # dropped, not cut: the default text applies
        (7, None, True),
        (["{site_name}"], None, True),
    ],
)
def test_an_unusable_template_is_dropped_and_reported(
    field: str, value: object, expected: str | None, repaired: bool
) -> None:
    site, repairs = decoded_site(site_value(field, value))
    assert getattr(site, field) == expected
    assert repairs == ({(field, "dropped")} if repaired else set())


@pytest.mark.parametrize(
    ("value", "expected", "repairs"),
    [
        (True, True, set()),
        (False, False, set()),
        (ABSENT, False, set()),  # the contract's default: off
        (None, False, set()),
        # A switch sent wrong fails safe: the name is hidden, and the repair says so.
        ("false", True, {("hide_visitor_name", "failed_safe")}),
        ("yes", True, {("hide_visitor_name", "failed_safe")}),
        (0, True, {("hide_visitor_name", "failed_safe")}),
        ({"on": True}, True, {("hide_visitor_name", "failed_safe")}),
    ],
)
def test_hide_visitor_name_is_off_by_default_and_on_when_unusable(
    value: object, expected: bool, repairs: set[tuple[str, str]]
) -> None:
    site, found = decoded_site(site_value("hide_visitor_name", value))
    assert site.hide_visitor_name is expected
    assert found == repairs


@pytest.mark.parametrize(
    ("value", "expected", "repaired"),
    [
        (30, 30, False),
        (1, 1, False),
        (3_600, 3_600, False),
        (ABSENT, None, False),
        (None, None, False),
        (3_601, None, True),  # after every possible deadline: it could never be sent
        (10**30, None, True),
        (0, None, True),
        (-5, None, True),
        (1.5, None, True),
        ("30", None, True),
        (True, None, True),
    ],
)
def test_reminder_after_seconds_outside_one_to_the_longest_time_to_accept_is_dropped(
    value: object, expected: int | None, repaired: bool
) -> None:
    site, repairs = decoded_site(site_value("reminder_after_seconds", value))
    assert site.reminder_after_s == expected
    assert repairs == ({("reminder_after_seconds", "dropped")} if repaired else set())


@pytest.mark.parametrize(
    ("value", "expected", "repairs"),
    [
        ("Bea Müller", "Bea Müller", set()),
        ("x" * 100, "x" * 100, set()),
        ("x" * 101, "x" * 99 + "…", {("display_name", "truncated")}),
        (ABSENT, None, set()),
        (None, None, set()),
        ("", None, set()),
        ("   ", None, set()),
        (7, None, {("display_name", "dropped")}),
        (["Bea"], None, {("display_name", "dropped")}),
    ],
)
def test_an_unusable_display_name_is_repaired_and_the_agent_is_known(
    value: object, expected: str | None, repairs: set[tuple[str, str]]
) -> None:
    result = decode_agent_with_repairs(b"a1", agent_value(value), LIMITS)
    assert isinstance(result, Decoded), result
    assert result.value.display_name == expected
    assert len(result.value.devices) == 1, "the rest of the snapshot applies"
    assert {(r.field.value, r.action.value) for r in result.repairs} == repairs
    assert set(result.repairs) <= set(AGENT_REPAIRS), "an undeclared repair: add it to AGENT_REPAIRS"
    plain = decode_agent(b"a1", agent_value(value), LIMITS)
    assert isinstance(plain, AgentSnapshot)
    assert plain == result.value


def test_every_declared_agent_repair_is_made() -> None:
    made = set()
    for value in ("x" * 101, 7):
        result = decode_agent_with_repairs(b"a1", agent_value(value), LIMITS)
        assert isinstance(result, Decoded)
        made |= set(result.repairs)
    assert made == set(AGENT_REPAIRS)
