"""Lifecycle of a child's documentation: hand-over record, retention (who is due, shredding,
idempotence, crashes between the steps), the portfolio's data and the family export.

``Family`` and the helpers here are imported by the integration tests of reports and shredding.
"""

from __future__ import annotations

import io
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from PIL import Image, ImageDraw
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.access import load_actor
from kita.blobs import BlobStore
from kita.crypto import KeyKind, KeyNotFoundError, KeyService
from kita.db import Base, Database
from kita.errors import NotFoundError, ValidationError
from kita.models.accounts import Invitation, Role
from kita.models.audit import AuditEvent
from kita.models.documentation import (
    BreakGlassGrant,
    Consent,
    ConsentMethod,
    ConsentPurpose,
    DevelopmentTalk,
    DocumentationEntry,
    DocumentationEntryArea,
    DocumentationPhoto,
    DocumentationRevision,
    EducationalArea,
    EntryStatus,
)
from kita.models.organisation import Child, GuardianLink
from kita.services import consent, documentation, lifecycle, photos
from kita.services.accounts import make_password_hasher
from kita.services.demo import load_demo
from kita.services.documentation import AREA_LABELS
from kita.services.lifecycle import RetentionCandidate
from kita.worker import Worker, WorkerContext, default_jobs
from tests.factories import make_child, make_user
from tests.unit.test_documentation import World, act, build_world, consent_to

NOW = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
TODAY = date(2026, 3, 10)
DAYS = 30


def drawing(colour: str = "orange") -> bytes:
    """A child's drawing: a sun over a house, as a PNG."""
    image = Image.new("RGB", (320, 240), "white")
    pen = ImageDraw.Draw(image)
    pen.ellipse((220, 20, 290, 90), fill=colour)
    pen.rectangle((60, 120, 180, 220), outline="black", width=4)
    pen.polygon([(50, 120), (120, 60), (190, 120)], fill="red")
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@dataclass
class Family:
    """A child with entries: shared ones (one with a photo), a final unshared one, a draft."""

    child: Child
    shared: list[uuid.UUID]
    unshared: list[uuid.UUID]
    photo: DocumentationPhoto


def write_entry(
    db: Session,
    keys: KeyService,
    user: Any,
    child: Child,
    *,
    text: str,
    title: str = "",
    status: str = "final",
    share: bool = False,
    areas: tuple[str, ...] = ("language_communication",),
    observed_on: date | None = None,
) -> uuid.UUID:
    entry = documentation.save_entry(
        db,
        actor=act(db, user),
        keys=keys,
        entry_id=uuid.uuid4(),
        data=documentation.EntryInput(
            child_id=child.id,
            kind="observation",
            status=status,
            title=title,
            text=text,
            areas=list(areas),
            observed_on=observed_on,
        ),
    ).entry
    if share:
        documentation.share_entry(db, actor=act(db, user), entry_id=entry.id, shared=True)
    db.commit()
    return entry.id


def add_photo(
    db: Session, keys: KeyService, blobs: BlobStore, user: Any, entry_id: uuid.UUID
) -> DocumentationPhoto:
    photo, _created = photos.add_photo(
        db,
        actor=act(db, user),
        keys=keys,
        blobs=blobs,
        entry_id=entry_id,
        photo_id=uuid.uuid4(),
        data=drawing(),
    )
    db.commit()
    return photo


def document(
    db: Session,
    keys: KeyService,
    blobs: BlobStore,
    educator: Any,
    child: Child,
    guardian: Any,
    texts: tuple[str, ...] = ("Sie erzählt vom Wochenende.", "Er baut einen Turm."),
    unshared_text: str = "Nur intern.",
) -> Family:
    """Consents by the guardian, shared entries (the first with a photo), an unshared final
    entry and a draft."""
    for purpose in (ConsentPurpose.DOCUMENTATION, ConsentPurpose.PHOTOS_IN_DOCUMENTATION):
        consent.give_consent(db, actor=act(db, guardian), child=child, purpose=purpose)
    db.commit()
    shared = [
        write_entry(db, keys, educator, child, text=text, title=f"Beobachtung {n}", share=True)
        for n, text in enumerate(texts, start=1)
    ]
    photo = add_photo(db, keys, blobs, educator, shared[0])
    unshared = [
        write_entry(db, keys, educator, child, text=unshared_text, title="Intern"),
        write_entry(db, keys, educator, child, text=f"Entwurf {unshared_text}", status="draft"),
    ]
    return Family(child, shared, unshared, photo)


