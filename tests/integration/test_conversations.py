"""Conversations between a family and a Kita team: encryption at rest, language detection and
translation both ways through a local LibreTranslate-compatible server (no translation memory),
access, attachments, working hours, the interpreter flag and bad input."""

from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.access import load_actor
from kita.blobs import BlobStore
from kita.config import KitaConfig
from kita.db import Database
from kita.errors import ValidationError
from kita.models.accounts import Role, User
from kita.models.audit import AuditEvent
from kita.models.messaging import (
    Attachment,
    Conversation,
    ConversationMessage,
    ConversationMessageTranslation,
    ConversationRead,
    EmailDelivery,
    Team,
    TranslationMemoryEntry,
    TranslationStatus,
    WorkingHours,
)
from kita.models.organisation import Child, Group, GuardianLink, Kita
from kita.services import conversations
from kita.services.demo import load_demo, load_demo_conversations
from kita.services.lifecycle import LOCAL_TIMEZONE
from kita.services.translation import Translator, translator_for
from kita.worker import WorkerContext, default_jobs
from tests.conftest import PG_URL, csrf_token, login_as
from tests.factories import make_child, make_group, make_kita, make_user
from tests.integration.test_canaries import files_containing, postgres_rows_containing
from tests.libretranslate_fake import FakeLibreTranslate

TURKISH = "Merhaba, oğlum bugün hasta ve evde kalacak. Yarın tekrar gelecek."
GERMAN = "Gute Besserung! Bitte bringen Sie morgen die Gummistiefel mit."
PDF = b"%PDF-1.4\n% a small test document\n"


@pytest.fixture
def config(config: KitaConfig, libretranslate: FakeLibreTranslate) -> KitaConfig:
    return dataclasses.replace(
        config, translation_provider="libretranslate", libretranslate_url=libretranslate.url
    )


@dataclasses.dataclass
class Family:
    kita: Kita
    group: Group
    child: Child
    parent: User
    second_parent: User
    educator: User
    leader: User


@pytest.fixture
def family(db: Session) -> Family:
    kita = make_kita(db)
    group = make_group(db, kita, name="Bären")
    child = make_child(db, group, first_name="Deniz", last_name="Yılmaz")
    # The first parent reads the app in English (the assertions name English texts), the
    # second in Turkish. Staff screens are in English too; staff still read and write in the
    # Kita's language (German), whatever their screen language.
    parent = make_user(db, roles=[(kita, Role.PARENT)], children=[child], locale="en")
    second = make_user(db, roles=[(kita, Role.PARENT)], children=[child], locale="tr")
    educator = make_user(
        db, roles=[(kita, Role.EDUCATOR)], groups=[group], locale="en", name="Anna Beispiel"
    )
    leader = make_user(db, roles=[(kita, Role.LEADER)], locale="en")
    return Family(kita, group, child, parent, second, educator, leader)


def _client(app: Flask, user: User) -> FlaskClient:
    client = app.test_client()
    login_as(client, app, user)
    return client


def _multipart(fields: dict[str, str], files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart body built in memory (the test client's encoder spools big bodies to a
    temporary file it never closes)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value.encode()
        + b"\r\n"
        for name, value in fields.items()
    ]
    for filename, data in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _post(client: FlaskClient, path: str, data: dict[str, Any], **kwargs: Any) -> Any:
    fields = {k: v for k, v in data.items() if k != "files"}
    fields["csrf_token"] = csrf_token(client, "/conversations")
    body, content_type = _multipart(fields, data.get("files", []))
    return client.post(path, data=body, content_type=content_type, **kwargs)


