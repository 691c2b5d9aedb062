"""Dead-letter redaction: no personal value survives, whatever shape the rejected record has, and
a record with nothing personal keeps its original bytes."""

from __future__ import annotations

import json

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from service.wire.redaction import REDACTED, RedactedValue, Redaction, redact_personal_data

EMAIL = "ada.visitor@example.org"
NAME = "Ada Lovelace"
TOKEN = "fcm-token-ABCDEF0123456789"


def _request(visitor: object) -> bytes:
    return json.dumps(
        {
            "specversion": "1.0",
            "id": "e1",
            "source": "urn:chatbot",
            "type": "livechat.chat.handoff_requested",
            "data": {"chat_id": "c1", "site_id": "s1", "requested_at": "bad", "visitor": visitor},
        }
    ).encode()


def _assert_clean(value: bytes | None) -> None:
    assert value is not None
    for secret in (EMAIL, NAME, TOKEN):
        assert secret.encode() not in value


def test_the_visitor_of_a_rejected_handoff_request_is_replaced_and_the_rest_kept() -> None:
    original = _request({"name": NAME, "email": EMAIL, "location": "Lisbon", "device": "iPhone"})
    redacted = redact_personal_data(original)
    assert redacted.redaction is Redaction.FIELDS
    _assert_clean(redacted.value)
    document = json.loads(redacted.value or b"")
    assert document["data"] == {"chat_id": "c1", "site_id": "s1", "requested_at": "bad", "visitor": REDACTED}
    assert document["type"] == "livechat.chat.handoff_requested"


def test_device_tokens_and_display_name_of_an_agent_snapshot_are_replaced() -> None:
    devices = [{"device_id": f"d{i}", "provider": "fcm", "token": f"{TOKEN}{i}"} for i in range(3)]
    original = json.dumps(
        {
            "type": "livechat.agent.updated",
            "data": {"agent_id": "a1", "display_name": NAME, "devices": devices},
        }
    ).encode()
    redacted = redact_personal_data(original)
    _assert_clean(redacted.value)
    data = json.loads(redacted.value or b"")["data"]
    assert data["display_name"] == REDACTED
    assert [device["token"] for device in data["devices"]] == [REDACTED] * 3
    assert [device["device_id"] for device in data["devices"]] == ["d0", "d1", "d2"]


def test_a_site_snapshots_contact_details_are_replaced() -> None:
    original = json.dumps(
        {"data": {"site_id": "s1", "name": "Tours", "contact": {"email": EMAIL, "phone": "+351 21 000"}}}
    ).encode()
    data = json.loads(redact_personal_data(original).value or b"")["data"]
    assert data == {"site_id": "s1", "name": "Tours", "contact": {"email": REDACTED, "phone": REDACTED}}


def test_personal_members_are_found_wherever_a_broken_producer_put_them_and_whatever_their_type() -> None:
    shapes: list[object] = [
        {"visitor": {"name": NAME, "email": EMAIL}},  # at the top level, outside data
        {"data": [{"nested": [{"visitor": [NAME, EMAIL]}]}]},  # inside arrays, visitor of the wrong type
        {"data": {"visitor": NAME}},  # visitor as a string
        {"data": {"token": {"value": TOKEN}}},  # token as an object
        {"data": {"note": f"call {NAME} at {EMAIL}"}},  # an e-mail address in free text
        {"data": json.dumps({"visitor": {"name": NAME}})},  # data encoded twice
        [{"email": EMAIL}],  # not an object at all
        EMAIL,  # a bare JSON string
    ]
    for shape in shapes:
        redacted = redact_personal_data(json.dumps(shape).encode())
        assert redacted.redaction is Redaction.FIELDS, shape
        _assert_clean(redacted.value)


def test_nothing_personal_keeps_the_original_bytes_exactly() -> None:
    original = b'{ "specversion": "1.0",  "type": "livechat.chat.ended", "data": {"chat_id": "c1"} }'
    assert redact_personal_data(original) == RedactedValue(original, None)
    assert redact_personal_data(None).value is None
    assert redact_personal_data(None).redaction is None
    assert redact_personal_data(b"[]").value == b"[]"


def test_a_value_that_is_not_json_is_dropped_not_guessed_at() -> None:
    for original in (
        f'{{"data": {{"visitor": {{"email": "{EMAIL}"'.encode(),  # truncated JSON
        b'{"visitor": "\xff\xfe' + NAME.encode() + b'"}',  # not UTF-8
        b'{"email": "\\ud800"}',  # a lone surrogate escape: JSON no decoder accepts as text
        b'{"email": "a@b.c", "n": 1e400}',  # a number no float holds
        b"name=" + NAME.encode() + b"&email=" + EMAIL.encode(),  # a form, not JSON
        b"",
    ):
        redacted = redact_personal_data(original)
        assert (redacted.value, redacted.redaction) == (None, Redaction.BODY), original


def test_nesting_deeper_than_the_decoder_allows_is_dropped_and_deep_but_decodable_nesting_is_walked() -> None:
    too_deep = b'{"a":' * 100_000 + b'{"email":"' + EMAIL.encode() + b'"}' + b"}" * 100_000
    assert redact_personal_data(too_deep).redaction is Redaction.BODY
    deep = b"[" * 900 + json.dumps({"email": EMAIL}).encode() + b"]" * 900  # Python's stack is ~1,000 frames
    redacted = redact_personal_data(deep)
    assert redacted.redaction is Redaction.FIELDS
    _assert_clean(redacted.value)


def test_a_huge_record_is_redacted_and_never_grows() -> None:
    many = [{"device_id": f"d{i}", "token": f"{TOKEN}-{i}"} for i in range(20_000)]
    original = json.dumps({"data": {"devices": many}}).encode()
    redacted = redact_personal_data(original)
    assert redacted.redaction is Redaction.FIELDS
    _assert_clean(redacted.value)
    assert len(redacted.value or b"") < len(original)
    tiny = json.dumps([{"token": 1} for _ in range(10_000)]).encode()  # the marker is longer than each value
    assert redact_personal_data(tiny) == RedactedValue(None, Redaction.BODY)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["email", "name", "visitor", "token", "x", "data"]), children, max_size=4
        )
    ),
    max_leaves=30,
)


@given(json_values, st.sampled_from([EMAIL, TOKEN]))
@settings(max_examples=300, deadline=None)
def test_a_personal_value_planted_anywhere_under_a_personal_member_never_survives(
    document: object, secret: str
) -> None:
    planted = {"data": document, "x": [{"visitor": {"name": secret}}, {"token": secret}]}
    redacted = redact_personal_data(msgspec.json.encode(planted))
    assert redacted.redaction is not None
    assert redacted.value is None or secret.encode() not in redacted.value
