"""The parent's feed and message view over HTTP: the parent's language with the original one
tap away, siblings deduplicated, another group's announcement invisible (404 for a guessed id),
recalled and edited messages, replay-safe confirmations, attachments only through the access
policy, conversations with unread counts, and the read-aloud button in the right language."""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.access import load_actor
from kita.blobs import BlobStore
from kita.crypto import KeyService
from kita.models.accounts import Role, User
from kita.models.messaging import (
    Announcement,
    AnnouncementRecipient,
    Conversation,
    ConversationMessage,
    ConversationRead,
    Team,
)
from kita.models.organisation import Child, Group, Kita
from kita.services import feed
from tests.conftest import post_form
from tests.factories import (
    make_announcement,
    make_announcement_attachment,
    make_child,
    make_group,
    make_kita,
    make_user,
)

TITLE_DE = "Morgen geschlossen"
BODY_DE = "Die Kita bleibt morgen wegen einer Fortbildung geschlossen."
TITLE_TR = "Yarın kapalıyız"
BODY_TR = "Kreş yarın eğitim nedeniyle kapalı kalacaktır."
TITLE_AR = "مغلق غدا"
BODY_AR = "ستبقى الروضة مغلقة غدا بسبب دورة تدريبية"


@dataclass
class World:
    kita: Kita
    raupen: Group
    igel: Group
    ayse: Child
    emre: Child
    lina: Child
    turkish: User  # parent of Ayşe (Raupen) and Emre (Igel): siblings in two groups
    arabic: User  # parent of Lina (Igel)
    german: User  # parent of Max (Raupen)
    educator: User  # Raupen
    other_educator: User  # Igel
    leader: User
    other_kita_parent: User


@pytest.fixture
def world(db: Session) -> World:
    return build_world(db)


def build_world(db: Session) -> World:
    """One Kita with two groups: a Turkish family with a child in each, an Arabic family in the
    Igel group, a German family in the Raupen group; staff; a parent of another Kita."""
    kita = make_kita(db, name="Kita Sonnenblume")
    raupen, igel = make_group(db, kita, "Raupen"), make_group(db, kita, "Igel")
    ayse = make_child(db, raupen, "Ayşe", "Yılmaz")
    emre = make_child(db, igel, "Emre", "Yılmaz")
    lina = make_child(db, igel, "Lina", "Haddad")
    max_ = make_child(db, raupen, "Max", "Müller")
    other_kita = make_kita(db)
    stranger_child = make_child(db, make_group(db, other_kita))
    return World(
        kita=kita,
        raupen=raupen,
        igel=igel,
        ayse=ayse,
        emre=emre,
        lina=lina,
        turkish=make_user(
            db, name="Fatma Yılmaz", roles=[(kita, Role.PARENT)], children=[ayse, emre], locale="tr"
        ),
        arabic=make_user(
            db, name="Samira Haddad", roles=[(kita, Role.PARENT)], children=[lina], locale="ar"
        ),
        german=make_user(
            db, name="Jana Müller", roles=[(kita, Role.PARENT)], children=[max_], locale="de"
        ),
        educator=make_user(db, name="Erika", roles=[(kita, Role.EDUCATOR)], groups=[raupen]),
        other_educator=make_user(db, roles=[(kita, Role.EDUCATOR)], groups=[igel]),
        leader=make_user(db, roles=[(kita, Role.LEADER)]),
        other_kita_parent=make_user(
            db, roles=[(other_kita, Role.PARENT)], children=[stranger_child], locale="tr"
        ),
    )


def to_everyone(db: Session, w: World, **kwargs: Any) -> Announcement:
    """An announcement to both groups, sent to the three families, translated into tr and ar."""
    kwargs.setdefault(
        "translations", {"tr": (TITLE_TR, BODY_TR), "ar": (TITLE_AR, BODY_AR, "phrasebook")}
    )
    return make_announcement(
        db,
        w.kita,
        w.educator,
        groups=[w.raupen, w.igel],
        recipients=[w.turkish, w.arabic, w.german],
        **kwargs,
    )


def text_of(response: Any) -> str:
    assert response.status_code == 200, response.status_code
    return html.unescape(response.get_data(as_text=True))