def _start(
    app: Flask, family: Family, body: str = TURKISH, **extra: object
) -> tuple[FlaskClient, uuid.UUID]:
    client = _client(app, family.parent)
    response = _post(
        client,
        "/conversations/new",
        {
            "recipient": f"{family.child.id}/group",
            "topic": "absence",
            "body": body,
            **extra,
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    match = re.search(r"/conversations/([0-9a-f-]{36})", response.headers["Location"])
    assert match
    return client, uuid.UUID(match.group(1))


def _counts(db: Session) -> tuple[int, ...]:
    db.rollback()
    return tuple(
        db.scalar(select(func.count()).select_from(model)) or 0
        for model in (Conversation, ConversationMessage, ConversationMessageTranslation, Attachment)
    )


# --- translation -----------------------------------------------------------------------------


def test_turkish_message_is_detected_and_translated_for_staff_without_memory(
    app: Flask, db: Session, family: Family, libretranslate: FakeLibreTranslate
) -> None:
    _client_parent, conversation_id = _start(app, family)
    db.rollback()
    message = db.scalars(
        select(ConversationMessage).where(ConversationMessage.conversation_id == conversation_id)
    ).one()
    assert (message.locale, message.detected, message.from_staff) == ("tr", True, False)
    translation = db.scalars(
        select(ConversationMessageTranslation).where(
            ConversationMessageTranslation.message_id == message.id
        )
    ).one()
    assert (translation.locale, translation.status) == ("de", TranslationStatus.MACHINE)
    assert libretranslate.calls == 1
    assert libretranslate.requests[0]["source"] == "tr"
    assert libretranslate.requests[0]["target"] == "de"
    # Personal texts never enter the shared translation memory.
    assert db.scalar(select(func.count()).select_from(TranslationMemoryEntry)) == 0

    page = _client(app, family.educator).get(f"/conversations/{conversation_id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert f"[de] {TURKISH}" in html
    # The original is one tap away: rendered inside a <details> element, marked as Turkish.
    details = html[html.index('<details class="original">') :]
    assert 'lang="tr"' in details[: details.index("</details>")]
    assert TURKISH in details[: details.index("</details>")]


def test_staff_reply_is_translated_into_each_guardians_language(
    app: Flask, db: Session, family: Family, libretranslate: FakeLibreTranslate
) -> None:
    parent_client, conversation_id = _start(app, family)
    staff = _client(app, family.educator)
    response = _post(staff, f"/conversations/{conversation_id}/messages", {"body": GERMAN})
    assert response.status_code == 302
    db.rollback()
    reply = db.scalars(
        select(ConversationMessage).where(
            ConversationMessage.conversation_id == conversation_id,
            ConversationMessage.from_staff.is_(True),
        )
    ).one()
    assert (reply.locale, reply.detected) == ("de", False)
    targets = {
        row.locale: row.status
        for row in db.scalars(
            select(ConversationMessageTranslation).where(
                ConversationMessageTranslation.message_id == reply.id
            )
        )
    }
    assert targets == {"en": TranslationStatus.MACHINE, "tr": TranslationStatus.MACHINE}

    html = parent_client.get(f"/conversations/{conversation_id}").get_data(as_text=True)
    assert f"[en] {GERMAN}" in html
    assert f"[tr] {GERMAN}" not in html
    # Families see the team, never the person who wrote.
    assert "Team of group Bären" in html
    assert "Anna Beispiel" not in html
    # Colleagues do see who wrote it.
    staff_html = staff.get(f"/conversations/{conversation_id}").get_data(as_text=True)
    assert "Anna Beispiel" in staff_html
    # The other guardian reads the Turkish translation.
    other = _client(app, family.second_parent)
    assert f"[tr] {GERMAN}" in other.get(f"/conversations/{conversation_id}").get_data(as_text=True)
    # Families without a push subscription get the e-mail fallback (digest) for the reply.
    mailed = set(
        db.scalars(select(EmailDelivery.user_id).where(EmailDelivery.message_id == reply.id))
    )
    assert mailed == {family.parent.id, family.second_parent.id}


def test_engine_down_shows_original_with_note_and_the_job_translates_later(
    app: Flask,
    db: Session,
    family: Family,
    libretranslate: FakeLibreTranslate,
    config: KitaConfig,
) -> None:
    libretranslate.down = True
    _parent, conversation_id = _start(app, family)
    db.rollback()
    row = db.scalars(select(ConversationMessageTranslation)).one()
    assert (row.status, row.text_ct) == (TranslationStatus.PENDING, None)
    staff = _client(app, family.educator)
    html = staff.get(f"/conversations/{conversation_id}").get_data(as_text=True)
    assert TURKISH in html
    assert "Not translated" in html

    state = app.extensions["kita"]
    job = next(j for j in default_jobs() if j.name == "conversations.translate_retry")
    context = WorkerContext(config, state.database, state.keys)
    assert job.run(context) == 0  # still down: nothing lost, tried again later
    libretranslate.down = False
    assert job.run(context) == 1
    html = staff.get(f"/conversations/{conversation_id}").get_data(as_text=True)
    assert f"[de] {TURKISH}" in html
    assert "Not translated" not in html
    db.rollback()
    assert db.scalar(select(func.count()).select_from(TranslationMemoryEntry)) == 0


def test_undetectable_text_falls_back_to_the_parents_language(
    app: Flask, db: Session, family: Family
) -> None:
    _start(app, family, body="OK!")
    db.rollback()
    message = db.scalars(select(ConversationMessage)).one()
    assert (message.locale, message.detected) == ("en", False)


# --- encryption at rest ----------------------------------------------------------------------


def test_texts_files_and_names_are_encrypted_at_rest(
    app: Flask, db: Session, database: Database, family: Family, config: KitaConfig
) -> None:
    marker = f"kanarya{uuid.uuid4().hex}"
    secret_name = f"Arztbrief-{marker}.pdf"
    secret_pdf = PDF + f"Diagnose: Scharlach {marker}\n".encode()
    _parent, conversation_id = _start(
        app, family, body=f"{TURKISH} {marker}", files=[(secret_name, secret_pdf)]
    )
    db.rollback()
    translation = db.scalars(select(ConversationMessageTranslation)).one()
    assert translation.status is TranslationStatus.MACHINE and translation.text_ct
    attachment = db.scalars(select(Attachment)).one()
    blob = BlobStore(config.blob_dir).get(attachment.blob_id)
    assert b"Scharlach" not in blob and b"%PDF" not in blob
    # Control: a group name is stored in plain text, and the same scan must find it.
    control = f"kontrolle{uuid.uuid4().hex}"
    make_group(db, family.kita, name=control)
    # The marker is in the message, its translation, the file and the file's name: it is
    # nowhere at rest (database files with their WAL or every PostgreSQL table, blobs,
    # keystore).
    root = Path(config.database_url.removeprefix("sqlite:///")).parent
    for needle, expected_found in ((marker.encode(), False), (control.encode(), True)):
        if PG_URL:
            found = postgres_rows_containing(database, needle)
            found += files_containing(config.instance_path, needle)
        else:
            found = files_containing(root, needle)
        assert bool(found) is expected_found, (needle, found)
    # Readable to the family and the team through the app.
    page = _client(app, family.educator).get(f"/conversations/{conversation_id}")
    assert marker in page.get_data(as_text=True)
    # A ciphertext moved to another row does not decrypt.
    db.rollback()
    messages = list(db.scalars(select(ConversationMessage)))
    conversation = db.get(Conversation, conversation_id)
    assert conversation is not None
    with pytest.raises(Exception, match=r"(?i)decrypt|authentic|invalid"):
        conversations.decrypt_for_conversation(
            app.extensions["kita"].keys,
            conversation,
            table="conversation_messages",
            column="body",
            row_id=uuid.uuid4(),
            ciphertext=messages[0].body_ct,
            key_version=messages[0].key_version,
        )


# --- attachments -----------------------------------------------------------------------------


def test_attachment_is_downloadable_by_participants_only(
    app: Flask, db: Session, family: Family
) -> None:
    parent, conversation_id = _start(app, family, files=[("../../etc/Krankmeldung.exe", PDF)])
    db.rollback()
    attachment = db.scalars(select(Attachment)).one()
    assert (attachment.media_type, attachment.size) == ("application/pdf", len(PDF))
    path = f"/conversations/{conversation_id}/attachments/{attachment.id}"
    for client in (parent, _client(app, family.educator), _client(app, family.leader)):
        response = client.get(path)
        assert response.status_code == 200
        assert response.data == PDF
        assert response.mimetype == "application/pdf"
        # The name is cleaned and its extension follows the content.
        assert "Krankmeldung.pdf" in response.headers["Content-Disposition"]
        assert response.headers["Content-Disposition"].startswith("attachment")
    db.rollback()
    other_kita_parent = make_user(db, roles=[(family.kita, Role.PARENT)])
    assert _client(app, other_kita_parent).get(path).status_code == 404


def test_attachment_of_another_conversation_is_not_reachable_by_id(
    app: Flask, db: Session, family: Family
) -> None:
    _parent, first = _start(app, family, files=[("a.pdf", PDF)])
    other_child = make_child(db, family.group)
    other_parent = make_user(db, roles=[(family.kita, Role.PARENT)], children=[other_child])
    other_client = _client(app, other_parent)
    response = _post(
        other_client,
        "/conversations/new",
        {"recipient": f"{other_child.id}/group", "topic": "question", "body": "Frage zum Fest"},
    )
    assert response.status_code == 302
    db.rollback()
    second = db.scalars(
        select(Conversation.id).where(Conversation.child_id == other_child.id)
    ).one()
    attachment = db.scalars(select(Attachment)).one()
    # The other family guesses the attachment id under its own conversation: 404.
    assert (
        other_client.get(f"/conversations/{second}/attachments/{attachment.id}").status_code == 404
    )
    assert (
        other_client.get(f"/conversations/{first}/attachments/{attachment.id}").status_code == 404
    )


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("bild.gif", b"GIF89a" + b"\x00" * 20, "Only PDF documents and JPEG or PNG images"),
        ("gross.pdf", b"%PDF-" + b"x" * conversations.ATTACHMENT_MAX_BYTES, "larger than 10 MB"),
        ("leer.pdf", b"", "empty"),
    ],
)
def test_bad_attachments_are_refused_and_nothing_is_written(
    app: Flask, db: Session, family: Family, name: str, data: bytes, message: str
) -> None:
    before = _counts(db)
    client = _client(app, family.parent)
    response = _post(
        client,
        "/conversations/new",
        {
            "recipient": f"{family.child.id}/group",
            "topic": "absence",
            "body": "Hallo",
            "files": [(name, data)],
        },
    )
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert _counts(db) == before


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", "Please write a message."),
        ("   \n  ", "Please write a message."),
        ("x" * (conversations.BODY_MAX + 1), "At most 5000 characters"),
        ("a\x00b", "not allowed"),
    ],
)
def test_empty_or_oversized_reply_is_refused_and_nothing_is_written(
    app: Flask, db: Session, family: Family, body: str, message: str
) -> None:
    parent, conversation_id = _start(app, family)
    before = _counts(db)
    response = _post(parent, f"/conversations/{conversation_id}/messages", {"body": body})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert _counts(db) == before


