"""The e-mail fallback, received by a real SMTP server (aiosmtpd) on a free port: one daily
digest per parent in their language, urgent messages at once, nothing sent twice, and nothing
lost while the SMTP server is away."""

from __future__ import annotations

import dataclasses
import re
import socket
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from babel.dates import format_date
from sqlalchemy import select
from sqlalchemy.orm import Session

from kita.access import ConversationSide, load_actor
from kita.blobs import BlobStore
from kita.config import KitaConfig
from kita.crypto import KeyService
from kita.db import Database
from kita.models.accounts import Role, User
from kita.models.messaging import (
    Announcement,
    AnnouncementStatus,
    Category,
    DeliveryStatus,
    EmailDelivery,
    OperatorAlert,
    Team,
)
from kita.models.organisation import Child, Kita
from kita.services import conversations, email_delivery, notify
from kita.services.lifecycle import LOCAL_TIMEZONE
from kita.services.translation import Translator
from kita.worker import default_jobs
from tests.factories import make_child, make_group, make_kita, make_user

MORNING = datetime(2026, 11, 26, 9, 0, tzinfo=LOCAL_TIMEZONE)
EVENING = datetime(2026, 11, 26, 18, 0, tzinfo=LOCAL_TIMEZONE)
SECRET_TEXT = "Deniz hat heute hohes Fieber bekommen"


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[_Inbox, int]]:
    handler = _Inbox()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture
def mail_config(config: KitaConfig, smtp: tuple[_Inbox, int]) -> KitaConfig:
    return dataclasses.replace(config, smtp_host="127.0.0.1", smtp_port=smtp[1])


def _family(db: Session, kita: Kita, locale: str, child_name: str) -> tuple[Child, User, User]:
    group = make_group(db, kita)
    child = make_child(db, group, first_name=child_name)
    parent = make_user(db, roles=[(kita, Role.PARENT)], children=[child], locale=locale)
    educator = make_user(db, roles=[(kita, Role.EDUCATOR)], groups=[group], name="Anna Beispiel")
    return child, parent, educator


def _staff_messages(
    db: Session, keys: KeyService, config: KitaConfig, child: Child, educator: User, count: int
) -> conversations.Conversation:
    """A conversation the educator starts, and ``count`` messages to the family in the morning."""
    actor = load_actor(db, educator)
    translator = Translator(db, None, use_memory=False)
    blobs = BlobStore(config.blob_dir)
    result = conversations.start_conversation(
        db,
        actor=actor,
        keys=keys,
        blobs=blobs,
        translator=translator,
        draft=conversations.ConversationDraft(child.id, Team.GROUP, "health", SECRET_TEXT),
        writer_locale="de",
        now=MORNING,
    )
    for number in range(1, count):
        conversations.post_message(
            db,
            actor=actor,
            side=ConversationSide.STAFF,
            keys=keys,
            blobs=blobs,
            translator=translator,
            conversation=result.conversation,
            body=f"{SECRET_TEXT} ({number})",
            writer_locale="de",
            now=MORNING + timedelta(minutes=number),
        )
    db.commit()
    return result.conversation


def _body(message: Message) -> str:
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode(message.get_content_charset() or "utf-8")