def recipient(db: Session, announcement: Announcement, user: User) -> AnnouncementRecipient:
    db.rollback()
    db.expire_all()
    return db.scalars(
        select(AnnouncementRecipient).where(
            AnnouncementRecipient.announcement_id == announcement.id,
            AnnouncementRecipient.user_id == user.id,
        )
    ).one()


# --- feed ------------------------------------------------------------------------------------


def test_feed_shows_each_parent_their_language_once_even_for_siblings(
    client: FlaskClient, login: Any, db: Session, world: World
) -> None:
    announcement = to_everyone(db, world)

    login(world.turkish)
    page = text_of(client.get("/messages"))
    assert page.count(TITLE_TR) == 1, "siblings in two groups give one entry"
    assert TITLE_DE not in page
    assert f"/messages/a/{announcement.id}" in page
    home = text_of(client.get("/home"))
    assert home.count(TITLE_TR) == 1
    news = home[home.index('id="news-title"') :]
    assert 'class="empty"' not in news[: news.index("</section>")]

    entries = feed.list_announcements(db, load_actor(db, world.arabic), locale="ar").items
    assert [(e.text.shown.title, e.text.shown.direction) for e in entries if e.text] == [
        (TITLE_AR, "rtl")
    ]


def test_feed_is_newest_first_and_paginated(db: Session, world: World) -> None:
    now = datetime.now(UTC)
    for day in range(3):
        make_announcement(
            db,
            world.kita,
            world.educator,
            title=f"Nachricht {day}",
            recipients=[world.german],
            sent_at=now - timedelta(days=day),
        )
    actor = load_actor(db, world.german)
    first = feed.list_announcements(db, actor, locale="de", per_page=2)
    second = feed.list_announcements(db, actor, locale="de", page=2, per_page=2)
    assert [e.text.shown.title for e in first.items if e.text] == ["Nachricht 0", "Nachricht 1"]
    assert [e.text.shown.title for e in second.items if e.text] == ["Nachricht 2"]
    assert (first.total, first.has_next, second.has_next) == (3, True, False)


def test_another_groups_announcement_is_invisible_and_404_by_id(
    client: FlaskClient, login: Any, db: Session, world: World
) -> None:
    igel_only = make_announcement(
        db,
        world.kita,
        world.other_educator,
        title="Nur für die Igel",
        groups=[world.igel],
        recipients=[world.turkish, world.arabic],
    )
    draft = make_announcement(
        db, world.kita, world.educator, title="Entwurf", recipients=[world.german], status="draft"
    )
    scheduled = make_announcement(
        db,
        world.kita,
        world.educator,
        title="Geplant",
        recipients=[world.german],
        status="scheduled",
    )

    login(world.german)
    page = text_of(client.get("/messages"))
    home = text_of(client.get("/home"))
    for hidden in ("Nur für die Igel", "Entwurf", "Geplant"):
        assert hidden not in page
        assert hidden not in home
    for announcement_id in (igel_only.id, draft.id, scheduled.id, uuid.uuid4()):
        assert client.get(f"/messages/a/{announcement_id}").status_code == 404
        response = post_form(client, f"/messages/a/{announcement_id}/confirm", {})
        assert response.status_code == 404
    # A parent of another Kita guessing the id: the same 404.
    login(world.other_kita_parent)
    assert client.get(f"/messages/a/{igel_only.id}").status_code == 404


def test_recalled_message_shows_no_content(
    client: FlaskClient, login: Any, db: Session, world: World
) -> None:
    recalled = to_everyone(db, world, status="recalled")
    login(world.turkish)
    for page in (
        text_of(client.get("/messages")),
        text_of(client.get(f"/messages/a/{recalled.id}")),
    ):
        assert "recalled" in page  # the page's marker; the words are in Turkish
        for content in (TITLE_TR, BODY_TR, TITLE_DE, BODY_DE):
            assert content not in page
    assert "readaloud.js" in text_of(client.get(f"/messages/a/{recalled.id}"))


def test_edited_message_is_marked(
    client: FlaskClient, login: Any, db: Session, world: World
) -> None:
    edited = to_everyone(db, world, edited_at=datetime.now(UTC))
    plain = to_everyone(db, world, title="Unverändert", translations={})
    login(world.german)
    assert 'class="edited"' in text_of(client.get(f"/messages/a/{edited.id}"))
    assert 'class="edited"' not in text_of(client.get(f"/messages/a/{plain.id}"))
    listing = text_of(client.get("/messages"))
    assert listing.count("tag-edited") == 1
    entries = {
        e.id: e
        for e in feed.list_announcements(db, load_actor(db, world.german), locale="de").items
    }
    assert (entries[edited.id].edited, entries[plain.id].edited) == (True, False)