def test_new_conversation_with_forged_recipient_or_topic_is_refused(
    app: Flask, db: Session, family: Family
) -> None:
    foreign_child = make_child(db, make_group(db, make_kita(db)))
    client = _client(app, family.parent)
    before = _counts(db)
    for data in (
        {"recipient": f"{foreign_child.id}/group", "topic": "absence", "body": "Hallo"},
        {"recipient": f"{family.child.id}/nobody", "topic": "absence", "body": "Hallo"},
        {"recipient": "not-a-uuid", "topic": "absence", "body": "Hallo"},
        {"recipient": f"{family.child.id}/group", "topic": "secret", "body": "Hallo"},
    ):
        response = _post(client, "/conversations/new", data)
        assert response.status_code == 422, data
        assert "Please choose one of the offered options." in response.get_data(as_text=True)
    assert _counts(db) == before


def test_oversized_request_body_is_refused_cleanly(app: Flask, family: Family) -> None:
    client = _client(app, family.parent)
    big = b"%PDF-" + b"x" * (35 * 1024 * 1024)
    response = _post(
        client,
        "/conversations/new",
        {"recipient": f"{family.child.id}/group", "topic": "absence", "body": "Hallo",
         "files": [("a.pdf", big)]},
    )  # fmt: skip
    assert response.status_code == 413


