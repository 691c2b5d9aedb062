"""What both push providers cap, and the pure rules that keep every push within those caps.

APNs takes an `apns-collapse-id` of at most 64 bytes and both providers refuse a payload over
4096 bytes (APNs: the JSON payload; FCM: the message). Chat ids may be longer than 64 bytes (the
decoder allows 256 characters) and site and visitor names are free text, so each adapter derives
the collapse id with `collapse_id_for` (the same rule for the APNs collapse id and the FCM collapse
key and notification tag, so an alert and the closing update of the same chat always match), and
fits its payload with `fit_texts` (title, body and loc args), measuring with its own
serialization. Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from typing import Final, NamedTuple

from service.domain.push import Push
from service.errors import NotifierError

MAX_COLLAPSE_ID_BYTES: Final = 64
"""APNs `apns-collapse-id`."""
MAX_PAYLOAD_BYTES: Final = 4096
"""APNs: the JSON payload; FCM: the message (the adapters say what they measure)."""
ELLIPSIS: Final = "…"
_ELLIPSIS_BYTES: Final = len(ELLIPSIS.encode())
_KEPT_AS_IS: Final = re.compile(r"[\x21-\x7e]{1,64}")
"""Visible ASCII, at most 64 characters: a valid HTTP/2 header value of at most 64 bytes, which
JSON does not grow beyond 128 bytes (only `"` and `\\` are escaped)."""
_PREFIX_CHARS: Final = MAX_COLLAPSE_ID_BYTES - 1 - 43
"""What is left of 64 bytes for a readable prefix after the "~" and the 43-character hash."""
_PREFIX: Final = re.compile(r"[0-9A-Za-z._:-]*")


class PayloadTooLargeError(NotifierError, ValueError):
    """The payload exceeds the limit even with its texts cut to an ellipsis (its data is too big)."""


def collapse_id_for(chat_id: str) -> str:
    """The collapse id (APNs `apns-collapse-id`, FCM `collapse_key` and `tag`) of a chat's pushes.

    A chat id of at most 64 visible ASCII characters is used as it is. Any other (longer, or with
    spaces, control or non-ASCII characters) becomes its leading ASCII letters, digits and `._:-`
    (at most 20 of them), `~`, and the SHA-256 of its UTF-8 bytes in unpadded base64url (43
    characters): at most 64 bytes, safe in an HTTP/2 header, and the same for the same chat id on
    every worker and after every restart.
    """
    if _KEPT_AS_IS.fullmatch(chat_id):
        return chat_id
    digest = hashlib.sha256(chat_id.encode()).digest()
    hashed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    prefix = _PREFIX.match(chat_id)
    return f"{prefix.group()[:_PREFIX_CHARS] if prefix else ''}~{hashed}"


def truncate_utf8(text: str, max_bytes: int) -> str:
    """`text` if its UTF-8 encoding fits in `max_bytes`, else its longest prefix that fits together
    with an ellipsis, cut on a character boundary ("" if not even the ellipsis fits)."""
    encoded = text.encode()
    if len(encoded) <= max_bytes:
        return text
    if max_bytes < _ELLIPSIS_BYTES:
        return ""
    # Cutting valid UTF-8 can only leave an incomplete character at the end; "ignore" drops it.
    return encoded[: max_bytes - _ELLIPSIS_BYTES].decode(errors="ignore") + ELLIPSIS


def ensure_fits(size: int, limit: int = MAX_PAYLOAD_BYTES) -> None:
    """`PayloadTooLargeError` if a payload of `size` bytes (one without texts to cut) exceeds `limit`."""
    if size > limit:
        raise PayloadTooLargeError(f"payload of {size} bytes, over the limit of {limit}")


Texts = tuple[str | None, ...]
"""The cuttable texts of one push, in an order its adapter chooses: the title, the body, the
arguments of their localization keys (loc args are data the phone shows: they are measured and
cut like the texts they fill in), ... `None` is a text that is absent."""


def fit_texts(texts: Texts, size_of: Callable[[Texts], int], limit: int = MAX_PAYLOAD_BYTES) -> Texts:
    """The `texts` to send so that `size_of(texts)`, the payload's size in bytes as the provider
    counts it, is at most `limit`.

    Unchanged if they fit (one call to `size_of`). Otherwise every text is capped at the same
    number of UTF-8 bytes (a text under the cap stays whole, so the shorter texts, usually the title
    with the site name and the loc args, keep most), the largest cap that fits, found by bisection;
    a cut text ends in an ellipsis. A cut loc arg is the same prefix as the rendered text it fills
    in, so the localized text and the fallback read alike. `None` stays `None`; what is not a text
    (keys, data) is never cut. `PayloadTooLargeError` if even texts cut to a bare ellipsis do not
    fit: then the rest of the payload is too big, and no cut of the texts can help.
    """
    if size_of(texts) <= limit:
        return texts

    def cut(cap: int) -> Texts:
        return tuple(None if text is None else truncate_utf8(text, cap) for text in texts)

    fits, too_big = _ELLIPSIS_BYTES, max((len((text or "").encode()) for text in texts), default=0)
    if size_of(cut(fits)) > limit:
        raise PayloadTooLargeError(f"payload over {limit} bytes even with its texts cut to {ELLIPSIS!r}")
    while too_big - fits > 1:  # invariant: cap `fits` fits, cap `too_big` does not
        middle = (fits + too_big) // 2
        if size_of(cut(middle)) <= limit:
            fits = middle
        else:
            too_big = middle
    return cut(fits)


class AlertTexts(NamedTuple):
    """What a visible push shows, as both providers carry it: the rendered title and body (the
    fallback) and the arguments of the core's loc keys (the keys themselves are not texts)."""

    title: str | None
    body: str | None
    title_args: tuple[str, ...] = ()
    body_args: tuple[str, ...] = ()

    @classmethod
    def of(cls, push: Push) -> AlertTexts:
        return cls(
            push.title,
            push.body,
            push.title_loc.args if push.title_loc else (),
            push.body_loc.args if push.body_loc else (),
        )

    def fitted(self, size_of: Callable[[AlertTexts], int], limit: int = MAX_PAYLOAD_BYTES) -> AlertTexts:
        """These texts cut by `fit_texts` (every text and every loc arg under one byte cap) so
        that `size_of` them is at most `limit`; `PayloadTooLargeError` if no cut can fit."""
        titles = len(self.title_args)

        def rebuilt(texts: Texts) -> AlertTexts:
            title, body, *args = texts
            return AlertTexts(
                title, body, tuple(a or "" for a in args[:titles]), tuple(a or "" for a in args[titles:])
            )

        flat = (self.title, self.body, *self.title_args, *self.body_args)
        return rebuilt(fit_texts(flat, lambda texts: size_of(rebuilt(texts)), limit))
