"""Push payloads hold a category, a localised title, a link and a topic: nothing else."""

from __future__ import annotations

import json
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kita.push.payload import (
    MAX_PAYLOAD_BYTES,
    PayloadError,
    Urgency,
    build_payload,
    topic_for,
    urgency_for,
)

TOPIC = "0f3c2b1a9e8d7c6b5a4f3e2d1c0b9a88"


@pytest.mark.parametrize(
    "title", ["Neue Mitteilung", "Yeni duyuru", "إعلان جديد", "Нове оголошення"]
)
def test_payload_holds_exactly_category_title_link_and_topic(title: str) -> None:
    payload = build_payload("closure", f"  {title} ", "/announcements/42", TOPIC)

    assert json.loads(payload) == {
        "category": "closure",
        "title": title,
        "url": "/announcements/42",
        "topic": TOPIC,
    }
    assert title.encode() in payload  # UTF-8, not \u escapes: smaller on the wire


def test_extra_content_cannot_be_passed() -> None:
    with pytest.raises(TypeError):
        build_payload("event", "Neue Mitteilung", "/a", TOPIC, body="Lea has a fever")  # type: ignore[call-arg]


@pytest.mark.parametrize("category", ["", "Urgent", "news", "urgent ", None, 1])
def test_unknown_categories_are_refused(category: object) -> None:
    with pytest.raises(PayloadError, match="category"):
        build_payload(category, "Titel", "/a", TOPIC)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "title", ["", "   ", "x" * 121, "Zeile\nZweite Zeile", "tab\there", "\u2028", "\ud800", None]
)
def test_titles_must_be_one_short_line(title: object) -> None:
    with pytest.raises(PayloadError, match="title"):
        build_payload("event", title, "/a", TOPIC)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
        "announcements/1",
        "/a?child=Lea",
        "/a#x",
        "/a b",
        "/ä",
        "/" + "a" * 600,
        "",
    ],
)
def test_links_must_be_paths_inside_the_app(url: str) -> None:
    with pytest.raises(PayloadError, match="link"):
        build_payload("event", "Titel", url, TOPIC)


@pytest.mark.parametrize("topic", ["", "x" * 33, "has space", "ümlaut", "a/b", "a=b"])
def test_topics_are_short_url_safe_tokens(topic: str) -> None:
    with pytest.raises(PayloadError, match="topic"):
        build_payload("event", "Titel", "/a", topic)


def test_the_largest_allowed_payload_stays_under_3_kb() -> None:
    payload = build_payload("conversation", "ع" * 120, "/" + "%" * 511, "x" * 32)

    assert len(payload) <= MAX_PAYLOAD_BYTES


def test_topic_for_a_message_is_its_uuid_in_32_hex_characters() -> None:
    message_id = uuid.uuid4()

    assert topic_for(message_id) == message_id.hex
    assert len(topic_for(message_id)) == 32


def test_only_urgent_messages_get_high_urgency() -> None:
    assert urgency_for("urgent") is Urgency.HIGH
    assert {urgency_for(c) for c in ("information", "event", "closure", "health")} == {
        Urgency.NORMAL
    }


@given(st.text(max_size=200), st.text(max_size=200), st.text(max_size=40))
def test_arbitrary_input_gives_a_valid_payload_or_a_payload_error(
    title: str, url: str, topic: str
) -> None:
    try:
        payload = build_payload("information", title, url, topic)
    except PayloadError:
        return
    data = json.loads(payload)
    assert set(data) == {"category", "title", "url", "topic"}
    assert data["url"].startswith("/") and not data["url"].startswith("//")
    assert len(payload) <= MAX_PAYLOAD_BYTES