# --- access ----------------------------------------------------------------------------------


def test_conversations_are_visible_to_the_family_and_the_team_only(
    app: Flask, db: Session, family: Family
) -> None:
    _parent, conversation_id = _start(app, family)
    kita = family.kita
    other_group = make_group(db, kita)
    outsiders = {
        "other family": make_user(
            db, roles=[(kita, Role.PARENT)], children=[make_child(db, family.group)]
        ),
        "educator of another group": make_user(
            db, roles=[(kita, Role.EDUCATOR)], groups=[other_group]
        ),
        "council": make_user(db, roles=[(kita, Role.COUNCIL), (kita, Role.PARENT)]),
        "caretaker": make_user(db, roles=[(kita, Role.CARETAKER)]),
        "provider admin": make_user(db, admin_of=kita.provider),
        "leader of another Kita": make_user(db, roles=[(make_kita(db), Role.LEADER)]),
    }
    # A guardian without custody (may only pick up) does not read the conversation either.
    pick_up_only = make_user(db, roles=[(kita, Role.PARENT)], children=[family.child])
    link = db.scalars(select(GuardianLink).where(GuardianLink.user_id == pick_up_only.id)).one()
    link.has_custody = False
    db.commit()
    outsiders["guardian without custody"] = pick_up_only
    for who, user in outsiders.items():
        client = _client(app, user)
        assert client.get(f"/conversations/{conversation_id}").status_code == 404, who
        response = _post(client, f"/conversations/{conversation_id}/messages", {"body": "Hi"})
        assert response.status_code == 404, who
        inbox = client.get("/conversations").get_data(as_text=True)
        assert str(conversation_id) not in inbox, who
    for user in (family.parent, family.second_parent, family.educator, family.leader):
        assert _client(app, user).get(f"/conversations/{conversation_id}").status_code == 200


