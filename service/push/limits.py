"""What both push providers cap, and the pure rules that keep every push within those caps.

APNs takes an `apns-collapse-id` of at most 64 bytes and both providers refuse a payload over
4096 bytes (APNs: the JSON payload; FCM: the message). Chat ids may be longer than 64 bytes (the
decoder allows 256 characters) and site and visitor names are free text, so each adapter derives
the collapse id with `collapse_id_for` (the same rule for the APNs collapse id and the FCM collapse
key and notification tag, so an alert and the closing update of the same chat always match), and
fits its payload with `fit_texts`, measuring with its own serialization. Pure: no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from typing import Final

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


def fit_texts(
    title: str | None,
    body: str | None,
    size_of: Callable[[str | None, str | None], int],
    limit: int = MAX_PAYLOAD_BYTES,
) -> tuple[str | None, str | None]:
    """The title and body to send so that `size_of(title, body)`, the payload's size in bytes as
    the provider counts it, is at most `limit`.

    Unchanged if they fit (one call to `size_of`). Otherwise both are capped at the same number of
    UTF-8 bytes (a text under the cap stays whole, so the shorter text, usually the title with the
    site name, keeps most), the largest cap that fits, found by bisection; a cut text ends in an
    ellipsis. `None` stays `None`. `PayloadTooLargeError` if even texts cut to a bare ellipsis do not
    fit: then the rest of the payload is too big, and no cut of the texts can help.
    """
    if size_of(title, body) <= limit:
        return title, body

    def cut(cap: int) -> tuple[str | None, str | None]:
        return (
            None if title is None else truncate_utf8(title, cap),
            None if body is None else truncate_utf8(body, cap),
        )

    fits, too_big = _ELLIPSIS_BYTES, max(len((text or "").encode()) for text in (title, body))
    if size_of(*cut(fits)) > limit:
        raise PayloadTooLargeError(f"payload over {limit} bytes even with its texts cut to {ELLIPSIS!r}")
    while too_big - fits > 1:  # invariant: cap `fits` fits, cap `too_big` does not
        middle = (fits + too_big) // 2
        if size_of(*cut(middle)) <= limit:
            fits = middle
        else:
            too_big = middle
    return cut(fits)
