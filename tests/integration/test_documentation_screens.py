"""The documentation screens (server-rendered HTML): entry forms that store only ciphertext,
the timeline and its filters, stale edits, sharing with the family, consents given in the app
and on paper, photos, development talks, templates, break-glass, "who viewed", and 404 for
everybody who may not see a child's documentation."""

from __future__ import annotations

import io
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.access import load_actor
from kita.blobs import BlobStore
from kita.crypto import KeyService
from kita.db import Base
from kita.models.accounts import User
from kita.models.audit import AuditEvent
from kita.models.documentation import (
    BreakGlassGrant,
    Consent,
    ConsentMethod,
    ConsentPurpose,
    DevelopmentTalk,
    DocumentationEntry,
    DocumentationPhoto,
    DocumentationRevision,
    DocumentationTemplate,
    EducationalArea,
    EntryStatus,
)
from kita.models.organisation import GuardianLink
from kita.services import consent, documentation, photos
from tests.conftest import csrf_token
from tests.unit.test_documentation import World, build_world, consent_to

DOC = "/documentation"
TODAY = date.today()


# --- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture
def world(db: Session) -> World:
    return build_world(db)


@pytest.fixture
def consented(db: Session, world: World) -> World:
    consent_to(db, world, ConsentPurpose.DOCUMENTATION, ConsentPurpose.PHOTOS_IN_DOCUMENTATION)
    return world


@pytest.fixture
def keys(app: Flask) -> KeyService:
    return app.extensions["kita"].keys  # type: ignore[no-any-return]


class Browser:
    """The test client as one person at a time, posting forms with a valid CSRF token."""

    def __init__(self, client: FlaskClient, login: Any) -> None:
        self.client, self.login = client, login

    def as_user(self, user: User) -> Browser:
        self.login(user)
        return self

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.client.get(path, **kwargs)

    def post(self, path: str, data: dict[str, Any] | None = None) -> Any:
        payload = dict(data or {})
        payload["csrf_token"] = csrf_token(self.client, "/offline")
        return self.client.post(path, data=payload)

    def upload(self, path: str, fields: dict[str, str], files: list[tuple[str, bytes]]) -> Any:
        fields = {**fields, "csrf_token": csrf_token(self.client, "/offline")}
        body, content_type = multipart(fields, files)
        return self.client.post(path, data=body, content_type=content_type)


@pytest.fixture
def browser(client: FlaskClient, login: Any) -> Browser:
    return Browser(client, login)


