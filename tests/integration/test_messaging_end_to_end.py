"""Messaging end to end through the real parts, the way people use it: parents' browsers hand
their push subscriptions (made by the push-service emulator) to the API, a leader composes a
German announcement on the compose form and sends it, the worker delivers through the
emulator, the LibreTranslate-speaking server translates, the parents open, confirm and the
leader sees the reach."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from kita.config import KitaConfig
from kita.models.accounts import Role, User
from kita.models.messaging import Announcement, AnnouncementRecipient, PushSubscription
from kita.push.vapid import load_vapid_key
from kita.services import notify
from kita.services.push_delivery import DeliverySettings, deliver_due
from tests.conftest import EnglishClient, csrf_token, login_as
from tests.factories import make_child, make_group, make_kita, make_user
from tests.integration.test_push_delivery import ROOT
from tests.libretranslate_fake import FakeLibreTranslate
from tests.push_emulator import PushEmulator, running_push_emulator

TITLE = "Wasserschaden im Erdgeschoss"
BODY = "Morgen bleibt die Kita geschlossen. Bitte holen Sie Ihr Kind heute bis 15 Uhr ab."
CHILD_FIRST, CHILD_LAST = "Defne", "Kaya"
BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture(scope="module")
def push_emulator() -> Iterator[PushEmulator]:
    with running_push_emulator() as emulator:
        yield emulator


@pytest.fixture
def config(
    config: KitaConfig, push_emulator: PushEmulator, libretranslate: FakeLibreTranslate
) -> KitaConfig:
    return dataclasses.replace(
        config,
        push_allowed_origins=(push_emulator.origin,),
        translation_provider="libretranslate",
        libretranslate_url=libretranslate.url,
    )


def _client(app: Flask, user: User) -> FlaskClient:
    client = app.test_client()
    assert isinstance(client, EnglishClient)
    login_as(client, app, user)
    return client


def _api_post(client: FlaskClient, path: str, body: object) -> Any:
    token = client.get("/api/v1/session").get_json()["csrf_token"]
    return client.post(
        path,
        data=json.dumps(body),
        headers={"X-CSRFToken": token, "Content-Type": "application/json"},
    )


def _catalog_title(category: str, locale: str) -> str:
    path = ROOT / "translations" / locale / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        message = read_po(handle).get(notify.TITLES[category])
    assert message is not None and message.string
    return str(message.string)


def _compose_and_send(client: FlaskClient, kita_id: str) -> str:
    token = csrf_token(client, "/messages/announcements/new")
    created = client.post(
        "/messages/announcements/new",
        data={
            "csrf_token": token,
            "mode": "free",
            "category": "closure",
            "source_locale": "de",
            "kita": kita_id,
            "title": TITLE,
            "body": BODY,
            "confirm_required": "on",
            "confirm_deadline": (datetime.now(BERLIN) + timedelta(days=3)).strftime(
                "%Y-%m-%dT%H:%M"
            ),
        },
    )
    assert created.status_code == 302
    match = re.search(r"/messages/announcements/([0-9a-f-]{36})/preview", created.location)
    assert match, created.location
    announcement_id = match.group(1)
    # The preview shows each language with its back-translation before anything is sent.
    preview = client.get(f"/messages/announcements/{announcement_id}/preview?locale=tr")
    assert preview.status_code == 200
    shown = preview.get_data(as_text=True)
    assert f"[tr] {BODY}" in shown and f"[de] [tr] {BODY}" in shown
    sent = client.post(
        f"/messages/announcements/{announcement_id}/send",
        data={
            "csrf_token": csrf_token(client, f"/messages/announcements/{announcement_id}/send"),
            "confirm": "yes",
        },
    )
    assert sent.status_code == 302, sent.get_data(as_text=True)[:2000]
    return announcement_id


def test_a_german_announcement_reaches_tr_ar_uk_parents_through_form_worker_and_emulator(
    app: Flask,
    db: Session,
    config: KitaConfig,
    push_emulator: PushEmulator,
    libretranslate: FakeLibreTranslate,
) -> None:
    kita = make_kita(db)
    group, other_group = make_group(db, kita), make_group(db, kita)
    child = make_child(db, group, first_name=CHILD_FIRST, last_name=CHILD_LAST)
    sibling = make_child(db, other_group)
    leader = make_user(db, roles=[(kita, Role.LEADER)], name="Frau Becker", locale="de")
    parents = {
        "tr": make_user(db, roles=[(kita, Role.PARENT)], children=[child, sibling], locale="tr"),
        "ar": make_user(db, roles=[(kita, Role.PARENT)], children=[child], locale="ar"),
        "uk": make_user(db, roles=[(kita, Role.PARENT)], children=[sibling], locale="uk"),
    }
    key = load_vapid_key(config.vapid_key_path)
    browsers = {}
    for locale, parent in parents.items():
        subscription = push_emulator.create_subscription(key.application_server_key)
        client = _client(app, parent)
        answer = _api_post(client, "/api/v1/push/subscriptions", subscription)
        assert answer.status_code == 201, answer.get_json()
        browsers[locale] = subscription
    kita_id = str(kita.id)
    db.commit()

    announcement_id = _compose_and_send(_client(app, leader), kita_id)
    calls_after_first = libretranslate.calls
    assert calls_after_first > 0

    report = deliver_due(
        app.extensions["kita"].database, DeliverySettings.from_config(config, concurrency=4)
    )
    assert report.delivered == 3

    titles = set()
    for locale, subscription in browsers.items():
        [received] = push_emulator.get_notifications(subscription)
        payload = json.loads(received)
        assert payload["category"] == "closure"
        assert payload["url"] == f"/messages/a/{announcement_id}"
        assert payload["title"] == _catalog_title("closure", locale)
        for private in (CHILD_FIRST, CHILD_LAST, "Becker", TITLE, BODY, "Wasserschaden"):
            assert private not in received
        titles.add(payload["title"])
    assert len(titles) == 3

    # The Turkish parent (two children in two groups) has one entry, reads it in Turkish with
    # the original one tap away, and confirms twice without a second confirmation.
    turkish = _client(app, parents["tr"])
    feed = turkish.get("/messages").get_data(as_text=True)
    due, timeline = feed.split('<ol class="timeline"', 1)
    assert due.count(f"/messages/a/{announcement_id}") == 1  # "please confirm" on top
    assert timeline.count(f"/messages/a/{announcement_id}") == 1
    page = turkish.get(f"/messages/a/{announcement_id}").get_data(as_text=True)
    assert f"[tr] {BODY}" in page and BODY in page
    confirm_path = f"/messages/a/{announcement_id}/confirm"
    for _ in range(2):
        answer = turkish.post(
            confirm_path,
            data={"csrf_token": csrf_token(turkish, f"/messages/a/{announcement_id}")},
        )
        assert answer.status_code in {200, 302, 303}
    db.expire_all()
    rows = {
        row.user_id: row
        for row in db.scalars(
            select(AnnouncementRecipient).where(
                AnnouncementRecipient.announcement_id == Announcement.id,
                Announcement.title == TITLE,
            )
        )
    }
    assert set(rows) == {parent.id for parent in parents.values()}
    assert rows[parents["tr"].id].confirmed_at is not None
    assert rows[parents["ar"].id].confirmed_at is None
    assert all(row.delivered_at is not None for row in rows.values())

    # The leader's reach page: the two children share a guardian, so they are one family;
    # it was delivered, read and confirmed (by the Turkish parent).
    reach = _client(app, leader).get(f"/messages/announcements/{announcement_id}/reach")
    text = reach.get_data(as_text=True)
    assert reach.status_code == 200
    for locale in ("tr", "ar", "uk"):
        assert f'data-locale="{locale}"' in text
    summary = text.split('class="facts reach-summary"', 1)[1].split("</dl>", 1)[0]
    assert re.findall(r"<dd>([^<]*)</dd>", summary) == ["1", "1 / 1", "1 / 1", "1 / 1"]

    # The same text again costs the engine nothing: it comes from the translation memory.
    _compose_and_send(_client(app, leader), kita_id)
    assert libretranslate.calls == calls_after_first
    assert db.scalar(select(PushSubscription.id).limit(1)) is not None