# --- message view ----------------------------------------------------------------------------


def test_message_view_has_translation_original_and_read_aloud_in_the_parents_language(
    client: FlaskClient, login: Any, db: Session, world: World
) -> None:
    announcement = to_everyone(db, world)
    login(world.turkish)
    page = text_of(client.get(f"/messages/a/{announcement.id}"))

    shown = re.search(r'<div id="message-shown"[^>]*>', page)
    original = re.search(r'<div id="message-original"[^>]*>', page)
    assert shown and original
    assert 'lang="tr"' in shown[0] and "hidden" not in shown[0]
    assert 'lang="de"' in original[0] and "hidden" in original[0]
    assert TITLE_TR in page and BODY_TR in page and TITLE_DE in page and BODY_DE in page
    button = re.search(r"<button[^>]*data-read-aloud[^>]*>", page)
    assert button and 'data-lang="tr"' in button[0]
    assert "data-toggle-original" in page
    assert '<script type="module" src="/static/readaloud.js">' in page
    assert "?show=" not in page, "no switch through the URL"
    # The read-aloud module is loaded on the message page only.
    assert "readaloud.js" not in text_of(client.get("/home"))

    login(world.arabic)
    page = text_of(client.get(f"/messages/a/{announcement.id}"))
    assert re.search(r'<div id="message-shown"[^>]*lang="ar" dir="rtl"', page)
    assert re.search(r'<button[^>]*data-read-aloud[^>]*data-lang="ar"', page)


def test_untranslated_message_shows_the_original_with_a_notice(
    client: FlaskClient, login: Any, db: Session, world: World
) -> None:
    pending = to_everyone(db, world, translations={"tr": (TITLE_DE, BODY_DE, "pending")})
    login(world.turkish)
    page = text_of(client.get(f"/messages/a/{pending.id}"))
    assert "not-translated" in page
    assert "tag-untranslated" in text_of(client.get("/messages"))
    assert TITLE_DE in page
    assert "data-toggle-original" not in page
    assert re.search(r'<div id="message-shown"[^>]*lang="de"', page)
    # The German parent reads the original without any notice.
    login(world.german)
    assert "not-translated" not in text_of(client.get(f"/messages/a/{pending.id}"))


def test_opening_marks_read_and_delivered_once(
    client: FlaskClient, login: Any, db: Session, world: World
) -> None:
    announcement = to_everyone(db, world)
    login(world.turkish)
    assert "tag-new" in text_of(client.get("/messages"))
    client.get(f"/messages/a/{announcement.id}")
    first = recipient(db, announcement, world.turkish)
    assert first.read_at is not None and first.delivered_at is not None
    client.get(f"/messages/a/{announcement.id}")
    again = recipient(db, announcement, world.turkish)
    assert (again.read_at, again.delivered_at) == (first.read_at, first.delivered_at)
    assert "tag-new" not in text_of(client.get("/messages"))
    assert recipient(db, announcement, world.arabic).read_at is None


def test_confirm_is_replay_safe(client: FlaskClient, login: Any, db: Session, world: World) -> None:
    deadline = datetime.now(UTC) + timedelta(days=3)
    announcement = to_everyone(db, world, confirm_required=True, confirm_deadline=deadline)
    login(world.turkish)
    home = text_of(client.get("/home"))
    assert 'id="due-title"' in home
    assert home.index("due-title") < home.index("news-title"), "confirmations due on top"

    url = f"/messages/a/{announcement.id}/confirm"
    first = post_form(client, url, {})
    assert first.status_code == 302 and first.headers["Location"].endswith(
        f"/messages/a/{announcement.id}"
    )
    assert '<div class="notice success"' in text_of(client.get(first.headers["Location"]))
    confirmed_at = recipient(db, announcement, world.turkish).confirmed_at
    assert confirmed_at is not None
    replay = post_form(client, url, {}, follow_redirects=True)
    page = text_of(replay)  # no error page: the message, confirmed, with a notice
    assert '<div class="notice info" role="status">' in page
    assert '<div class="notice success"' not in page and "confirmed-note" in page
    assert recipient(db, announcement, world.turkish).confirmed_at == confirmed_at
    count = db.scalar(
        select(func.count()).where(
            AnnouncementRecipient.announcement_id == announcement.id,
            AnnouncementRecipient.confirmed_at.is_not(None),
        )
    )
    assert count == 1
    assert 'id="due-title"' not in text_of(client.get("/home"))


