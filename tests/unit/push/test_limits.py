"""Provider limits (pure): the derived collapse id and cutting alert texts to fit the payload limit."""

from __future__ import annotations

import json
import re

import pytest

from service.push.limits import (
    ELLIPSIS,
    MAX_COLLAPSE_ID_BYTES,
    MAX_PAYLOAD_BYTES,
    AlertTexts,
    PayloadTooLargeError,
    Texts,
    collapse_id_for,
    ensure_fits,
    fit_texts,
    truncate_utf8,
)

_DERIVED = re.compile(r"[0-9A-Za-z._:-]{0,20}~[0-9A-Za-z_-]{43}")


# -- collapse id ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "chat_id",
    ["chat-1", "0f3c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b", "x" * 64, "a:b/c=d?e_f~g", "!"],
)
def test_a_chat_id_that_fits_as_a_header_is_its_own_collapse_id(chat_id: str) -> None:
    assert collapse_id_for(chat_id) == chat_id


@pytest.mark.parametrize(
    "chat_id",
    [
        "x" * 65,
        "livechat:visitor-chat:" + "0f3c2a4e-5b6d-4e7f-8a9b-0c1d2e3f4a5b" * 2,  # 94 bytes
        "c" * 256,  # the decoder's longest id
        "😀" * 256,  # 1024 bytes
        "会话" * 10,  # 20 characters, 60 bytes: fits in bytes, but not ASCII
        "chat 1",  # a space
        " chat-1",  # leading whitespace is not a valid HTTP/2 header value
        "chat\n1",  # a control character
    ],
)
def test_any_other_chat_id_becomes_a_prefix_and_its_hash_within_64_ascii_bytes(chat_id: str) -> None:
    derived = collapse_id_for(chat_id)

    assert _DERIVED.fullmatch(derived), derived
    assert len(derived.encode()) <= MAX_COLLAPSE_ID_BYTES
    assert collapse_id_for(chat_id) == derived, "the same chat id gives the same collapse id"


def test_a_derived_collapse_id_keeps_a_readable_prefix_and_the_full_sha256() -> None:
    # Pinned: a different derivation after a deploy would stop alerts replacing each other.
    long_id = "livechat-" + "9" * 100

    assert collapse_id_for(long_id) == "livechat-99999999999~2CHScqrSKFQtT36ePxCMOMTNJkrAAl0FiZbThbry5s8"
    assert len(collapse_id_for(long_id)) == MAX_COLLAPSE_ID_BYTES


def test_long_chat_ids_sharing_a_prefix_get_different_collapse_ids() -> None:
    prefix = "tenant-42:chat:" + "0" * 60
    derived = {collapse_id_for(prefix + str(n)) for n in range(1000)}
    assert len(derived) == 1000


def test_a_derived_collapse_id_is_left_alone_when_derived_again() -> None:
    derived = collapse_id_for("y" * 100)
    assert collapse_id_for(derived) == derived


# -- truncate_utf8 --------------------------------------------------------------------------------


def test_a_text_that_fits_is_unchanged() -> None:
    assert truncate_utf8("Ada", 3) == "Ada"
    assert truncate_utf8("", 0) == ""


@pytest.mark.parametrize("text", ["a" * 70, "é" * 50, "会" * 50, "😀" * 50, "a😀é会" * 20])
@pytest.mark.parametrize("max_bytes", [3, 4, 5, 6, 7, 10, 31, 64])
def test_a_cut_text_ends_in_an_ellipsis_within_the_bytes_on_a_character_boundary(
    text: str, max_bytes: int
) -> None:
    cut = truncate_utf8(text, max_bytes)

    assert cut.endswith(ELLIPSIS)
    assert text.startswith(cut.removesuffix(ELLIPSIS))  # whole characters of the original, no U+FFFD
    assert len(cut.encode()) <= max_bytes
    # The longest such prefix: one more character would not fit.
    kept = len(cut) - 1
    assert len(text[: kept + 1].encode()) + len(ELLIPSIS.encode()) > max_bytes


def test_no_room_for_the_ellipsis_leaves_nothing() -> None:
    assert truncate_utf8("abcdef", 2) == ""


# -- fit_texts --------------------------------------------------------------------------------------


def json_size(title: str | None, body: str | None, data: str = "") -> int:
    """A stand-in for a provider's measure: the UTF-8 bytes of a small JSON payload."""
    payload = {"alert": {"title": title, "body": body}, "data": data}
    return len(json.dumps(payload, ensure_ascii=False).encode())


def sized(texts: Texts) -> int:
    title, body = texts
    return json_size(title, body)


def test_texts_that_fit_are_unchanged_after_a_single_measurement() -> None:
    calls: list[Texts] = []

    def size_of(texts: Texts) -> int:
        calls.append(texts)
        return sized(texts)

    assert fit_texts(("Live chat request · Alpine Tours", "Ada is waiting"), size_of) == (
        "Live chat request · Alpine Tours",
        "Ada is waiting",
    )
    assert len(calls) == 1