def test_office_conversations_are_for_leaders_not_educators(
    app: Flask, db: Session, family: Family
) -> None:
    client = _client(app, family.parent)
    response = _post(
        client,
        "/conversations/new",
        {"recipient": f"{family.child.id}/office", "topic": "question", "body": "Frage"},
    )
    assert response.status_code == 302
    db.rollback()
    conversation = db.scalars(select(Conversation)).one()
    assert (conversation.team, conversation.group_id) == (Team.OFFICE, None)
    assert _client(app, family.leader).get(f"/conversations/{conversation.id}").status_code == 200
    assert _client(app, family.educator).get(f"/conversations/{conversation.id}").status_code == 404


# --- inbox and reading -----------------------------------------------------------------------


def test_inbox_counts_unread_messages_of_the_other_side(
    app: Flask, db: Session, family: Family
) -> None:
    _parent, conversation_id = _start(app, family)
    staff = _client(app, family.educator)
    inbox = staff.get("/conversations").get_data(as_text=True)
    assert "1 new" in inbox
    assert "Absence or illness" in inbox and "Deniz Yılmaz" in inbox
    db.rollback()
    assert conversations.unread_total(db, load_actor(db, family.educator)) == 1
    staff.get(f"/conversations/{conversation_id}")
    db.rollback()
    assert conversations.unread_total(db, load_actor(db, family.educator)) == 0
    assert "1 new" not in staff.get("/conversations").get_data(as_text=True)
    # The parent's own message is not news to the parent.
    assert conversations.unread_total(db, load_actor(db, family.parent)) == 0
    read = db.scalars(
        select(ConversationRead).where(ConversationRead.user_id == family.educator.id)
    )
    assert len(list(read)) == 1