def test_confirmations_due_skip_passed_deadlines_and_recalled(db: Session, world: World) -> None:
    now = datetime.now(UTC)
    later = to_everyone(db, world, confirm_required=True, confirm_deadline=now + timedelta(days=5))
    sooner = to_everyone(db, world, confirm_required=True, confirm_deadline=now + timedelta(days=1))
    open_ended = to_everyone(db, world, confirm_required=True)
    to_everyone(db, world, confirm_required=True, confirm_deadline=now - timedelta(hours=1))
    to_everyone(db, world, confirm_required=True, status="recalled")
    to_everyone(db, world)
    due = feed.confirmations_due(db, load_actor(db, world.arabic), locale="ar", now=now)
    assert [e.id for e in due] == [sooner.id, later.id, open_ended.id]


def test_confirm_of_a_message_without_request_or_recalled_writes_nothing(
    client: FlaskClient, login: Any, db: Session, world: World
) -> None:
    # A parent without a language setting reads the English source strings (the test client).
    reader = make_user(db, roles=[(world.kita, Role.PARENT)], children=[world.lina])
    plain = make_announcement(db, world.kita, world.educator, recipients=[reader])
    recalled = make_announcement(
        db,
        world.kita,
        world.educator,
        recipients=[reader],
        confirm_required=True,
        status="recalled",
    )
    login(reader)
    for announcement, message in ((plain, "needs no confirmation"), (recalled, "withdrawn")):
        response = post_form(client, f"/messages/a/{announcement.id}/confirm", {})
        assert response.status_code == 302
        page = text_of(client.get(response.headers["Location"]))
        assert message in page and "confirmed-note" not in page
        assert recipient(db, announcement, reader).confirmed_at is None


# --- attachments -----------------------------------------------------------------------------


@pytest.fixture
def keys(app: Flask) -> KeyService:
    return app.extensions["kita"].keys  # type: ignore[no-any-return]


@pytest.fixture
def blobs(app: Flask) -> BlobStore:
    return BlobStore(app.extensions["kita"].config.blob_dir)


def test_attachments_only_through_the_access_policy(
    client: FlaskClient,
    login: Any,
    db: Session,
    world: World,
    keys: KeyService,
    blobs: BlobStore,
) -> None:
    announcement = to_everyone(db, world)
    other = make_announcement(
        db, world.kita, world.other_educator, groups=[world.igel], recipients=[world.arabic]
    )
    data = b"%PDF-1.4 Elternbrief"
    attachment = make_announcement_attachment(
        db, keys, blobs, announcement, filename="Ausflug-Ümlaut.pdf", data=data
    )
    foreign = make_announcement_attachment(db, keys, blobs, other, filename="geheim.pdf")
    url = f"/messages/a/{announcement.id}/attachments/{attachment.id}"

    login(world.german)
    page = text_of(client.get(f"/messages/a/{announcement.id}"))
    assert "Ausflug-Ümlaut.pdf" in page and url in page
    response = client.get(url)
    assert response.status_code == 200 and response.data == data
    assert response.mimetype == "application/pdf"
    assert "attachment" in response.headers["Content-Disposition"]
    assert "Ausflug" in response.headers["Content-Disposition"]
    assert "no-store" in response.headers["Cache-Control"]
    # Guessed ids, and another announcement's attachment under this announcement's URL: 404.
    assert (
        client.get(f"/messages/a/{announcement.id}/attachments/{uuid.uuid4()}").status_code == 404
    )
    assert client.get(f"/messages/a/{announcement.id}/attachments/{foreign.id}").status_code == 404
    assert client.get(f"/messages/a/{other.id}/attachments/{foreign.id}").status_code == 404
    assert client.get(f"/messages/a/{uuid.uuid4()}/attachments/{attachment.id}").status_code == 404

    login(world.other_kita_parent)
    assert client.get(url).status_code == 404
    login(world.other_educator)  # staff of the Kita
    assert client.get(url).status_code == 200
    login(world.arabic)
    assert client.get(f"/messages/a/{other.id}/attachments/{foreign.id}").status_code == 200