@pytest.mark.parametrize(
    ("title", "body"),
    [
        ("Live chat request · " + "🏔" * 200, "😀" * 1000 + " is waiting for an agent."),
        ("Live chat request · " + "観光" * 100, "名" * 1000),
        ("Live chat request · " + "A" * 200, "B" * 1000),  # fits: ASCII at the decoder's limits
        ("Live chat request · " + "😀" * 1000, "Ada is waiting"),
        (None, "😀" * 2000),
        ("😀" * 2000, None),
        ('a\n\x01"' * 700, "b\\\x7f" * 800),  # characters JSON escapes (up to 6 bytes each)
    ],
)
def test_fitted_texts_fit_the_limit_and_keep_as_much_as_fits(title: str | None, body: str | None) -> None:
    fitted_title, fitted_body = fit_texts((title, body), sized)

    assert json_size(fitted_title, fitted_body) <= MAX_PAYLOAD_BYTES
    for original, fitted in ((title, fitted_title), (body, fitted_body)):
        assert (original is None) == (fitted is None)
        if original is not None and fitted is not None and fitted != original:
            assert fitted.endswith(ELLIPSIS)
            assert original.startswith(fitted.removesuffix(ELLIPSIS))
    # Nothing was cut that needed no cut: one more byte for each text would not fit.
    if (fitted_title, fitted_body) != (title, body):
        cap = max(len((text or "").encode()) for text in (fitted_title, fitted_body))
        wider = (
            None if title is None else truncate_utf8(title, cap + 4),
            None if body is None else truncate_utf8(body, cap + 4),
        )
        assert json_size(*wider) > MAX_PAYLOAD_BYTES


def test_the_shorter_text_stays_whole_while_the_longer_is_cut() -> None:
    title = "Live chat request · " + "観" * 200  # 620 bytes
    body = "😀" * 1000 + " is waiting for an agent."

    fitted_title, fitted_body = fit_texts((title, body), sized)

    assert fitted_title == title
    assert fitted_body is not None and fitted_body.startswith("😀") and fitted_body.endswith(ELLIPSIS)
    assert MAX_PAYLOAD_BYTES - 4 <= json_size(fitted_title, fitted_body) <= MAX_PAYLOAD_BYTES


def test_fitting_is_deterministic() -> None:
    title, body = "T" + "観" * 300, "😀" * 1000
    assert fit_texts((title, body), sized) == fit_texts((title, body), sized)


def test_data_too_big_for_any_cut_of_the_texts_is_refused() -> None:
    with pytest.raises(PayloadTooLargeError):
        fit_texts(
            ("title", "body"), lambda texts: json_size(texts[0], texts[1], data="x" * MAX_PAYLOAD_BYTES)
        )


def test_a_payload_without_texts_is_checked_against_the_limit() -> None:
    ensure_fits(MAX_PAYLOAD_BYTES)
    with pytest.raises(PayloadTooLargeError):
        ensure_fits(MAX_PAYLOAD_BYTES + 1)
    assert issubclass(PayloadTooLargeError, ValueError)


# -- AlertTexts: title, body and loc args fitted together -------------------------------------------


def loc_size(texts: AlertTexts, data: str = "") -> int:
    """A stand-in payload with loc keys: the args are in it, and so measured."""
    alert = {
        "title": texts.title,
        "body": texts.body,
        "title-loc-key": "ALERT_TITLE",
        "title-loc-args": list(texts.title_args),
        "loc-key": "ALERT_BODY",
        "loc-args": list(texts.body_args),
    }
    return len(json.dumps({"alert": alert, "data": data}, ensure_ascii=False).encode())


def test_loc_args_are_measured_and_cut_under_the_same_cap_as_the_texts_they_fill_in() -> None:
    site, visitor = "Alpine Tours", "😀" * 900
    texts = AlertTexts(f"Live chat · {site}", f"{visitor} is waiting", (site,), (visitor,))
    assert loc_size(AlertTexts(texts.title, texts.body)) <= MAX_PAYLOAD_BYTES, "fits without its args"

    fitted = texts.fitted(loc_size)

    assert loc_size(fitted) <= MAX_PAYLOAD_BYTES
    assert (fitted.title, fitted.title_args) == (texts.title, (site,)), "short texts stay whole"
    [visitor_arg] = fitted.body_args
    assert fitted.body is not None and fitted.body.endswith(ELLIPSIS)
    assert visitor_arg.endswith(ELLIPSIS) and visitor.startswith(visitor_arg.removesuffix(ELLIPSIS))
    # The arg and the rendered body it fills in are cut alike: the localized text reads as the fallback.
    assert fitted.body.startswith(visitor_arg.removesuffix(ELLIPSIS))
    assert len(fitted.body_args) == len(texts.body_args) and len(fitted.title_args) == 1


def test_alert_texts_that_fit_with_their_args_are_unchanged() -> None:
    texts = AlertTexts("Live chat · Alpine Tours", "Ada is waiting", ("Alpine Tours",), ("Ada",))
    assert texts.fitted(loc_size) == texts


def test_args_too_many_to_fit_even_cut_are_refused() -> None:
    texts = AlertTexts("t", "b", (), tuple("x" * 20 for _ in range(1000)))
    with pytest.raises(PayloadTooLargeError):
        texts.fitted(loc_size)