def test_inbox_is_empty_with_a_hint_and_paginates(app: Flask, db: Session, family: Family) -> None:
    html = _client(app, family.parent).get("/conversations").get_data(as_text=True)
    assert "No messages yet." in html
    assert "New message" in html
    html = (
        _client(app, make_user(db, roles=[(family.kita, Role.CARETAKER)]))
        .get("/conversations")
        .get_data(as_text=True)
    )
    assert "No messages yet." in html and "/conversations/new" not in html
    state = app.extensions["kita"]
    actor = load_actor(db, family.parent)
    translator = Translator(db, None, use_memory=False)
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    for number in range(conversations.INBOX_PAGE_SIZE + 3):
        conversations.start_conversation(
            db,
            actor=actor,
            keys=state.keys,
            blobs=BlobStore(state.config.blob_dir),
            translator=translator,
            draft=conversations.ConversationDraft(
                family.child.id, Team.GROUP, "question", f"Frage Nummer {number}"
            ),
            writer_locale="de",
            now=start + timedelta(minutes=number),
        )
    db.commit()
    page = conversations.inbox(db, actor=actor, keys=state.keys, page=2)
    assert (page.total, page.pages, len(page.items)) == (23, 2, 3)
    first = conversations.inbox(db, actor=actor, keys=state.keys, page=1)
    assert (
        first.items[0].conversation.last_message_at > first.items[-1].conversation.last_message_at
    )
    html = _client(app, family.parent).get("/conversations?page=2").get_data(as_text=True)
    assert "Page 2 of 2" in html


# --- interpreter flag ------------------------------------------------------------------------


def test_interpreter_flag_shows_a_banner_and_puts_the_original_first(
    app: Flask, db: Session, family: Family
) -> None:
    parent, conversation_id = _start(app, family)
    assert (
        _post(parent, f"/conversations/{conversation_id}/interpreter", {"needed": "on"}).status_code
        == 404
    )
    staff = _client(app, family.educator)
    response = _post(staff, f"/conversations/{conversation_id}/interpreter", {"needed": "on"})
    assert response.status_code == 302
    db.rollback()
    assert db.get(Conversation, conversation_id).needs_interpreter is True  # type: ignore[union-attr]
    assert (
        db.scalars(select(AuditEvent).where(AuditEvent.action == "conversation.interpreter"))
        .one()
        .detail
        == "on"
    )
    html = staff.get(f"/conversations/{conversation_id}").get_data(as_text=True)
    assert "Needs an interpreter" in html and "do not rely on them" in html
    # The original comes first; the machine translation is behind a tap, marked unreliable.
    assert html.index(TURKISH) < html.index(f"[de] {TURKISH}")
    assert "Show the machine translation (not reliable)" in html
    assert "Needs an interpreter" in parent.get(f"/conversations/{conversation_id}").get_data(
        as_text=True
    )
    assert "Needs an interpreter" in staff.get("/conversations").get_data(as_text=True)
    _post(staff, f"/conversations/{conversation_id}/interpreter", {})
    db.rollback()
    db.expire_all()
    assert db.get(Conversation, conversation_id).needs_interpreter is False  # type: ignore[union-attr]


# --- working hours ---------------------------------------------------------------------------


def _tomorrow_only(db: Session, kita: Kita) -> None:
    tomorrow = (datetime.now(LOCAL_TIMEZONE) + timedelta(days=1)).weekday()
    db.add(WorkingHours(kita_id=kita.id, weekday=tomorrow, starts=time(8), ends=time(16)))
    db.commit()


def test_outside_working_hours_parents_are_told_and_staff_get_no_notification(
    app: Flask, db: Session, family: Family
) -> None:
    _tomorrow_only(db, family.kita)
    client = _client(app, family.parent)
    assert "The team usually answers on" in client.get("/conversations/new").get_data(as_text=True)
    response = _post(
        client,
        "/conversations/new",
        {"recipient": f"{family.child.id}/group", "topic": "absence", "body": TURKISH},
        follow_redirects=True,
    )
    html = response.get_data(as_text=True)
    assert "Your message was sent." in html
    assert "The team usually answers on" in html and "08:00" in html
    db.rollback()
    assert db.scalar(select(func.count()).select_from(EmailDelivery)) == 0