def count(db: Session, model: Any, *where: Any) -> int:
    return int(db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def rows_of_child(db: Session, child_id: uuid.UUID) -> dict[str, int]:
    """Rows that name the child, per table (0 everywhere once it is shredded)."""
    entries = select(DocumentationEntry.id).where(DocumentationEntry.child_id == child_id)
    return {
        "children": count(db, Child, Child.id == child_id),
        "guardian_links": count(db, GuardianLink, GuardianLink.child_id == child_id),
        "invitations": count(db, Invitation, Invitation.child_id == child_id),
        "consents": count(db, Consent, Consent.child_id == child_id),
        "entries": count(db, DocumentationEntry, DocumentationEntry.child_id == child_id),
        "revisions": count(db, DocumentationRevision, DocumentationRevision.entry_id.in_(entries)),
        "areas": count(db, DocumentationEntryArea, DocumentationEntryArea.entry_id.in_(entries)),
        "photos": count(db, DocumentationPhoto, DocumentationPhoto.child_id == child_id),
        "talks": count(db, DevelopmentTalk, DevelopmentTalk.child_id == child_id),
        "grants": count(db, BreakGlassGrant, BreakGlassGrant.child_id == child_id),
    }


def has_key(keys: KeyService, child_id: uuid.UUID) -> bool:
    keys.clear_cache()
    try:
        keys.data_key(child_id, KeyKind.GENERAL, create=False)
    except KeyNotFoundError:
        return False
    return True


@pytest.fixture
def keys(app: Flask) -> KeyService:
    return app.extensions["kita"].keys  # type: ignore[no-any-return]


@pytest.fixture
def blobs(app: Flask) -> BlobStore:
    return BlobStore(app.extensions["kita"].config.blob_dir)


@pytest.fixture
def world(db: Session) -> World:
    return build_world(db)


@pytest.fixture
def two_families(db: Session, keys: KeyService, blobs: BlobStore, world: World) -> World:
    """Both children of the world documented, the first one's family with a photo."""
    document(db, keys, blobs, world.educator, world.child, world.parent)
    document(db, keys, blobs, world.other_educator, world.other_child, world.other_parent)
    return world


def leave(db: Session, child: Child, on: date) -> None:
    child.leave_date = on
    db.commit()


def run(
    db: Session, database: Database, keys: KeyService, blobs: BlobStore, **changes: Any
) -> lifecycle.RetentionReport:
    """Run retention at NOW; the test's session ends its transaction first (a reader would
    keep the SQLite WAL from being truncated)."""
    db.commit()
    options: dict[str, Any] = {"now": NOW, "days_after_leave": DAYS, **changes}
    return lifecycle.run_retention(database, keys=keys, blobs=blobs, **options)


# --- hand-over -------------------------------------------------------------------------------


def test_handover_is_recorded_once_by_the_childs_staff(db: Session, world: World) -> None:
    w = world
    leave(db, w.child, TODAY)
    for outsider in (w.parent, w.other_educator, w.admin, w.other_leader, w.council):
        with pytest.raises(NotFoundError):
            lifecycle.record_handover(db, actor=act(db, outsider), child=w.child, now=NOW)
    assert lifecycle.handed_over_at(db, w.child.id) is None
    assert lifecycle.record_handover(db, actor=act(db, w.educator), child=w.child, now=NOW)
    assert not lifecycle.record_handover(
        db, actor=act(db, w.leader), child=w.child, now=NOW + timedelta(hours=1)
    )
    db.commit()
    assert lifecycle.handed_over_at(db, w.child.id) == NOW
    events = db.scalars(
        select(AuditEvent).where(AuditEvent.action == lifecycle.HANDED_OVER_ACTION)
    ).all()
    assert [(e.actor_id, e.object_id, e.detail) for e in events] == [
        (w.educator.id, str(w.child.id), "")
    ]
    state = lifecycle.handover_state(
        db, actor=act(db, w.leader), child=w.child, days_after_leave=DAYS
    )
    assert state.handed_over_by == "Erika Educator"
    assert state.deletion_due_on == TODAY + timedelta(days=1)
    with pytest.raises(NotFoundError):
        lifecycle.handover_state(db, actor=act(db, w.parent), child=w.child, days_after_leave=DAYS)


def test_handover_needs_a_leaving_date(db: Session, world: World) -> None:
    with pytest.raises(ValidationError) as refused:
        lifecycle.record_handover(db, actor=act(db, world.leader), child=world.child, now=NOW)
    assert "confirm" in refused.value.fields
    assert count(db, AuditEvent, AuditEvent.action == lifecycle.HANDED_OVER_ACTION) == 0


@pytest.mark.parametrize(
    ("leave_date", "handed_over", "expected"),
    [
        (None, None, None),
        (date(2026, 3, 1), None, date(2026, 3, 31)),
        (date(2026, 3, 1), datetime(2026, 2, 20, 12, tzinfo=UTC), date(2026, 3, 2)),
        (date(2026, 3, 1), datetime(2026, 3, 5, 12, tzinfo=UTC), date(2026, 3, 5)),
        # Handed over at 23:30 UTC is already the next day in Berlin.
        (date(2026, 3, 1), datetime(2026, 3, 5, 23, 30, tzinfo=UTC), date(2026, 3, 6)),
        (date(2026, 3, 1), datetime(2026, 5, 1, tzinfo=UTC), date(2026, 3, 31)),
    ],
)
def test_deletion_date(
    leave_date: date | None, handed_over: datetime | None, expected: date | None
) -> None:
    assert lifecycle.deletion_due_on(leave_date, handed_over, DAYS) == expected


# --- who is due ------------------------------------------------------------------------------


def test_retention_picks_children_by_leaving_date_hand_over_and_deadline(
    db: Session, world: World
) -> None:
    w = world
    group = w.group

    def child_leaving(on: date | None, *, handed_over: bool = False) -> uuid.UUID:
        child = make_child(db, group)
        child.leave_date = on
        db.commit()
        if handed_over:
            lifecycle.record_handover(db, actor=act(db, w.leader), child=child, now=NOW)
            db.commit()
        return child.id

    yesterday = TODAY - timedelta(days=1)
    handed_yesterday = child_leaving(yesterday, handed_over=True)
    deadline_today = child_leaving(TODAY - timedelta(days=DAYS))
    long_gone = child_leaving(TODAY - timedelta(days=400))
    not_yet = {
        "left yesterday, not handed over": child_leaving(yesterday),
        "one day before the deadline": child_leaving(TODAY - timedelta(days=DAYS - 1)),
        "leaves today, handed over": child_leaving(TODAY, handed_over=True),
        "leaves next month, handed over": child_leaving(
            TODAY + timedelta(days=30), handed_over=True
        ),
        "no leaving date": child_leaving(None),
    }
    due = lifecycle.due_for_shredding(db, today=TODAY, days_after_leave=DAYS)
    assert {c.child_id: c.reason for c in due} == {
        handed_yesterday: "handed_over",
        deadline_today: "deadline",
        long_gone: "deadline",
    }
    assert not set(not_yet.values()) & {c.child_id for c in due}
    assert all(isinstance(c, RetentionCandidate) for c in due)
    # With no grace period the day after leaving is enough, never the leaving day itself.
    due_now = lifecycle.due_for_shredding(db, today=TODAY, days_after_leave=0)
    assert not_yet["left yesterday, not handed over"] in {c.child_id for c in due_now}
    assert not_yet["leaves today, handed over"] not in {c.child_id for c in due_now}


def test_the_leaving_day_is_a_day_in_berlin() -> None:
    assert lifecycle.local_today(datetime(2026, 3, 9, 23, 30, tzinfo=UTC)) == TODAY
    assert lifecycle.local_today(datetime(2026, 3, 9, 22, 30, tzinfo=UTC)) == TODAY - timedelta(1)


# --- shredding -------------------------------------------------------------------------------


def test_retention_shreds_keys_rows_and_blobs_of_the_due_child_only(
    db: Session, database: Database, keys: KeyService, blobs: BlobStore, two_families: World
) -> None:
    w = two_families
    child_id = w.child.id
    leave(db, w.child, TODAY - timedelta(days=3))
    lifecycle.record_handover(db, actor=act(db, w.educator), child=w.child, now=NOW)
    leave(db, w.other_child, TODAY - timedelta(days=3))  # left, but neither handed over nor due
    photo_blob = db.scalars(
        select(DocumentationPhoto.blob_id).where(DocumentationPhoto.child_id == child_id)
    ).one()
    assert blobs.exists(photo_blob) and has_key(keys, child_id)
    before_other = rows_of_child(db, w.other_child.id)
    names = (w.child.first_name, w.child.last_name)
    db.commit()

    report = run(db, database, keys, blobs)

    assert (report.due, report.handed_over, report.deadline) == (1, 1, 0)
    assert report.shredded == [child_id] and report.failed == []
    assert (report.entries, report.photos) == (4, 1)
    assert report.keys_deleted == 1 and report.blobs_deleted == 1 and report.purged
    db.expire_all()
    assert set(rows_of_child(db, child_id).values()) == {0}
    assert not blobs.exists(photo_blob)
    assert not has_key(keys, child_id)
    # The parent's account stays (it is theirs); only the link to the child is gone.
    assert db.get(type(w.parent), w.parent.id) is not None
    # The other child is untouched and still readable.
    assert rows_of_child(db, w.other_child.id) == before_other
    assert has_key(keys, w.other_child.id)
    timeline = documentation.list_timeline(
        db, actor=act(db, w.other_educator), keys=keys, child=w.other_child
    )
    assert timeline.total == 4
    shredded = db.scalars(
        select(AuditEvent).where(AuditEvent.action == lifecycle.SHREDDED_ACTION)
    ).one()
    assert (shredded.object_type, shredded.object_id, shredded.actor_id) == (
        "child",
        str(child_id),
        None,
    )
    assert shredded.detail == "reason=handed_over entries=4 photos=1"
    assert not any(name in shredded.detail for name in names)


def test_retention_is_idempotent(
    db: Session, database: Database, keys: KeyService, blobs: BlobStore, two_families: World
) -> None:
    w = two_families
    child_id = w.child.id
    leave(db, w.child, TODAY - timedelta(days=DAYS))
    first = run(db, database, keys, blobs)
    assert first.shredded == [child_id] and first.deadline == 1
    audit_rows = count(db, AuditEvent)
    again = run(db, database, keys, blobs)
    assert (again.due, again.shredded, again.failed, again.keys_deleted) == (0, [], [], 0)
    assert again.purged
    assert count(db, AuditEvent) == audit_rows
    # Shredding a child that is gone already changes nothing.
    result = lifecycle.shred_child(
        database, keys=keys, blobs=blobs, child_id=child_id, reason="deadline", now=NOW
    )
    assert (result.found, result.keys, result.blobs, result.rows) == (False, 0, 0, 0)


def test_dry_run_counts_and_deletes_nothing(
    db: Session, database: Database, keys: KeyService, blobs: BlobStore, two_families: World
) -> None:
    w = two_families
    child_id = w.child.id
    leave(db, w.child, TODAY - timedelta(days=DAYS + 5))
    before = rows_of_child(db, child_id)
    db.commit()
    report = run(db, database, keys, blobs, dry_run=True)
    assert report.dry_run and (report.due, report.deadline, report.entries, report.photos) == (
        1,
        1,
        4,
        1,
    )
    assert report.shredded == [] and not report.purged
    db.expire_all()
    assert rows_of_child(db, child_id) == before
    assert has_key(keys, child_id)


class Boom(RuntimeError):
    """A simulated failure between two steps of shredding."""


@pytest.mark.parametrize("step", ["blobs", "rows", "audit"])
def test_a_failure_between_the_steps_is_finished_by_the_next_run(
    db: Session,
    database: Database,
    keys: KeyService,
    blobs: BlobStore,
    two_families: World,
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    """Keys go first; whatever fails afterwards rolls back the rows, so the child is found and
    finished by the next run, and the keys are gone from the first run on."""
    w = two_families
    child_id = w.child.id
    leave(db, w.child, TODAY - timedelta(days=DAYS))
    photo_blob = db.scalars(
        select(DocumentationPhoto.blob_id).where(DocumentationPhoto.child_id == child_id)
    ).one()
    db.commit()

    def boom(*_args: Any, **_kwargs: Any) -> Any:
        raise Boom(step)

    with monkeypatch.context() as patch:
        if step == "blobs":
            patch.setattr(blobs, "delete", boom)
        elif step == "rows":
            patch.setattr(lifecycle, "_delete_child_rows", boom)
        else:
            patch.setattr(lifecycle.audit, "record", boom)
        crashed = run(db, database, keys, blobs)
    assert crashed.failed == [child_id] and crashed.shredded == []
    assert not has_key(keys, child_id), "the keys are shredded first"
    db.expire_all()
    assert rows_of_child(db, child_id)["children"] == 1, "the child is still to do"
    assert count(db, AuditEvent, AuditEvent.action == lifecycle.SHREDDED_ACTION) == 0

    finished = run(db, database, keys, blobs)
    assert finished.shredded == [child_id] and finished.failed == []
    assert finished.keys_deleted == 0
    db.expire_all()
    assert set(rows_of_child(db, child_id).values()) == {0}
    assert not blobs.exists(photo_blob)
    assert count(db, AuditEvent, AuditEvent.action == lifecycle.SHREDDED_ACTION) == 1
    assert rows_of_child(db, w.other_child.id)["entries"] == 4


def test_a_key_made_by_a_concurrent_writer_is_shredded_too(
    db: Session,
    database: Database,
    keys: KeyService,
    blobs: BlobStore,
    two_families: World,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    w = two_families
    child_id = w.child.id
    leave(db, w.child, TODAY - timedelta(days=DAYS))
    real = lifecycle._delete_child_rows

    def writer_sneaks_in(session: Session, child_id: uuid.UUID) -> int:
        keys.data_key(child_id, KeyKind.HEALTH)  # a request encrypting between the steps
        return real(session, child_id)

    monkeypatch.setattr(lifecycle, "_delete_child_rows", writer_sneaks_in)
    report = run(db, database, keys, blobs)
    assert report.shredded == [child_id] and report.keys_deleted == 2
    assert keys.keystore.get(str(child_id), "health") is None


def test_the_worker_runs_retention_daily(
    app: Flask, db: Session, keys: KeyService, blobs: BlobStore, two_families: World
) -> None:
    w = two_families
    child_id = w.child.id
    leave(db, w.child, date.today() - timedelta(days=400))
    jobs = {job.name: job for job in default_jobs()}
    assert jobs["retention.shred"].every == timedelta(days=1)
    state = app.extensions["kita"]
    done = Worker(WorkerContext(state.config, state.database, state.keys)).run_due(now=0)
    assert done["retention.shred"] == 1
    db.expire_all()
    assert rows_of_child(db, child_id)["children"] == 0


def test_every_table_naming_a_child_is_covered() -> None:
    """A new table with a foreign key to children must be added to the shredding."""
    referencing = {
        table.name
        for table in Base.metadata.sorted_tables
        for fk in table.foreign_keys
        if fk.column.table.name == "children"
    }
    assert referencing | {"children"} <= set(lifecycle.SHREDDED_TABLES)


# --- portfolio -------------------------------------------------------------------------------


def test_portfolio_holds_the_shared_entries_by_area_with_photos(
    db: Session, keys: KeyService, blobs: BlobStore, world: World
) -> None:
    w = world
    document(db, keys, blobs, w.educator, w.child, w.parent)
    write_entry(
        db, keys, w.educator, w.child, text="Klettert hoch.", share=True, areas=("movement",)
    )
    write_entry(db, keys, w.educator, w.child, text="Ohne Bereich.", share=True, areas=())
    portfolio = lifecycle.build_portfolio(
        db, actor=act(db, w.parent), keys=keys, blobs=blobs, child=w.child, locale="tr", now=NOW
    )
    db.commit()
    assert portfolio.child_name == w.child.full_name and portfolio.locale == "tr"
    titles = [
        lifecycle._in_locale(label, "de")
        for label in (
            AREA_LABELS[EducationalArea.MOVEMENT],
            AREA_LABELS[EducationalArea.LANGUAGE_COMMUNICATION],
            lifecycle.OTHER_AREA_LABEL,
        )
    ]
    assert [(s.area_title, [e.text for e in s.entries]) for s in portfolio.sections] == [
        (titles[0], ["Klettert hoch."]),
        (titles[1], ["Sie erzählt vom Wochenende.", "Er baut einen Turm."]),
        (titles[2], ["Ohne Bereich."]),
    ]
    all_text = " ".join(e.text for s in portfolio.sections for e in s.entries)
    assert "Nur intern." not in all_text and "Entwurf" not in all_text
    language = portfolio.sections[1].entries[0]
    assert len(language.photos) == 1 and language.photos[0].startswith(b"\xff\xd8\xff")
    assert language.author == "Erika Educator"
    event = db.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert event is not None
    assert (event.action, event.actor_id, event.object_id) == (
        "documentation.export",
        w.parent.id,
        str(w.child.id),
    )


def test_portfolio_is_refused_to_outsiders(
    db: Session, keys: KeyService, blobs: BlobStore, world: World
) -> None:
    w = world
    consent_to(db, w)
    for outsider in (w.other_parent, w.other_educator, w.council, w.caretaker, w.admin):
        with pytest.raises(NotFoundError):
            lifecycle.build_portfolio(
                db, actor=act(db, outsider), keys=keys, blobs=blobs, child=w.child, locale="de"
            )
    assert count(db, AuditEvent, AuditEvent.action == "documentation.export") == 0
    documentation.break_glass(
        db, actor=act(db, w.admin), keys=keys, child=w.child, reason="Beschwerde der Eltern prüfen"
    )
    portfolio = lifecycle.build_portfolio(
        db, actor=act(db, w.admin), keys=keys, blobs=blobs, child=w.child, locale="de"
    )
    assert portfolio.sections == []
    detail = db.scalars(
        select(AuditEvent.detail).where(AuditEvent.action == "documentation.export")
    ).one()
    assert detail.startswith("break_glass grant=")


def test_the_family_language_is_what_most_custodial_guardians_read(
    db: Session, world: World
) -> None:
    w = world
    assert lifecycle.family_locale(db, w.child) == "de"  # nobody set one: the Kita's default
    make_user(db, roles=[(w.kita, Role.PARENT)], children=[w.child], locale="ar")
    make_user(db, roles=[(w.kita, Role.PARENT)], children=[w.child], locale="ar")
    make_user(db, roles=[(w.kita, Role.PARENT)], children=[w.child], locale="uk")
    no_custody = make_user(db, children=[w.child], locale="uk")
    db.scalars(
        select(GuardianLink).where(GuardianLink.user_id == no_custody.id)
    ).one().has_custody = False
    make_user(db, children=[w.child], locale="xx")
    db.commit()
    assert lifecycle.family_locale(db, w.child) == "ar"
    parent = act(db, w.parent)
    assert lifecycle.portfolio_locale(db, parent, w.child, "tr") == "tr"
    assert lifecycle.portfolio_locale(db, act(db, w.educator), w.child, "tr") == "ar"


# --- family export ---------------------------------------------------------------------------


def test_family_export_contains_shared_entries_only_and_is_audited(
    db: Session, keys: KeyService, blobs: BlobStore, two_families: World
) -> None:
    w = two_families
    documentation.list_shared_for_family(db, actor=act(db, w.parent), keys=keys, child=w.child)
    db.commit()
    data = lifecycle.collect_family_data(
        db,
        actor=act(db, w.parent),
        keys=keys,
        blobs=blobs,
        locale="de",
        export_format="json",
        now=NOW,
    )
    db.commit()
    exported = lifecycle.family_export_json(data)
    assert (exported["format"], exported["version"]) == ("kita.family-export", 1)
    assert exported["account"]["email"] == w.parent.email
    assert "password_hash" not in str(exported) and w.parent.password_hash not in str(exported)
    [child] = exported["children"]
    assert child["id"] == str(w.child.id) and child["has_custody"] is True
    texts = sorted(e["text"] for e in child["documentation"])
    assert texts == ["Er baut einen Turm.", "Sie erzählt vom Wochenende."]
    with_photo = [e for e in child["documentation"] if e["photos"]]
    assert len(with_photo) == 1 and with_photo[0]["photos"][0]["media_type"] == "image/jpeg"
    assert {c["purpose"] for c in child["consents"]} == {
        "documentation",
        "photos_in_documentation",
    }
    assert {c["given_by"] for c in child["consents"]} == {"you"}
    assert [v["action"] for v in child["documentation_views"]] == ["documentation.list"]
    assert "Nur intern." not in str(exported) and str(w.other_child.id) not in str(exported)
    actions = db.scalars(
        select(AuditEvent.action).where(AuditEvent.actor_id == w.parent.id, AuditEvent.at == NOW)
    ).all()
    assert sorted(actions) == ["account.exported", "documentation.export"]
    report = lifecycle.family_export_report(data)
    assert [r.title for r in report.children] == [w.child.full_name]
    assert len(report.entries) == 2 and len(report.consents.rows) == 2


def test_family_export_without_custody_shows_the_record_only(
    db: Session, keys: KeyService, blobs: BlobStore, two_families: World
) -> None:
    w = two_families
    pickup = make_user(db, roles=[(w.kita, Role.PARENT)], children=[w.child])
    link = db.scalars(select(GuardianLink).where(GuardianLink.user_id == pickup.id)).one()
    link.has_custody = False
    db.commit()
    data = lifecycle.collect_family_data(
        db,
        actor=load_actor(db, pickup),
        keys=keys,
        blobs=blobs,
        locale="de",
        export_format="pdf",
    )
    [child] = lifecycle.family_export_json(data)["children"]
    assert child["first_name"] == w.child.first_name and child["has_custody"] is False
    assert child["documentation"] == child["consents"] == child["documentation_views"] == []


# --- demo ------------------------------------------------------------------------------------


def test_demo_documents_every_child_through_the_services_once(
    db: Session, keys: KeyService, blobs: BlobStore
) -> None:
    hasher = make_password_hasher("test")
    assert load_demo(db, hasher, keys=keys, blobs=blobs)
    db.commit()
    children = db.scalars(select(Child)).all()
    assert len(children) > 100
    entries = db.scalars(select(DocumentationEntry)).all()
    per_child = Counter(entry.child_id for entry in entries)
    assert set(per_child) == {child.id for child in children}
    assert set(per_child.values()) <= {2, 3} and 3 in per_child.values()
    shared = [e for e in entries if e.shared_with_family_at is not None]
    assert {e.status for e in shared} == {EntryStatus.FINAL}
    assert any(e.status is EntryStatus.DRAFT for e in entries)
    assert count(db, DocumentationPhoto) == len(children)
    consents = db.scalars(select(Consent)).all()
    assert len(consents) == 2 * len(children)
    assert {c.method for c in consents} == {ConsentMethod.APP}
    assert all(c.given_by_id is not None for c in consents)
    # Encrypted with each child's own key: readable through the service, not in the row.
    child = children[0]
    views = documentation.decrypt_entries_for_export(db, keys=keys, child=child)
    assert all(child.first_name in view.text for view in views)
    assert all(child.first_name.encode() not in e.content_ct for e in entries)
    events = count(db, AuditEvent)

    assert not load_demo(db, hasher, keys=keys, blobs=blobs)
    db.commit()
    assert count(db, DocumentationEntry) == len(entries) and count(db, AuditEvent) == events
