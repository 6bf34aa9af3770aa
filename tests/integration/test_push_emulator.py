"""End to end with the push-service emulator web-push-testing (npm): it checks VAPID, decrypts
the aes128gcm payload and keeps it, and can expire a subscription."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterator

import pytest

from kita.push.endpoints import PushServiceAllowList, Subscription, parse_subscription
from kita.push.payload import Urgency, build_payload, topic_for, urgency_for
from kita.push.sender import Notification, Outcome, PushSender, SendResult
from kita.push.vapid import VapidKey, VapidSigner
from tests.push_emulator import PushEmulator, running_push_emulator

SUBJECT = "mailto:betrieb@kita.example"
KEY = VapidKey.generate()

# What the announcement holds: none of it may reach the push service.
CHILD_NAME = "Lea Yılmaz"
PARENT_NAME = "Ayşe Yılmaz"
MESSAGE_TEXT = "Morgen bleibt die Kita wegen eines Wasserschadens geschlossen."

TITLES = {"tr": "Kapanış bildirimi", "ar": "إشعار إغلاق", "uk": "Повідомлення про закриття"}


@pytest.fixture(scope="module")
def push_emulator() -> Iterator[PushEmulator]:
    with running_push_emulator() as emulator:
        yield emulator


def send_all(
    notifications: list[Notification],
    allow_list: PushServiceAllowList,
    key: VapidKey = KEY,
) -> list[SendResult]:
    async def run() -> list[SendResult]:
        async with PushSender(VapidSigner(key, SUBJECT), allow_list, concurrency=8) as sender:
            results = {id(n): r async for n, r in sender.send_many(notifications)}
        return [results[id(n)] for n in notifications]

    return asyncio.run(run())


def subscribe(
    emulator: PushEmulator, key: VapidKey = KEY
) -> tuple[dict[str, object], Subscription]:
    browser_json = emulator.create_subscription(key.application_server_key)
    return browser_json, parse_subscription(json.dumps(browser_json), emulator.allow_list)


def test_each_parent_receives_the_title_in_their_language_and_nothing_else(
    push_emulator: PushEmulator,
) -> None:
    announcement_id = uuid.uuid4()
    link = f"/announcements/{announcement_id}"
    parents = {language: subscribe(push_emulator) for language in TITLES}
    notifications = [
        Notification(
            subscription=sub,
            payload=build_payload("closure", TITLES[language], link, topic_for(announcement_id)),
            ttl=86400,
            urgency=urgency_for("closure"),
            topic=topic_for(announcement_id),
        )
        for language, (_, sub) in parents.items()
    ]

    results = send_all(notifications, push_emulator.allow_list)

    assert [r.outcome for r in results] == [Outcome.DELIVERED] * 3
    for language, (browser_json, _) in parents.items():
        [received] = push_emulator.get_notifications(browser_json)
        assert json.loads(received) == {
            "category": "closure",
            "title": TITLES[language],
            "url": link,
            "topic": announcement_id.hex,
        }
        for private in (CHILD_NAME, PARENT_NAME, MESSAGE_TEXT, "Yılmaz", "Wasserschaden"):
            assert private not in received


def test_an_urgent_message_reaches_the_emulator_with_high_urgency(
    push_emulator: PushEmulator,
) -> None:
    browser_json, sub = subscribe(push_emulator)
    payload = build_payload("urgent", "Acil duyuru", "/announcements/1", "urgent1")

    [result] = send_all(
        [Notification(sub, payload, ttl=600, urgency=Urgency.HIGH, topic="urgent1")],
        push_emulator.allow_list,
    )

    assert result == SendResult(Outcome.DELIVERED, 201)
    assert push_emulator.get_notifications(browser_json) == [payload.decode()]


def test_an_expired_subscription_is_gone(push_emulator: PushEmulator) -> None:
    browser_json, sub = subscribe(push_emulator)
    push_emulator.expire(browser_json)
    payload = build_payload("event", "Yeni etkinlik", "/announcements/2", "event2")

    [result] = send_all([Notification(sub, payload, ttl=60)], push_emulator.allow_list)

    assert result.outcome is Outcome.GONE and result.status == 410
    assert push_emulator.get_notifications(browser_json) == []


def test_a_wrong_vapid_key_is_an_alert_not_gone(
    push_emulator: PushEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    browser_json, sub = subscribe(push_emulator)  # bound to KEY
    payload = build_payload("information", "Нове оголошення", "/announcements/3", "info3")
    other_key = VapidKey.generate()

    with caplog.at_level(logging.WARNING, logger="kita.push"):
        [result] = send_all(
            [Notification(sub, payload, ttl=60)], push_emulator.allow_list, other_key
        )

    assert result.outcome is Outcome.ALERT and result.status == 400
    assert push_emulator.get_notifications(browser_json) == []
    [record] = caplog.records
    assert record.levelno == logging.WARNING and "push alert" in record.getMessage()
    assert push_emulator.client_hash(browser_json) not in caplog.text
    # The same subscription still works with the right key: nothing was given up.
    [again] = send_all([Notification(sub, payload, ttl=60)], push_emulator.allow_list)
    assert again.outcome is Outcome.DELIVERED


def test_the_emulator_is_outside_the_default_allow_list(
    push_emulator: PushEmulator,
) -> None:
    browser_json, sub = subscribe(push_emulator)
    payload = build_payload("health", "Sağlık bildirimi", "/announcements/4", "health4")

    [result] = send_all([Notification(sub, payload, ttl=60)], PushServiceAllowList())

    assert result.outcome is Outcome.ALERT and result.status is None
    assert push_emulator.get_notifications(browser_json) == []