def test_within_working_hours_staff_are_notified(app: Flask, db: Session, family: Family) -> None:
    _client_parent, _conversation_id = _start(app, family)  # no hours set: always reachable
    db.rollback()
    assert set(db.scalars(select(EmailDelivery.user_id))) == {family.educator.id}
    html = _client_parent.get(f"/conversations/{_conversation_id}").get_data(as_text=True)
    assert "The team usually answers on" not in html


def test_working_hours_rules() -> None:
    hours = {0: (time(7, 30), time(16)), 4: (time(8), time(12))}  # Monday, Friday
    monday_noon = datetime(2026, 3, 2, 12, 0, tzinfo=LOCAL_TIMEZONE)
    assert conversations.within_working_hours(hours, monday_noon)
    assert conversations.next_working_start(hours, monday_noon) is None
    monday_evening = datetime(2026, 3, 2, 16, 0, tzinfo=LOCAL_TIMEZONE)
    assert not conversations.within_working_hours(hours, monday_evening)
    assert conversations.next_working_start(hours, monday_evening) == datetime(
        2026, 3, 6, 8, 0, tzinfo=LOCAL_TIMEZONE
    )
    saturday = datetime(2026, 3, 7, 10, 0, tzinfo=LOCAL_TIMEZONE)
    assert conversations.next_working_start(hours, saturday) == datetime(
        2026, 3, 9, 7, 30, tzinfo=LOCAL_TIMEZONE
    )
    early_monday = datetime(2026, 3, 9, 6, 0, tzinfo=LOCAL_TIMEZONE).astimezone(UTC)
    assert conversations.next_working_start(hours, early_monday) == datetime(
        2026, 3, 9, 7, 30, tzinfo=LOCAL_TIMEZONE
    )
    assert conversations.within_working_hours({}, saturday)


def test_leader_edits_working_hours(app: Flask, db: Session, family: Family) -> None:
    client = _client(app, family.leader)
    path = f"/conversations/kitas/{family.kita.id}/working-hours"
    assert client.get(path).status_code == 200
    form = {"open_0": "on", "starts_0": "07:30", "ends_0": "16:00", "open_2": "on",
            "starts_2": "08:00", "ends_2": "12:00"}  # fmt: skip
    assert _post(client, path, form).status_code == 302
    db.rollback()
    assert conversations.working_hours(db, family.kita.id) == {
        0: (time(7, 30), time(16)),
        2: (time(8), time(12)),
    }
    html = client.get(path).get_data(as_text=True)
    assert 'value="07:30"' in html
    for bad in ({"open_1": "on", "starts_1": "16:00", "ends_1": "08:00"},
                {"open_1": "on", "starts_1": "25:00", "ends_1": "26:00"},
                {"open_1": "on", "starts_1": "", "ends_1": "12:00"}):  # fmt: skip
        assert _post(client, path, bad).status_code == 422, bad
    db.rollback()
    assert len(conversations.working_hours(db, family.kita.id)) == 2
    assert _client(app, family.educator).get(path).status_code == 404


