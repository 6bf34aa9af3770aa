"""The push outbox end to end: notify.enqueue → the worker's deliver_due → the push-service
emulator web-push-testing (VAPID checked, payload decrypted and read back), and small local
push services for the answers the emulator cannot give (503 with Retry-After)."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from babel.messages.pofile import read_po
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.config import KitaConfig
from kita.db import Database
from kita.models.accounts import Role, User
from kita.models.messaging import (
    Announcement,
    AnnouncementRecipient,
    AnnouncementStatus,
    Category,
    DeliveryStatus,
    EmailDelivery,
    OperatorAlert,
    PushDelivery,
    PushSubscription,
)
from kita.models.organisation import Kita
from kita.push.endpoints import parse_subscription
from kita.push.vapid import VapidKey, VapidSigner, load_vapid_key
from kita.services import notify
from kita.services.notify import Recipient
from kita.services.push_delivery import MAX_ATTEMPTS, DeliverySettings, deliver_due
from tests.factories import make_child, make_group, make_kita, make_user
from tests.push_emulator import PushEmulator, running_push_emulator

ROOT = Path(__file__).resolve().parents[2]
CHILD_FIRST, CHILD_LAST = "Lea", "Yılmaz"
MESSAGE_TITLE = "Wasserschaden"
MESSAGE_TEXT = "Morgen bleibt die Kita wegen eines Wasserschadens geschlossen."


@pytest.fixture(scope="module")
def push_emulator() -> Iterator[PushEmulator]:
    with running_push_emulator() as emulator:
        yield emulator


@pytest.fixture
def config(config: KitaConfig, push_emulator: PushEmulator) -> KitaConfig:
    return dataclasses.replace(config, push_allowed_origins=(push_emulator.origin,))


@pytest.fixture
def settings(app: Flask, config: KitaConfig) -> DeliverySettings:
    return DeliverySettings.from_config(config, concurrency=8)


def _database(app: Flask) -> Database:
    return app.extensions["kita"].database  # type: ignore[no-any-return]


def _subscribe(
    db: Session, emulator: PushEmulator, user: User, key: VapidKey
) -> tuple[dict[str, Any], PushSubscription]:
    browser_json = emulator.create_subscription(key.application_server_key)
    parsed = parse_subscription(json.dumps(browser_json), emulator.allow_list)
    row = PushSubscription(
        user_id=user.id, endpoint=parsed.endpoint, p256dh=parsed.p256dh, auth=parsed.auth
    )
    db.add(row)
    db.commit()
    return browser_json, row


def _announce(
    db: Session, kita: Kita, author: User, parents: list[User], category: str = "closure"
) -> Announcement:
    """What the announcements service does on send: the message, its recipients and the
    outbox, in one transaction."""
    now = datetime.now(UTC)
    announcement = Announcement(
        provider_id=kita.provider_id,
        kita_id=kita.id,
        author_id=author.id,
        category=Category(category),
        status=AnnouncementStatus.SENT,
        title=MESSAGE_TITLE,
        body=MESSAGE_TEXT,
        sent_at=now,
    )
    db.add(announcement)
    db.flush()
    for parent in parents:
        db.add(
            AnnouncementRecipient(
                announcement_id=announcement.id,
                user_id=parent.id,
                kita_id=kita.id,
                locale=parent.locale or "de",
            )
        )
    notify.enqueue(
        db,
        message_id=announcement.id,
        kind="announcement",
        category=category,
        recipients=[Recipient(p.id, p.locale or "de") for p in parents],
        url=f"/messages/a/{announcement.id}",
        now=now,
    )
    db.commit()
    return announcement


def _catalog_title(category: str, locale: str) -> str:
    """The title as translated in the shipped catalog of ``locale`` (read independently of
    the app's code path)."""
    path = ROOT / "translations" / locale / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        message = read_po(handle).get(notify.TITLES[category])
    assert message is not None and message.string, f"{locale} lacks the {category} title"
    return str(message.string)


@pytest.fixture
def family(db: Session) -> dict[str, Any]:
    kita = make_kita(db)
    group = make_group(db, kita)
    child = make_child(db, group, first_name=CHILD_FIRST, last_name=CHILD_LAST)
    author = make_user(db, roles=[(kita, Role.LEADER)], name="Frau Schulz")
    return {"kita": kita, "child": child, "author": author}


def test_a_german_announcement_reaches_tr_ar_uk_parents_in_their_language(
    app: Flask,
    db: Session,
    config: KitaConfig,
    settings: DeliverySettings,
    push_emulator: PushEmulator,
    family: dict[str, Any],
) -> None:
    key = load_vapid_key(config.vapid_key_path)
    parents = {
        locale: make_user(
            db,
            roles=[(family["kita"], Role.PARENT)],
            children=[family["child"]],
            locale=locale,
            name=f"Ayşe {CHILD_LAST} {locale}",
        )
        for locale in ("tr", "ar", "uk")
    }
    browsers = {locale: _subscribe(db, push_emulator, p, key)[0] for locale, p in parents.items()}
    announcement = _announce(db, family["kita"], family["author"], list(parents.values()))

    report = deliver_due(_database(app), settings)

    assert (report.delivered, report.gone, report.retried, report.alerts) == (3, 0, 0, 0)
    titles = set()
    for locale, browser in browsers.items():
        [received] = push_emulator.get_notifications(browser)
        payload = json.loads(received)
        assert payload == {
            "category": "closure",
            "title": _catalog_title("closure", locale),
            "url": f"/messages/a/{announcement.id}",
            "topic": announcement.id.hex,
        }
        assert payload["title"] != notify.TITLES["closure"]
        titles.add(payload["title"])
        for private in (CHILD_FIRST, CHILD_LAST, "Schulz", MESSAGE_TITLE, MESSAGE_TEXT, "Ayşe"):
            assert private not in received
    assert len(titles) == 3
    db.rollback()
    assert set(db.scalars(select(PushDelivery.status))) == {DeliveryStatus.SENT}
    assert None not in set(db.scalars(select(AnnouncementRecipient.delivered_at)))
    # Nothing is due any more: a second run sends nothing.
    assert deliver_due(_database(app), settings).claimed == 0


def test_an_expired_subscription_is_deleted_after_one_send_and_email_takes_over(
    app: Flask,
    db: Session,
    config: KitaConfig,
    settings: DeliverySettings,
    push_emulator: PushEmulator,
    family: dict[str, Any],
) -> None:
    key = load_vapid_key(config.vapid_key_path)
    parent = make_user(db, roles=[(family["kita"], Role.PARENT)], locale="tr")
    browser, _subscription = _subscribe(db, push_emulator, parent, key)
    push_emulator.expire(browser)
    announcement = _announce(db, family["kita"], family["author"], [parent], "urgent")

    report = deliver_due(_database(app), settings)

    assert (report.gone, report.emails) == (1, 1)
    db.rollback()
    assert db.scalars(select(PushSubscription.id)).all() == []
    assert db.scalar(select(func.count()).select_from(PushDelivery)) == 0
    [email] = db.scalars(select(EmailDelivery))
    assert (email.message_id, email.user_id, email.digest) == (announcement.id, parent.id, False)
    assert deliver_due(_database(app), settings).claimed == 0


def test_a_wrong_vapid_key_keeps_the_subscription_and_alerts_the_operator(
    app: Flask,
    db: Session,
    config: KitaConfig,
    settings: DeliverySettings,
    push_emulator: PushEmulator,
    family: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    key = load_vapid_key(config.vapid_key_path)
    parent = make_user(db, roles=[(family["kita"], Role.PARENT)], locale="uk")
    browser, subscription = _subscribe(db, push_emulator, parent, key)
    _announce(db, family["kita"], family["author"], [parent], "health")
    wrong = dataclasses.replace(
        settings, signer=VapidSigner(VapidKey.generate(), config.push_subject)
    )

    with caplog.at_level(logging.WARNING, logger="kita.push"):
        report = deliver_due(_database(app), wrong)

    assert report.alerts == 1 and report.delivered == 0
    assert push_emulator.get_notifications(browser) == []
    db.rollback()
    assert db.get(PushSubscription, subscription.id) is not None
    [delivery] = db.scalars(select(PushDelivery))
    assert (delivery.status, delivery.last_status) == (DeliveryStatus.ALERT, 400)
    [alert] = db.scalars(select(OperatorAlert))
    assert alert.kind == "push_rejected"
    assert alert.detail == f"localhost:{push_emulator.port} answered 400"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and "push rejected" in errors[0].getMessage()
    assert push_emulator.client_hash(browser) not in caplog.text
    # An ALERT row is not sent again, by either key.
    assert deliver_due(_database(app), settings).claimed == 0


class _Unavailable(BaseHTTPRequestHandler):
    """A push service that answers 503 with Retry-After: 120 first, then 201."""

    answers: list[int]
    seen: list[dict[str, str]]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append(dict(self.headers))
        status = self.answers.pop(0) if self.answers else 201
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "120")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def busy_service() -> Iterator[tuple[str, type[_Unavailable]]]:
    handler = type("Handler", (_Unavailable,), {"answers": [503], "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def _announce_via(
    db: Session, config: KitaConfig, family: dict[str, Any], origin: str
) -> DeliverySettings:
    """An event announced to an Arabic-reading parent whose one device is on the push service
    at ``origin``; the delivery settings that allow that service."""
    parent = make_user(db, roles=[(family["kita"], Role.PARENT)], locale="ar")
    device = VapidKey.generate()  # any P-256 key serves as the browser's key here
    db.add(
        PushSubscription(
            user_id=parent.id,
            endpoint=f"{origin}/push/1",
            p256dh=device.public_bytes,
            auth=b"\x07" * 16,
        )
    )
    db.commit()
    _announce(db, family["kita"], family["author"], [parent], "event")
    return DeliverySettings.from_config(
        dataclasses.replace(config, push_allowed_origins=(origin,)), concurrency=4
    )


def test_a_503_with_retry_after_is_retried_after_that_time(
    app: Flask,
    db: Session,
    config: KitaConfig,
    family: dict[str, Any],
    busy_service: tuple[str, type[_Unavailable]],
) -> None:
    origin, handler = busy_service
    settings = _announce_via(db, config, family, origin)
    start = datetime.now(UTC)

    first = deliver_due(_database(app), settings, clock=lambda: start)
    db.rollback()
    [delivery] = db.scalars(select(PushDelivery))
    too_early = deliver_due(_database(app), settings, clock=lambda: start + timedelta(seconds=119))
    later = deliver_due(_database(app), settings, clock=lambda: start + timedelta(seconds=121))

    assert (first.retried, too_early.claimed, later.delivered) == (1, 0, 1)
    assert (delivery.attempts, delivery.last_status) == (1, 503)
    assert delivery.next_attempt_at == start + timedelta(seconds=120)
    assert len(handler.seen) == 2
    assert {h["Urgency"] for h in handler.seen} == {"normal"}
    assert {h["TTL"] for h in handler.seen} == {str(notify.DEFAULT_TTL_SECONDS)}
    db.rollback()
    assert db.scalars(select(PushDelivery.status)).one() == DeliveryStatus.SENT


def test_a_notice_that_keeps_failing_is_given_up_after_max_attempts(
    app: Flask,
    db: Session,
    config: KitaConfig,
    family: dict[str, Any],
    busy_service: tuple[str, type[_Unavailable]],
) -> None:
    origin, handler = busy_service
    settings = _announce_via(db, config, family, origin)
    [delivery] = db.scalars(select(PushDelivery))
    delivery.attempts = MAX_ATTEMPTS - 1  # a day of 503s behind it
    db.commit()

    report = deliver_due(_database(app), settings)

    assert (report.claimed, report.given_up, report.retried) == (1, 1, 0)
    assert len(handler.seen) == 1
    db.expire_all()
    row = db.scalars(select(PushDelivery)).one()
    assert (row.status, row.attempts) == (DeliveryStatus.SKIPPED, MAX_ATTEMPTS)
    assert deliver_due(_database(app), settings).claimed == 0
    # The subscription stays: the push service was busy, the device is not gone.
    assert db.scalar(select(func.count()).select_from(PushSubscription)) == 1


def test_recall_before_the_worker_runs_sends_nothing(
    app: Flask,
    db: Session,
    config: KitaConfig,
    settings: DeliverySettings,
    push_emulator: PushEmulator,
    family: dict[str, Any],
) -> None:
    key = load_vapid_key(config.vapid_key_path)
    parent = make_user(db, roles=[(family["kita"], Role.PARENT)], locale="tr")
    browser, _row = _subscribe(db, push_emulator, parent, key)
    announcement = _announce(db, family["kita"], family["author"], [parent], "information")

    assert notify.cancel(db, announcement.id) == 1
    db.commit()

    assert deliver_due(_database(app), settings).claimed == 0
    assert push_emulator.get_notifications(browser) == []


def test_urgent_ignores_quiet_hours_while_the_rest_waits(
    app: Flask,
    db: Session,
    config: KitaConfig,
    settings: DeliverySettings,
    push_emulator: PushEmulator,
    family: dict[str, Any],
) -> None:
    key = load_vapid_key(config.vapid_key_path)
    parent = make_user(db, roles=[(family["kita"], Role.PARENT)], locale="uk")
    browser, _row = _subscribe(db, push_emulator, parent, key)
    # Quiet all day except the minute before now (Berlin time): "now" is always quiet.
    berlin = datetime.now(UTC).astimezone(notify.LOCAL_TIMEZONE)
    start = (berlin - timedelta(minutes=1)).time().replace(second=0, microsecond=0)
    until = (berlin - timedelta(minutes=2)).time().replace(second=0, microsecond=0)
    notify.save_settings(db, parent.id, [], start, until, True)
    db.commit()
    _announce(db, family["kita"], family["author"], [parent], "event")
    urgent = _announce(db, family["kita"], family["author"], [parent], "urgent")

    report = deliver_due(_database(app), settings)

    assert report.delivered == 1
    [received] = push_emulator.get_notifications(browser)
    assert json.loads(received)["topic"] == urgent.id.hex
    db.rollback()
    waiting = db.scalars(select(PushDelivery).where(PushDelivery.category == "event")).one()
    assert waiting.status == DeliveryStatus.PENDING
    assert waiting.next_attempt_at > datetime.now(UTC) + timedelta(hours=23)


class _Slow(BaseHTTPRequestHandler):
    """A push service that takes 0.3 s per answer."""

    paths: list[str]

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.paths.append(self.path)
        time.sleep(0.3)
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


def test_rows_whose_lease_runs_out_go_back_instead_of_being_sent_late(
    app: Flask, db: Session, config: KitaConfig, family: dict[str, Any]
) -> None:
    handler = type("Handler", (_Slow,), {"paths": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        settings = DeliverySettings.from_config(
            dataclasses.replace(config, push_allowed_origins=(origin,)),
            concurrency=1,
            lease=timedelta(seconds=1),
        )
        device = VapidKey.generate()
        parents = [make_user(db, roles=[(family["kita"], Role.PARENT)]) for _ in range(6)]
        for number, parent in enumerate(parents):
            db.add(
                PushSubscription(
                    user_id=parent.id,
                    endpoint=f"{origin}/push/{number}",
                    p256dh=device.public_bytes,
                    auth=b"\x07" * 16,
                )
            )
        db.commit()
        _announce(db, family["kita"], family["author"], parents, "information")

        first = deliver_due(_database(app), settings)
        db.rollback()
        left = list(db.scalars(select(PushDelivery).where(PushDelivery.sent_at.is_(None))))
        assert 0 < first.delivered < 6 and len(left) == 6 - first.delivered
        assert {row.claimed_until for row in left} == {None}  # given back, not left leased
        for _ in range(6):
            if not deliver_due(_database(app), settings).claimed:
                break
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(handler.paths) == sorted(f"/push/{n}" for n in range(6))  # each once
    db.rollback()
    assert set(db.scalars(select(PushDelivery.status))) == {DeliveryStatus.SENT}


def test_operator_alerts_are_shown_to_provider_admins_only(
    app: Flask, db: Session, family: dict[str, Any]
) -> None:
    from tests.conftest import login_as

    kita = family["kita"]
    db.add(OperatorAlert(kind="push_rejected", detail="push.example.org:443 answered 403"))
    db.add(
        OperatorAlert(
            kind="push_rejected",
            detail="old.example.org:443 answered 400",
            created_at=datetime.now(UTC) - timedelta(days=30),
        )
    )
    admin = make_user(db, admin_of=kita.provider, locale="en")
    leader = make_user(db, roles=[(kita, Role.LEADER)], locale="en")
    db.commit()

    admin_client, leader_client = app.test_client(), app.test_client()
    login_as(admin_client, app, admin)
    login_as(leader_client, app, leader)
    page = admin_client.get("/admin/").get_data(as_text=True)
    assert "Alerts for the operator" in page
    assert "push.example.org:443 answered 403" in page and "check the VAPID key" in page
    assert "old.example.org" not in page  # older than two weeks
    assert "Alerts for the operator" not in leader_client.get("/admin/").get_data(as_text=True)