def test_recalled_attachment_is_gone_for_parents(
    client: FlaskClient,
    login: Any,
    db: Session,
    world: World,
    keys: KeyService,
    blobs: BlobStore,
) -> None:
    recalled = to_everyone(db, world, status="recalled")
    attachment = make_announcement_attachment(db, keys, blobs, recalled, filename="alt.pdf")
    login(world.german)
    assert "alt.pdf" not in text_of(client.get(f"/messages/a/{recalled.id}"))
    assert client.get(f"/messages/a/{recalled.id}/attachments/{attachment.id}").status_code == 404


# --- conversations on the home page ----------------------------------------------------------


def test_home_lists_the_familys_conversations_with_unread_counts(
    client: FlaskClient, login: Any, db: Session, world: World
) -> None:
    start = datetime.now(UTC) - timedelta(hours=3)
    conversation = Conversation(
        kita_id=world.kita.id,
        child_id=world.ayse.id,
        team=Team.GROUP,
        group_id=world.raupen.id,
        subject_ct=b"not read here",
        key_version=1,
        created_by_id=world.turkish.id,
        created_at=start,
        last_message_at=start + timedelta(hours=2),
    )
    db.add(conversation)
    db.flush()
    for minutes, author, from_staff in (
        (0, world.turkish, False),
        (30, world.educator, True),
        (90, world.educator, True),
        (120, world.educator, True),
    ):
        db.add(
            ConversationMessage(
                conversation_id=conversation.id,
                author_id=author.id,
                from_staff=from_staff,
                body_ct=b"x",
                key_version=1,
                locale="de",
                created_at=start + timedelta(minutes=minutes),
            )
        )
    db.add(
        ConversationRead(
            conversation_id=conversation.id,
            user_id=world.turkish.id,
            read_at=start + timedelta(minutes=60),
        )
    )
    db.commit()

    [summary] = feed.conversation_summaries(db, load_actor(db, world.turkish))
    assert (summary.unread, summary.group_name, summary.child_first_name) == (2, "Raupen", "Ayşe")
    assert feed.conversation_summaries(db, load_actor(db, world.arabic)) == []
    login(world.turkish)
    home = text_of(client.get("/home"))
    assert f"/conversations/{conversation.id}" in home
    assert 'data-unread="2"' in home
    login(world.arabic)
    home = text_of(client.get("/home"))
    assert f"/conversations/{conversation.id}" not in home
    # Both sections show their empty state (in Arabic: compare the markup, not the words).
    for section in ("news-title", "conversations-title"):
        part = home[home.index(f'id="{section}"') :]
        assert part.index('class="empty"') < part.index("</section>")


def test_home_page_stays_light(client: FlaskClient, login: Any, db: Session, world: World) -> None:
    for _ in range(8):
        to_everyone(db, world, body=BODY_DE * 20)
    login(world.turkish)
    response = client.get("/home")
    page = text_of(response)
    assert page.count("feed-entry") == feed.HOME_LIMIT
    assert len(response.data) < 30_000
    assert re.findall(r'<script[^>]*src="([^"]+)"', page) == ["/static/app.js"]


def test_bad_input_gives_clear_answers_not_errors(
    client: FlaskClient, login: Any, db: Session, world: World
) -> None:
    announcement = to_everyone(db, world, confirm_required=True)
    login(world.german)
    for query in ("page=abc", "page=-1", "page=0", "page=9999999999", "page=99"):
        response = client.get(f"/messages?{query}")
        assert response.status_code == 200, query
    assert TITLE_DE in text_of(client.get("/messages?page=abc"))
    assert TITLE_DE not in text_of(client.get("/messages?page=99"))
    # Without the form's CSRF token: refused, nothing written.
    response = client.post(f"/messages/a/{announcement.id}/confirm")
    assert response.status_code == 400
    assert recipient(db, announcement, world.german).confirmed_at is None
    for path in ("/messages/a/not-a-uuid", f"/messages/a/{announcement.id}/attachments/x"):
        assert client.get(path).status_code == 404