def multipart(fields: dict[str, str], files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """A multipart body built in memory (the test client's encoder spools big bodies to a
    temporary file it never closes)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    for filename, data in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def png(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "green").save(buffer, "PNG")
    return buffer.getvalue()


def html(response: Any) -> str:
    return str(response.get_data(as_text=True))


def hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no hidden field {name}"
    return match.group(1)


def audits(db: Session, action: str, actor: User | None = None) -> list[AuditEvent]:
    db.rollback()
    query = select(AuditEvent).where(AuditEvent.action == action)
    if actor is not None:
        query = query.where(AuditEvent.actor_id == actor.id)
    return list(db.scalars(query.order_by(AuditEvent.id)))


def count(db: Session, model: Any) -> int:
    db.rollback()
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


def save(
    db: Session, keys: KeyService, user: User, w: World, **changes: Any
) -> documentation.EntryView:
    values: dict[str, Any] = {
        "child_id": w.child.id,
        "kind": "observation",
        "status": "final",
        "title": "Turm gebaut",
        "text": "Sie hat einen Turm aus zwölf Bausteinen gebaut.",
        "areas": ["mathematics"],
    }
    now = changes.pop("now", None)
    values.update(changes)
    db.rollback()
    result = documentation.save_entry(
        db,
        actor=load_actor(db, user),
        keys=keys,
        entry_id=uuid.uuid4(),
        data=documentation.EntryInput(**values),
        now=now,
    )
    db.commit()
    return result.entry


def entry_form(w: World, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": "learning_story",
        "status": "final",
        "title": "Sandburg",
        "text": "Er hat eine Sandburg mit drei Türmen gebaut.\nDann hat er sie gezählt.",
        "observed_on": TODAY.isoformat(),
        "areas": ["language_communication", "mathematics"],
        "dispositions": ["engaged"],
    }
    data.update(changes)
    return data


def assert_nowhere_in_plaintext(db: Session, marker: str) -> None:
    """No column of any table holds the marker readable (bytes or text)."""
    db.rollback()
    for table in Base.metadata.sorted_tables:
        for row in db.execute(select(table)):
            for value in row:
                if isinstance(value, bytes | bytearray | memoryview):
                    assert marker.encode() not in bytes(value), f"{marker} in {table.name}"
                else:
                    assert marker not in str(value), f"{marker} in {table.name}"


# --- happy path ------------------------------------------------------------------------------


def test_an_entry_written_in_the_form_is_encrypted_listed_shared_and_its_reads_are_shown(
    browser: Browser, db: Session, consented: World
) -> None:
    w = consented
    browser.as_user(w.educator)
    new_path = f"{DOC}/children/{w.child.id}/entries/new"
    form_page = browser.get(new_path)
    assert form_page.status_code == 200
    page = html(form_page)
    assert page.count('name="areas"') == 10 and page.count('name="dispositions"') == 5
    entry_id = hidden(page, "entry_id")
    uuid.UUID(entry_id)

    marker = "Sandburg-Marker-7f3a9c"
    data = {**entry_form(w, title=marker), "entry_id": entry_id}
    saved = browser.post(new_path, data)
    assert saved.status_code == 302
    assert saved.headers["Location"].endswith(f"{DOC}/entries/{entry_id}")
    # The form's id makes a repeated submit harmless.
    assert browser.post(new_path, data).status_code == 302
    assert count(db, DocumentationEntry) == 1 and count(db, DocumentationRevision) == 1
    db.rollback()
    entry = db.get(DocumentationEntry, uuid.UUID(entry_id))
    assert entry is not None
    assert (entry.author_id, entry.kind.value, entry.status) == (
        w.educator.id,
        "learning_story",
        EntryStatus.FINAL,
    )
    assert entry.areas == [EducationalArea.LANGUAGE_COMMUNICATION, EducationalArea.MATHEMATICS]
    assert entry.dispositions == ["engaged"]
    assert len(audits(db, "documentation.created", w.educator)) == 1
    assert_nowhere_in_plaintext(db, marker)
    assert_nowhere_in_plaintext(db, "drei Türmen")

    before = len(audits(db, "documentation.list", w.educator))
    timeline = browser.get(f"{DOC}/children/{w.child.id}")
    assert timeline.status_code == 200
    assert marker in html(timeline) and "Learning story" in html(timeline)
    assert len(audits(db, "documentation.list", w.educator)) == before + 1

    shown = browser.get(f"{DOC}/entries/{entry_id}")
    assert shown.status_code == 200
    assert "Dann hat er sie gezählt." in html(shown)
    assert "This entry is internal." in html(shown)
    assert audits(db, "documentation.read", w.educator)[-1].detail == f"entry={entry_id}"

    browser.as_user(w.parent)
    family = browser.get(f"{DOC}/children/{w.child.id}/family")
    assert family.status_code == 200 and marker not in html(family)
    assert "have not shared any entries with you yet" in html(family)
    assert browser.get(f"{DOC}/entries/{entry_id}").status_code == 404

    browser.as_user(w.educator)
    shared = browser.post(f"{DOC}/entries/{entry_id}/share", {"shared": "yes"})
    assert shared.status_code == 302
    db.rollback()
    entry = db.get(DocumentationEntry, uuid.UUID(entry_id))
    assert entry is not None and entry.shared_with_family_at is not None
    assert entry.shared_by_id == w.educator.id
    assert len(audits(db, "documentation.shared", w.educator)) == 1

    browser.as_user(w.parent)
    family = browser.get(f"{DOC}/children/{w.child.id}/family")
    assert family.status_code == 200
    assert marker in html(family) and "Dann hat er sie gezählt." in html(family)
    assert audits(db, "documentation.list", w.parent)[-1].detail.startswith("shared")
    assert browser.get(f"{DOC}/entries/{entry_id}").status_code == 200

    views = browser.get(f"{DOC}/children/{w.child.id}/family/views")
    assert views.status_code == 200
    page = html(views)
    assert "Erika Educator" in page and "Educator" in page
    assert "Looked at the list of entries" in page and "Read an entry" in page
    # Newest first: the parent's own reads come before the educator's.
    assert page.index("Paula Parent") < page.index("Erika Educator")


def test_the_dashboard_leads_parents_and_educators_to_the_documentation(
    browser: Browser, world: World
) -> None:
    w = world
    browser.as_user(w.parent)
    assert f"{DOC}/children/{w.child.id}/family" in html(browser.get("/home"))
    browser.as_user(w.educator)
    assert f"{DOC}/groups/{w.group.id}" in html(browser.get("/home"))
    browser.as_user(w.leader)
    dashboard = html(browser.get("/home"))
    assert f"{DOC}/" in dashboard
    index = html(browser.get(f"{DOC}/"))
    assert f"{DOC}/groups/{w.group.id}" in index and f"{DOC}/groups/{w.other_group.id}" in index


# --- groups ----------------------------------------------------------------------------------


def test_the_group_page_shows_each_childs_consent_state(
    browser: Browser, db: Session, world: World
) -> None:
    w = world
    browser.as_user(w.educator)
    page = browser.get(f"{DOC}/groups/{w.group.id}")
    assert page.status_code == 200
    assert w.child.full_name in html(page)
    assert "Closed" in html(page) and "has not given its consent yet" in html(page)
    assert f"{DOC}/children/{w.child.id}/entries/new" not in html(page)

    db.rollback()
    consent_to(db, w, ConsentPurpose.DOCUMENTATION)
    page = html(browser.get(f"{DOC}/groups/{w.group.id}"))
    assert "Open" in page and f"{DOC}/children/{w.child.id}/entries/new" in page

    db.rollback()
    consent.withdraw_consent(
        db, actor=load_actor(db, w.parent), child=w.child, purpose=ConsentPurpose.DOCUMENTATION
    )
    db.commit()
    page = html(browser.get(f"{DOC}/groups/{w.group.id}"))
    assert "Withdrawn on" in page and "has withdrawn its consent" in page

    # An educator sees only her groups; a leader every group of her Kita.
    assert browser.get(f"{DOC}/groups/{w.other_group.id}").status_code == 404
    browser.as_user(w.leader)
    assert w.other_child.full_name in html(browser.get(f"{DOC}/groups/{w.other_group.id}"))
    browser.as_user(w.other_leader)
    assert browser.get(f"{DOC}/groups/{w.group.id}").status_code == 404


# --- timeline filters ------------------------------------------------------------------------


def test_the_timeline_filters_by_area_author_and_period_newest_first(
    browser: Browser, db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    save(db, keys, w.educator, w, title="Eins", areas=["movement"], observed_on=date(2024, 3, 1))
    save(db, keys, w.leader, w, title="Zwei", areas=["media"], observed_on=date(2024, 5, 10))
    save(
        db,
        keys,
        w.educator,
        w,
        title="Drei",
        areas=["movement", "media"],
        observed_on=date(2024, 6, 1),
    )
    browser.as_user(w.educator)
    path = f"{DOC}/children/{w.child.id}"

    def titles(query: dict[str, str]) -> list[str]:
        response = browser.get(path, query_string=query)
        assert response.status_code == 200
        return re.findall(r'/entries/[0-9a-f-]+">([^<]+)</a>', html(response))

    assert titles({}) == ["Drei", "Zwei", "Eins"]
    assert titles({"area": "movement"}) == ["Drei", "Eins"]
    assert titles({"author": str(w.leader.id)}) == ["Zwei"]
    assert titles({"since": "2024-05-01", "until": "2024-05-31"}) == ["Zwei"]
    assert titles({"area": "media", "author": str(w.educator.id)}) == ["Drei"]
    page = browser.get(path, query_string={"area": "ecology"})
    assert "No entries match these filters." in html(page)
    # The author filter offers the people who wrote entries.
    assert "Lena Leader" in html(page) and "Erika Educator" in html(page)

    reads = len(audits(db, "documentation.list"))
    wrong = browser.get(path, query_string={"since": "2024-06-01", "until": "2024-05-01"})
    assert wrong.status_code == 422
    assert "The end of the period must not be before its start." in html(wrong)
    assert browser.get(path, query_string={"area": "cooking"}).status_code == 422
    assert browser.get(path, query_string={"since": "1.5.2024"}).status_code == 422
    assert len(audits(db, "documentation.list")) == reads


# --- stale edits -----------------------------------------------------------------------------


def test_a_stale_edit_shows_the_other_version_and_keeps_the_input(
    browser: Browser, db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    entry = save(db, keys, w.educator, w, status="draft", text="Erste Fassung")
    browser.as_user(w.educator)
    edit_path = f"{DOC}/entries/{entry.id}/edit"
    form = html(browser.get(edit_path))
    assert hidden(form, "base_version") == "1" and "Erste Fassung" in form

    db.rollback()
    documentation.save_entry(
        db,
        actor=load_actor(db, w.leader),
        keys=keys,
        entry_id=entry.id,
        data=documentation.EntryInput(
            w.child.id,
            "observation",
            "draft",
            "Turm gebaut",
            "Fassung der Leitung",
            ["media"],
            base_version=1,
        ),
    )
    db.commit()
    data = entry_form(w, kind="observation", status="draft", text="Meine eigenen Worte")
    stale = browser.post(edit_path, {**data, "base_version": "1"})
    assert stale.status_code == 409
    page = html(stale)
    assert "This entry was changed meanwhile" in page
    assert "Fassung der Leitung" in page  # the other version
    assert "Meine eigenen Worte" in page  # the user's input, kept
    assert hidden(page, "base_version") == "2"
    db.rollback()
    stored = db.get(DocumentationEntry, entry.id)
    assert stored is not None and stored.version == 2

    again = browser.post(edit_path, {**data, "base_version": "2"})
    assert again.status_code == 302
    db.rollback()
    current = documentation.read_entry(
        db, actor=load_actor(db, w.leader), keys=keys, entry_id=entry.id
    )
    db.commit()
    assert (current.version, current.text) == (3, "Meine eigenen Worte")
    history = browser.get(f"{DOC}/entries/{entry.id}/history")
    assert history.status_code == 200
    assert all(text in html(history) for text in ("Erste Fassung", "Fassung der Leitung"))


def test_invalid_input_is_shown_in_the_form_and_nothing_is_stored(
    browser: Browser, db: Session, consented: World
) -> None:
    w = consented
    browser.as_user(w.educator)
    path = f"{DOC}/children/{w.child.id}/entries/new"
    entry_id = hidden(html(browser.get(path)), "entry_id")
    bad = browser.post(
        path,
        {
            **entry_form(w, text="", observed_on="2999-01-01", areas=["cooking"]),
            "entry_id": entry_id,
            "title": "Bleibt stehen",
        },
    )
    assert bad.status_code == 422
    page = html(bad)
    assert "Please enter a date that is not in the future." in page
    assert "Please choose from the offered options." in page
    assert 'value="Bleibt stehen"' in page
    assert count(db, DocumentationEntry) == 0
    missing_id = browser.post(path, entry_form(w))
    assert missing_id.status_code == 422 and count(db, DocumentationEntry) == 0


# --- consents --------------------------------------------------------------------------------


def test_a_leader_records_a_paper_consent_and_a_withdrawal(
    browser: Browser, db: Session, world: World
) -> None:
    w = world
    browser.as_user(w.leader)
    path = f"{DOC}/children/{w.child.id}/consents"
    assert "No consent has been recorded" in html(browser.get(path))
    signed = TODAY - timedelta(days=3)
    future = browser.post(
        path,
        {"action": "give", "purpose": "documentation", "signed_on": "2999-01-01"},
    )
    assert future.status_code == 422 and count(db, Consent) == 0
    given = browser.post(
        path,
        {
            "action": "give",
            "purpose": "documentation",
            "signed_on": signed.isoformat(),
            "guardian_id": str(w.parent.id),
        },
    )
    assert given.status_code == 302
    db.rollback()
    row = db.scalars(select(Consent)).one()
    assert (row.method, row.given_by_id, row.recorded_by_id) == (
        ConsentMethod.PAPER,
        w.parent.id,
        w.leader.id,
    )
    assert row.purpose is ConsentPurpose.DOCUMENTATION and row.withdrawn_at is None
    assert row.given_at.date() == signed
    assert row.text_version == consent.CONSENT_TEXT_VERSION
    page = html(browser.get(path))
    assert "on paper" in page and "Paula Parent" in page and "Lena Leader" in page

    unconfirmed = browser.post(path, {"action": "withdraw", "purpose": "documentation"})
    assert unconfirmed.status_code == 422
    assert "Please tick the box to confirm." in html(unconfirmed)
    db.rollback()
    assert db.scalars(select(Consent)).one().withdrawn_at is None
    withdrawn = browser.post(
        path, {"action": "withdraw", "purpose": "documentation", "confirm": "yes"}
    )
    assert withdrawn.status_code == 302
    db.rollback()
    row = db.scalars(select(Consent)).one()
    assert row.withdrawn_at is not None and row.withdrawn_by_id == w.leader.id
    assert len(audits(db, "consent.withdrawn", w.leader)) == 1

    for outsider in (w.educator, w.admin, w.parent, w.other_leader):
        browser.as_user(outsider)
        assert browser.get(path).status_code == 404
        assert browser.post(path, {"action": "give"}).status_code == 404


def test_a_parent_gives_and_withdraws_consent_and_the_write_form_closes_at_once(
    browser: Browser, db: Session, world: World
) -> None:
    w = world
    new_path = f"{DOC}/children/{w.child.id}/entries/new"
    closed_text = "The development documentation of this child is closed"
    browser.as_user(w.educator)
    closed = browser.get(new_path)
    assert closed.status_code == 403
    assert closed_text in html(closed) and 'name="entry_id"' not in html(closed)

    browser.as_user(w.parent)
    family_path = f"{DOC}/children/{w.child.id}/family"
    page = html(browser.get(family_path))
    assert "I agree" in page and "The educators may observe and document" in page
    given = browser.post(f"{family_path}/consents", {"action": "give", "purpose": "documentation"})
    assert given.status_code == 302
    db.rollback()
    row = db.scalars(select(Consent)).one()
    assert (row.method, row.given_by_id, row.withdrawn_at) == (
        ConsentMethod.APP,
        w.parent.id,
        None,
    )

    browser.as_user(w.educator)
    form = browser.get(new_path)
    assert form.status_code == 200 and 'name="entry_id"' in html(form)
    entry_id = hidden(html(form), "entry_id")

    browser.as_user(w.parent)
    unconfirmed = browser.post(
        f"{family_path}/consents", {"action": "withdraw", "purpose": "documentation"}
    )
    assert unconfirmed.status_code == 422
    db.rollback()
    assert db.scalars(select(Consent)).one().withdrawn_at is None
    withdrawn = browser.post(
        f"{family_path}/consents",
        {"action": "withdraw", "purpose": "documentation", "confirm": "yes"},
    )
    assert withdrawn.status_code == 302
    db.rollback()
    assert db.scalars(select(Consent)).one().withdrawn_at is not None

    # The educator's form, opened before the withdrawal, no longer saves.
    browser.as_user(w.educator)
    refused = browser.post(new_path, {**entry_form(w), "entry_id": entry_id})
    assert refused.status_code == 403 and closed_text in html(refused)
    assert count(db, DocumentationEntry) == 0
    assert closed_text in html(browser.get(f"{DOC}/children/{w.child.id}"))
    assert browser.get(new_path).status_code == 403


def test_a_parent_without_custody_sees_the_consents_but_cannot_change_them(
    browser: Browser, db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    entry = save(db, keys, w.educator, w, title="Geteilt")
    db.rollback()
    documentation.share_entry(db, actor=load_actor(db, w.educator), entry_id=entry.id, shared=True)
    link = db.scalars(select(GuardianLink).where(GuardianLink.user_id == w.parent.id)).one()
    link.has_custody = False
    db.commit()
    browser.as_user(w.parent)
    path = f"{DOC}/children/{w.child.id}/family"
    page = html(browser.get(path))
    assert "Only a parent with custody can give or withdraw consent." in page
    assert "Withdraw consent" not in page and "I agree" not in page
    refused = browser.post(
        f"{path}/consents", {"action": "withdraw", "purpose": "documentation", "confirm": "yes"}
    )
    assert refused.status_code == 403
    db.rollback()
    assert all(c.withdrawn_at is None for c in db.scalars(select(Consent)))
    assert browser.get(f"{path}/views").status_code == 404


# --- photos ----------------------------------------------------------------------------------


def test_photos_are_uploaded_checked_and_served_as_jpeg(
    browser: Browser, db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    entry = save(db, keys, w.educator, w)
    browser.as_user(w.educator)
    entry_path = f"{DOC}/entries/{entry.id}"
    upload_id = hidden(html(browser.get(entry_path)), "upload_id")
    upload_path = f"{entry_path}/photos"
    files = [("turm.png", png()), ("notes.txt", b"just some text, not an image")]
    mixed = browser.upload(upload_path, {"upload_id": upload_id}, files)
    assert mixed.status_code == 422
    page = html(mixed)
    assert "notes.txt: This file is not a photo we can read" in page
    assert "1 photo was added." in page
    assert count(db, DocumentationPhoto) == 1
    # The same form sent again stores nothing twice.
    browser.upload(upload_path, {"upload_id": upload_id}, files[:1])
    assert count(db, DocumentationPhoto) == 1

    too_big = b"\xff\xd8" + b"0" * photos.MAX_UPLOAD_BYTES
    big = browser.upload(upload_path, {"upload_id": str(uuid.uuid4())}, [("big.jpg", too_big)])
    assert big.status_code == 422 and "larger than 10 MB" in html(big)
    assert count(db, DocumentationPhoto) == 1
    empty = browser.upload(upload_path, {"upload_id": str(uuid.uuid4())}, [])
    assert empty.status_code == 422 and "Please choose at least one photo." in html(empty)

    db.rollback()
    photo = db.scalars(select(DocumentationPhoto)).one()
    page = html(browser.get(entry_path))
    assert f"{DOC}/photos/{photo.id}" in page
    reads = len(audits(db, "documentation.photo_read", w.educator))
    image = browser.get(f"{DOC}/photos/{photo.id}")
    assert image.status_code == 200 and image.mimetype == "image/jpeg"
    assert image.data[:2] == b"\xff\xd8" and "no-store" in image.headers["Cache-Control"]
    assert len(audits(db, "documentation.photo_read", w.educator)) == reads + 1

    # The parent sees the photo once the entry is shared, and never before.
    browser.as_user(w.parent)
    assert browser.get(f"{DOC}/photos/{photo.id}").status_code == 404
    db.rollback()
    documentation.share_entry(db, actor=load_actor(db, w.educator), entry_id=entry.id, shared=True)
    db.commit()
    assert f"{DOC}/photos/{photo.id}" in html(browser.get(f"{DOC}/children/{w.child.id}/family"))
    assert browser.get(f"{DOC}/photos/{photo.id}").mimetype == "image/jpeg"

    db.rollback()
    consent.withdraw_consent(
        db,
        actor=load_actor(db, w.parent),
        child=w.child,
        purpose=ConsentPurpose.PHOTOS_IN_DOCUMENTATION,
    )
    db.commit()
    browser.as_user(w.educator)
    page = html(browser.get(entry_path))
    assert "Photos cannot be added" in page and 'name="files"' not in page
    refused = browser.upload(upload_path, {"upload_id": str(uuid.uuid4())}, [("b.png", png())])
    assert refused.status_code == 403 and count(db, DocumentationPhoto) == 1


# --- development talks -----------------------------------------------------------------------


def test_the_development_talk_is_prepared_planned_and_protocolled(
    browser: Browser, db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    earlier = datetime.now(UTC) - timedelta(hours=1)
    save(db, keys, w.educator, w, title="Balancieren", areas=["movement"], now=earlier)
    save(db, keys, w.educator, w, title="Ohne Bereich", areas=[], now=earlier)
    browser.as_user(w.educator)
    path = f"{DOC}/children/{w.child.id}/talks"
    page = html(browser.get(path))
    assert "No talk was held yet: 2 entries so far." in page
    assert "Movement" in page and "Without an educational area" in page
    assert page.index("Balancieren") < page.index("Ohne Bereich")
    talk_id = hidden(page, "talk_id")

    marker = "Notiz-Marker-41c2"
    planned = browser.post(
        path,
        {
            "talk_id": talk_id,
            "base_version": "0",
            "planned_at": "2025-03-04T15:30",
            "notes": marker,
        },
    )
    assert planned.status_code == 302
    db.rollback()
    talk = db.get(DevelopmentTalk, uuid.UUID(talk_id))
    assert talk is not None and talk.notes_ct is not None and talk.protocol_ct is None
    assert talk.planned_at == datetime(2025, 3, 4, 14, 30, tzinfo=UTC)  # Berlin, UTC+1
    assert_nowhere_in_plaintext(db, marker)
    assert marker in html(browser.get(path))

    edit = html(browser.get(path, query_string={"talk": talk_id}))
    assert hidden(edit, "base_version") == "1" and 'value="2025-03-04T15:30"' in edit
    held = (datetime.now(UTC) - timedelta(minutes=5)).astimezone(ZoneInfo("Europe/Berlin"))
    protocol = {
        "talk_id": talk_id,
        "base_version": "1",
        "planned_at": "2025-03-04T15:30",
        "held_at": held.strftime("%Y-%m-%dT%H:%M"),
        "notes": marker,
        "protocol": "Wir vereinbaren mehr Bewegung.",
    }
    assert browser.post(path, protocol).status_code == 302
    page = html(browser.get(path))
    assert "Wir vereinbaren mehr Bewegung." in page and "Held on" in page
    assert "No new entries since the last talk." in page

    stale = browser.post(path, {**protocol, "protocol": "Andere Fassung"})
    assert stale.status_code == 409
    assert "saved this talk meanwhile" in html(stale) and "Andere Fassung" in html(stale)
    bad = browser.post(path, {"talk_id": str(uuid.uuid4()), "planned_at": "morgen"})
    assert bad.status_code == 422 and "Please enter a date and time." in html(bad)
    assert count(db, DevelopmentTalk) == 1


# --- templates -------------------------------------------------------------------------------


def test_leaders_manage_templates_that_entries_fill_in(
    browser: Browser, db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    browser.as_user(w.leader)
    templates_path = f"{DOC}/kitas/{w.kita.id}/templates"
    page = html(browser.get(templates_path))
    assert "Which movements did the child try or practise?" in page
    assert count(db, DocumentationTemplate) == 10

    new_path = f"{templates_path}/new"
    invalid = browser.post(
        new_path, {"name": "Stimmung", "label_1": "Laune", "type_1": "choice", "options_1": "gut"}
    )
    assert invalid.status_code == 422
    assert "A choice needs between 2 and" in html(invalid)
    created = browser.post(
        new_path,
        {
            "name": "Stimmung",
            "area": "social_intercultural",
            "label_2": "Laune",
            "type_2": "choice",
            "options_2": "fröhlich\nruhig\n",
            "label_3": "Konzentration",
            "type_3": "scale",
            "required_3": "on",
        },
    )
    assert created.status_code == 302
    db.rollback()
    template = db.scalars(
        select(DocumentationTemplate).where(DocumentationTemplate.name == "Stimmung")
    ).one()
    assert [(f["name"], f["type"], f["required"]) for f in template.fields] == [
        ("field_1", "choice", False),
        ("field_2", "scale", True),
    ]
    assert template.fields[0]["options"] == ["fröhlich", "ruhig"]

    browser.as_user(w.educator)
    assert browser.get(templates_path).status_code == 404
    new_entry = f"{DOC}/children/{w.child.id}/entries/new"
    form = html(browser.get(new_entry, query_string={"template": str(template.id)}))
    assert 'name="tv_field_1"' in form and "fröhlich" in form
    assert form.count('name="tv_field_2"') == 5
    entry_id = hidden(form, "entry_id")
    data = {**entry_form(w), "entry_id": entry_id, "template_id": str(template.id)}
    wrong = browser.post(new_entry, {**data, "tv_field_1": "wütend", "tv_field_2": "9"})
    assert wrong.status_code == 422
    assert "Please choose a value from 1 to 5." in html(wrong)
    assert "Please choose one of the offered options." in html(wrong)
    assert count(db, DocumentationEntry) == 0
    saved = browser.post(new_entry, {**data, "tv_field_1": "ruhig", "tv_field_2": "4"})
    assert saved.status_code == 302
    db.rollback()
    stored = documentation.read_entry(
        db, actor=load_actor(db, w.educator), keys=keys, entry_id=uuid.UUID(entry_id)
    )
    db.commit()
    assert stored.template_values == {"field_1": "ruhig", "field_2": 4}
    assert "4 of 5" in html(browser.get(f"{DOC}/entries/{entry_id}"))

    browser.as_user(w.leader)
    archive = f"{templates_path}/archive"
    assert browser.post(archive, {"template_id": str(template.id)}).status_code == 422
    db.rollback()
    assert db.get(DocumentationTemplate, template.id).archived_at is None  # type: ignore[union-attr]
    done = browser.post(archive, {"template_id": str(template.id), "confirm": "yes"})
    assert done.status_code == 302
    db.rollback()
    assert db.get(DocumentationTemplate, template.id).archived_at is not None  # type: ignore[union-attr]
    browser.as_user(w.educator)
    assert f'value="{template.id}"' not in html(browser.get(new_entry))
    browser.as_user(w.other_leader)
    other = f"{DOC}/kitas/{w.kita.id}/templates/archive"
    assert (
        browser.post(other, {"template_id": str(template.id), "confirm": "yes"}).status_code == 404
    )


# --- break-glass -----------------------------------------------------------------------------


def test_break_glass_gives_an_admin_one_logged_hour_of_reading(
    browser: Browser, db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    entry = save(db, keys, w.educator, w, title="Nur zum Lesen")
    timeline = f"{DOC}/children/{w.child.id}"
    glass = f"{timeline}/break-glass"
    browser.as_user(w.admin)
    assert browser.get(timeline).status_code == 404
    assert browser.get(f"{DOC}/entries/{entry.id}").status_code == 404
    admin_child = f"/admin/kitas/{w.kita.id}/children/{w.child.id}"
    assert glass in html(browser.get(admin_child))
    form = browser.get(glass)
    assert form.status_code == 200 and "for one hour" in html(form)

    short = browser.post(glass, {"reason": "Beschwerde"})
    assert short.status_code == 422
    assert "Please describe the reason in at least 20 characters." in html(short)
    assert count(db, BreakGlassGrant) == 0
    reason = "Beschwerde der Mutter vom Montag, Klärung mit der Leitung"
    granted = browser.post(glass, {"reason": reason})
    assert granted.status_code == 302 and granted.headers["Location"].endswith(timeline)
    db.rollback()
    grant = db.scalars(select(BreakGlassGrant)).one()
    assert grant.admin_id == w.admin.id and reason.encode() not in grant.reason_ct
    assert len(audits(db, "documentation.break_glass", w.admin)) == 1

    page = browser.get(timeline)
    assert page.status_code == 200
    assert "Break-glass access" in html(page) and "Nur zum Lesen" in html(page)
    assert "New entry" not in html(page)
    assert audits(db, "documentation.list", w.admin)[-1].detail.startswith("break_glass")
    assert browser.get(f"{DOC}/entries/{entry.id}").status_code == 200
    assert browser.get(f"{DOC}/entries/{entry.id}/edit").status_code == 404
    assert browser.post(f"{DOC}/entries/{entry.id}/share", {"shared": "yes"}).status_code == 404
    assert browser.get(f"{timeline}/talks").status_code == 200

    browser.as_user(w.parent)
    views = html(browser.get(f"{timeline}/family/views"))
    assert "Anton Admin" in views and "Provider administrator" in views
    assert "with a recorded reason (break-glass)" in views

    db.rollback()
    grant.expires_at = datetime.now(UTC) - timedelta(minutes=1)
    db.commit()
    browser.as_user(w.admin)
    assert browser.get(timeline).status_code == 404
    for outsider in (w.leader, w.other_admin, w.educator):
        browser.as_user(outsider)
        assert browser.get(glass).status_code == 404
        assert browser.post(glass, {"reason": reason}).status_code == 404
    assert count(db, BreakGlassGrant) == 1


# --- denials ---------------------------------------------------------------------------------

OUTSIDERS = ("other_educator", "other_parent", "council", "caretaker", "admin", "other_leader")


@pytest.mark.parametrize("who", OUTSIDERS)
def test_outsiders_get_404_everywhere_and_leave_no_read(
    app: Flask, browser: Browser, db: Session, keys: KeyService, consented: World, who: str
) -> None:
    w = consented
    entry = save(db, keys, w.educator, w)
    db.rollback()
    documentation.share_entry(db, actor=load_actor(db, w.educator), entry_id=entry.id, shared=True)
    photo, _created = photos.add_photo(
        db,
        actor=load_actor(db, w.educator),
        keys=keys,
        blobs=BlobStore(app.extensions["kita"].config.blob_dir),
        entry_id=entry.id,
        photo_id=uuid.uuid4(),
        data=png(),
    )
    db.commit()
    outsider = getattr(w, who)
    browser.as_user(outsider)
    child = f"{DOC}/children/{w.child.id}"
    for path in (
        f"{DOC}/groups/{w.group.id}",
        child,
        f"{child}/entries/new",
        f"{child}/talks",
        f"{child}/consents",
        f"{child}/family",
        f"{child}/family/views",
        f"{DOC}/entries/{entry.id}",
        f"{DOC}/entries/{entry.id}/edit",
        f"{DOC}/entries/{entry.id}/history",
        f"{DOC}/photos/{photo.id}",
    ):
        assert browser.get(path).status_code == 404, path
    for path, data in (
        (f"{child}/entries/new", {**entry_form(w), "entry_id": str(uuid.uuid4())}),
        (f"{DOC}/entries/{entry.id}/share", {"shared": "no"}),
        (f"{child}/family/consents", {"action": "withdraw", "purpose": "documentation"}),
    ):
        assert browser.post(path, data).status_code == 404, path
    db.rollback()
    reads = db.scalars(
        select(AuditEvent).where(
            AuditEvent.actor_id == outsider.id,
            AuditEvent.action.in_(documentation.DOCUMENTATION_READ_ACTIONS),
        )
    ).all()
    assert reads == []
    assert count(db, DocumentationEntry) == 1
    shared = db.get(DocumentationEntry, entry.id)
    assert shared is not None and shared.shared_with_family_at is not None


def test_parents_get_404_for_the_staff_screens(
    browser: Browser, db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    entry = save(db, keys, w.educator, w)
    browser.as_user(w.parent)
    child = f"{DOC}/children/{w.child.id}"
    for path in (
        f"{DOC}/groups/{w.group.id}",
        child,
        f"{child}/entries/new",
        f"{child}/talks",
        f"{child}/consents",
        f"{DOC}/entries/{entry.id}",
        f"{DOC}/entries/{entry.id}/history",
        f"{DOC}/kitas/{w.kita.id}/templates",
    ):
        assert browser.get(path).status_code == 404, path
    assert browser.get(f"{child}/family").status_code == 200
    # Another family's child is not visible either.
    assert browser.get(f"{DOC}/children/{w.other_child.id}/family").status_code == 404