def test_daily_digest_in_the_parents_language_once(
    db: Session,
    database: Database,
    app: Any,
    mail_config: KitaConfig,
    smtp: tuple[_Inbox, int],
) -> None:
    inbox, _port = smtp
    keys = app.extensions["kita"].keys
    kita = make_kita(db)
    child, turkish_parent, educator = _family(db, kita, "tr", "Deniz")
    other_child, german_parent, other_educator = _family(db, kita, "de", "Mia")
    conversation = _staff_messages(db, keys, mail_config, child, educator, 3)
    _staff_messages(db, keys, mail_config, other_child, other_educator, 1)
    assert len(db.scalars(select(EmailDelivery)).all()) == 4

    # Before the digest hour nothing goes out.
    assert email_delivery.send_digests(database, mail_config, MORNING + timedelta(hours=7)) == 0
    assert inbox.messages == []

    assert email_delivery.send_digests(database, mail_config, EVENING) == 2
    assert len(inbox.messages) == 2
    by_recipient = {message["To"]: message for message in inbox.messages}
    turkish = by_recipient[turkish_parent.email]
    assert turkish["Content-Language"] == "tr"
    long_date = format_date(date(2026, 11, 26), "long", locale="tr")
    assert long_date == "26 Kasım 2026"
    assert long_date in turkish["Subject"]
    body = _body(turkish)
    # Three messages, one e-mail: one line with a link each, the generic title in Turkish.
    link = f"https://kita.test/conversations/{conversation.id}"
    assert body.count(link) == 3
    assert notify.generic_title("conversation", "tr") in body
    assert format_date(date(2026, 11, 26), "medium", locale="tr") in body
    # No message text, no child's or staff member's name in an e-mail.
    for private in (SECRET_TEXT, "Deniz", "Anna Beispiel", "Fieber"):
        assert private not in body and private not in turkish["Subject"]
    german = by_recipient[german_parent.email]
    assert german["Content-Language"] == "de"
    assert format_date(date(2026, 11, 26), "long", locale="de") in german["Subject"]

    db.rollback()
    rows = db.scalars(select(EmailDelivery)).all()
    assert {row.status for row in rows} == {DeliveryStatus.SENT}
    # A second run (a restart, another worker, the next tick) sends nothing again.
    assert email_delivery.send_digests(database, mail_config, EVENING + timedelta(minutes=5)) == 0
    assert len(inbox.messages) == 2


def test_messages_after_the_digest_hour_wait_for_the_next_day(
    db: Session,
    database: Database,
    app: Any,
    mail_config: KitaConfig,
    smtp: tuple[_Inbox, int],
) -> None:
    inbox, _port = smtp
    keys = app.extensions["kita"].keys
    kita = make_kita(db)
    child, _parent, educator = _family(db, kita, "uk", "Taras")
    actor = load_actor(db, educator)
    conversations.start_conversation(
        db,
        actor=actor,
        keys=keys,
        blobs=BlobStore(mail_config.blob_dir),
        translator=Translator(db, None, use_memory=False),
        draft=conversations.ConversationDraft(child.id, Team.GROUP, "question", "Frage"),
        writer_locale="de",
        now=EVENING + timedelta(hours=1),
    )
    db.commit()
    assert email_delivery.send_digests(database, mail_config, EVENING + timedelta(hours=2)) == 0
    next_day = EVENING + timedelta(days=1)
    assert email_delivery.send_digests(database, mail_config, next_day) == 1
    assert inbox.messages[0]["Content-Language"] == "uk"
    assert format_date(next_day.date(), "long", locale="uk") in inbox.messages[0]["Subject"]


def _urgent_announcement(db: Session, kita: Kita, author: User) -> Announcement:
    announcement = Announcement(
        provider_id=kita.provider_id,
        kita_id=kita.id,
        author_id=author.id,
        category=Category.URGENT,
        status=AnnouncementStatus.SENT,
        title="Wasserschaden: Kita heute geschlossen",
        body="Bitte holen Sie Ihr Kind bis 12 Uhr ab.",
        sent_at=MORNING,
    )
    db.add(announcement)
    db.flush()
    return announcement