# --- parsers ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(max_size=300),
    data=st.binary(max_size=64),
    kind=st.sampled_from([b"", b"%PDF-", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"]),
)
def test_uploads_are_refused_or_cleaned_never_crash(name: str, data: bytes, kind: bytes) -> None:
    refused: set[str] = set()
    try:
        checked = conversations.check_uploads([conversations.Upload(name, kind + data)])
    except ValidationError as error:
        refused = set(error.fields)
    if refused:
        assert refused == {"files"}
        return
    (upload,) = checked
    # Accepted only by signature, whatever the name says.
    assert (kind + data).startswith((b"%PDF-", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"))
    assert 0 < len(upload.filename) <= conversations.FILENAME_MAX
    assert not set(upload.filename) & set('/\\:*?"<>|\x00\n\r')
    assert upload.filename.rsplit(".", 1)[1] in {"pdf", "jpg", "png"}


@settings(max_examples=200, deadline=None)
@given(body=st.text(max_size=conversations.BODY_MAX + 50))
def test_bodies_are_accepted_or_refused_with_a_field_message(body: str) -> None:
    refused: set[str] = set()
    try:
        cleaned = conversations.clean_body(body)
    except ValidationError as error:
        refused = set(error.fields)
    if refused:
        assert refused == {"body"}
        return
    assert cleaned and cleaned == cleaned.strip() and len(cleaned) <= conversations.BODY_MAX


# --- demo ------------------------------------------------------------------------------------


def test_demo_conversations_in_several_languages_once(
    app: Flask, db: Session, libretranslate: FakeLibreTranslate
) -> None:
    state = app.extensions["kita"]
    assert load_demo(db, state.hasher)
    blobs = BlobStore(state.config.blob_dir)
    translator = translator_for(db, state.config, use_memory=False)
    now = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
    created = load_demo_conversations(
        db, keys=state.keys, blobs=blobs, translator=translator, now=now
    )
    db.commit()
    assert created == 3
    languages = {
        message.locale
        for message in db.scalars(
            select(ConversationMessage).where(ConversationMessage.from_staff.is_(False))
        )
    }
    assert languages == {"tr", "ar", "uk"}
    assert db.scalar(select(func.count()).select_from(TranslationMemoryEntry)) == 0
    assert (
        db.scalar(
            select(func.count()).select_from(Conversation).where(Conversation.needs_interpreter)
        )
        == 1
    )
    kitas = db.scalar(select(func.count()).select_from(Kita))
    assert db.scalar(select(func.count()).select_from(WorkingHours)) == 5 * (kitas or 0)
    # The Turkish demo login reads the staff answer in Turkish.
    turkish = db.scalars(select(User).where(User.email == "eltern1@demo.kita.example")).one()
    page = conversations.inbox(db, actor=load_actor(db, turkish), keys=state.keys)
    assert page.total == 1
    again = load_demo_conversations(
        db, keys=state.keys, blobs=blobs, translator=translator, now=now
    )
    assert again == 0
    assert db.scalar(select(func.count()).select_from(Conversation)) == 3


def test_erasure_targets_name_the_conversation_keys_and_blobs(
    app: Flask, db: Session, family: Family
) -> None:
    _parent, conversation_id = _start(app, family, files=[("a.pdf", PDF)])
    db.rollback()
    attachment = db.scalars(select(Attachment)).one()
    assert conversations.erasure_targets_for_child(db, family.child.id) == (
        [conversation_id],
        [attachment.blob_id],
    )
    assert conversations.erasure_targets_for_child(db, uuid.uuid4()) == ([], [])


def test_report_an_absence_from_the_home_page_preselects_child_team_and_topic(
    client: FlaskClient, login: Any, family: Family
) -> None:
    login(family.parent)
    home = client.get("/home").get_data(as_text=True)
    match = re.search(r'href="(/conversations/new\?[^"]+)"', home)
    assert match, "no absence entry point on the parent's home"
    link = match.group(1).replace("&amp;", "&")
    assert "topic=absence" in link and str(family.child.id) in link
    page = client.get(link).get_data(as_text=True)
    assert re.search(rf'<option value="{family.child.id}/group"\s+selected', page)
    assert re.search(r'<option value="absence"\s+selected', page)
    # An unknown topic in the address preselects nothing rather than failing.
    other = client.get("/conversations/new?topic=nonsense").get_data(as_text=True)
    assert not re.search(r'<option value="[a-z]+"\s+selected', other)


def test_photos_in_conversations_are_re_encoded_without_their_metadata() -> None:
    import io

    from PIL import Image

    photo = io.BytesIO()
    exif = Image.Exif()
    exif[0x010F] = "CameraMaker-Marker"  # Make
    Image.new("RGB", (40, 30), "red").save(photo, "JPEG", exif=exif.tobytes())
    assert b"CameraMaker-Marker" in photo.getvalue()

    (checked,) = conversations.check_uploads(
        [conversations.Upload("IMG_0001.JPG", photo.getvalue())]
    )

    assert checked.media_type == "image/jpeg" and checked.filename == "IMG_0001.jpg"
    assert checked.data.startswith(b"\xff\xd8\xff")
    assert b"CameraMaker-Marker" not in checked.data
