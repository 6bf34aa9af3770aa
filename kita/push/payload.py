"""The push payload: a category, a localised title, a link and a topic, and nothing else.

Push messages pass through the browser vendors' servers and show on lock screens, so they never
carry names or message text: the app fetches the content after the tap, behind the login.
"""

from __future__ import annotations

import json
import re
import uuid
from enum import StrEnum

#: Categories a notification can have (announcement categories and conversation replies).
CATEGORIES: frozenset[str] = frozenset(
    {"information", "event", "closure", "health", "urgent", "conversation"}
)
MAX_PAYLOAD_BYTES = 3072
MAX_TITLE_CHARS = 120
MAX_URL_CHARS = 512
# A path within the app: "/" then path characters; no "//" (another host), no "\", no query
# or fragment, no scheme.
_PATH = re.compile(r"^/(?![/\\])[A-Za-z0-9._~!$&'()*+,;=:@%/-]*\Z")
#: RFC 8030 Topic: at most 32 characters of the URL-safe base64 alphabet.
TOPIC = re.compile(r"^[A-Za-z0-9_-]{1,32}\Z")
# Control characters, line separators, and lone surrogates (which UTF-8 cannot encode).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


class Urgency(StrEnum):
    """RFC 8030 ``Urgency`` header values."""

    VERY_LOW = "very-low"
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


class PayloadError(ValueError):
    """The caller asked for a payload that is not allowed (unknown category, text, a URL)."""


def urgency_for(category: str) -> Urgency:
    """High for urgent messages (they also ignore quiet hours), normal otherwise."""
    return Urgency.HIGH if category == "urgent" else Urgency.NORMAL


def topic_for(message_id: uuid.UUID) -> str:
    """The Topic of a message's notifications: a newer push with the same topic replaces an
    undelivered older one (an edit or a recall replaces the first notice)."""
    return uuid.UUID(str(message_id)).hex


def build_payload(category: str, title: str, url: str, topic: str) -> bytes:
    """The JSON payload of one push message, as UTF-8 bytes of at most 3 KB.

    ``title`` is the localised title of the category (never a name or the message text);
    ``url`` is a path inside the app. Raises :class:`PayloadError` for anything else.
    """
    if not isinstance(category, str) or category not in CATEGORIES:
        raise PayloadError("unknown notification category")
    if not isinstance(title, str):
        raise PayloadError("the title must be text")
    title = title.strip()
    if not title or len(title) > MAX_TITLE_CHARS or _CONTROL.search(title):
        raise PayloadError(f"the title must be 1 to {MAX_TITLE_CHARS} characters on one line")
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS or not _PATH.match(url):
        raise PayloadError("the link must be a path inside the app, without query or host")
    if not isinstance(topic, str) or not TOPIC.match(topic):
        raise PayloadError("the topic must be 1 to 32 characters of A-Z, a-z, 0-9, - and _")
    payload = json.dumps(
        {"category": category, "title": title, "url": url, "topic": topic},
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode("utf-8")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError(f"a push payload holds at most {MAX_PAYLOAD_BYTES} bytes")
    return payload