def test_urgent_message_is_mailed_at_once_and_only_once(
    db: Session,
    database: Database,
    mail_config: KitaConfig,
    smtp: tuple[_Inbox, int],
) -> None:
    inbox, _port = smtp
    kita = make_kita(db)
    _child, parent, educator = _family(db, kita, "ar", "Omar")
    announcement = _urgent_announcement(db, kita, educator)
    report = notify.enqueue(
        db,
        message_id=announcement.id,
        kind="announcement",
        category="urgent",
        recipients=[notify.Recipient(parent.id, "ar")],
        url=f"/messages/a/{announcement.id}",
        now=MORNING,
    )
    db.commit()
    assert report.email == 1
    # The digest never carries urgent messages; the urgent job sends them at once.
    assert email_delivery.send_digests(database, mail_config, EVENING) == 0
    assert email_delivery.send_urgent(database, mail_config, MORNING) == 1
    (message,) = inbox.messages
    assert message["To"] == parent.email and message["Content-Language"] == "ar"
    assert message["Subject"] == notify.generic_title("urgent", "ar")
    body = _body(message)
    assert f"https://kita.test/messages/a/{announcement.id}" in body
    assert "Wasserschaden" not in body and "12 Uhr" not in body
    assert email_delivery.send_urgent(database, mail_config, MORNING + timedelta(minutes=1)) == 0
    assert len(inbox.messages) == 1


def test_nothing_is_lost_while_the_smtp_server_is_away(
    db: Session,
    database: Database,
    config: KitaConfig,
    mail_config: KitaConfig,
    smtp: tuple[_Inbox, int],
) -> None:
    inbox, _port = smtp
    kita = make_kita(db)
    _child, parent, educator = _family(db, kita, "tr", "Elif")
    announcement = _urgent_announcement(db, kita, educator)
    notify.enqueue(
        db,
        message_id=announcement.id,
        kind="announcement",
        category="urgent",
        recipients=[notify.Recipient(parent.id, "tr")],
        url=f"/messages/a/{announcement.id}",
        now=MORNING,
    )
    db.commit()
    away = dataclasses.replace(config, smtp_host="127.0.0.1", smtp_port=_free_port())
    assert email_delivery.send_urgent(database, away, MORNING) == 0
    db.rollback()
    row = db.scalars(select(EmailDelivery)).one()
    assert (row.status, row.attempts) == (DeliveryStatus.PENDING, 1)
    assert row.next_attempt_at > MORNING
    # Not due yet: the back-off is honoured even when the server is back.
    assert email_delivery.send_urgent(database, mail_config, MORNING) == 0
    assert email_delivery.send_urgent(database, mail_config, MORNING + timedelta(minutes=2)) == 1
    assert len(inbox.messages) == 1
    # After many refusals an urgent e-mail becomes an operator alert (no personal data).
    db.rollback()
    row = db.scalars(select(EmailDelivery)).one()
    row.status = DeliveryStatus.PENDING
    row.attempts = email_delivery.MAX_ATTEMPTS - 1
    row.next_attempt_at = MORNING
    db.commit()
    assert email_delivery.send_urgent(database, away, MORNING) == 0
    db.rollback()
    db.expire_all()  # the session committed above: its objects were not expired
    assert db.scalars(select(EmailDelivery)).one().status is DeliveryStatus.ALERT
    alert = db.scalars(select(OperatorAlert)).one()
    assert parent.email not in alert.detail and re.search(r"SMTP", alert.detail)


def test_without_smtp_the_rows_wait(db: Session, database: Database, config: KitaConfig) -> None:
    kita = make_kita(db)
    _child, parent, educator = _family(db, kita, "tr", "Can")
    announcement = _urgent_announcement(db, kita, educator)
    notify.enqueue(
        db,
        message_id=announcement.id,
        kind="announcement",
        category="urgent",
        recipients=[notify.Recipient(parent.id, "tr")],
        url=f"/messages/a/{announcement.id}",
        now=MORNING,
    )
    db.commit()
    assert email_delivery.send_urgent(database, config, MORNING) == 0
    assert email_delivery.send_digests(database, config, EVENING) == 0
    db.rollback()
    assert db.scalars(select(EmailDelivery)).one().status is DeliveryStatus.PENDING


def test_the_worker_runs_the_email_jobs() -> None:
    names = {job.name for job in default_jobs()}
    assert {"email.urgent", "email.digest", "conversations.translate_retry"} <= names
