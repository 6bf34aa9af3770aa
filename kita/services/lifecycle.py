"""The end of a child's documentation: the portfolio handed to the family, the hand-over record,
retention (crypto-shredding once the child has left) and the family's data export.

**Hand-over** is recorded as an audit event (``child.handed_over``, object: the child), not as a
column: the audit log is append-only and hash-chained, so the record that permits early
deletion cannot be changed quietly, it needs no schema change, and it survives the child's rows
(it names only ids). :func:`handed_over_at` reads it back.

**Portfolio**: the entries shared with the family, grouped by educational area (an entry tagged
with several areas is printed once, under its first area), with their photos. The primary
language is German. The family's language is added where a translation exists: today that is
the headings (the report template's texts and the area names from our catalogs); there is no
machine translation of entry texts yet, so titles and texts stay in the original until it comes
(``PortfolioEntry.translated_*`` are left empty).

**Retention** (:func:`run_retention`, run daily by the worker and by ``kita retention run``):
a child whose leaving date has passed is shredded once the hand-over is recorded, or at the
latest ``days_after_leave`` days after the leaving date. :func:`shred_child` works in this order:

1. open a write transaction and lock the child's row (PostgreSQL ``FOR UPDATE``; SQLite's write
   transaction already excludes every other writer), and collect the blob ids of its photos;
2. delete the child's data keys (``KeyService.shred``: general and health; the keystore is a
   separate database, so this commits at once and its WAL is truncated). This is the point of
   no return and deliberately the first destructive step: from here every copy of the child's
   ciphertexts (this database, its backups, the blobs) is unreadable, whatever happens next;
3. delete the blobs (a missing blob is fine);
4. delete the rows (documentation, consents, guardian links, invitations, the child), write a
   content-free ``child.shredded`` audit event, and commit;
5. shred the keys once more, in case a concurrent writer created a new key between 2 and 4.

A crash anywhere before the commit in step 4 leaves the child's row in place, so the next run
finds the child again and repeats every step (each one is idempotent: shredding absent keys or
deleting absent blobs does nothing). The row itself is the to-do marker, so no separate shred
log (and no schema change) is needed. A crash after the commit leaves only the purge of the
database files, which every run ends with: ``PRAGMA wal_checkpoint(TRUNCATE)`` on SQLite
(``secure_delete`` is on, see kita/db.py, so deleted cells are zeroed in the pages) and
``VACUUM`` of the affected tables on PostgreSQL (outside a transaction). Keys-first is the
better order for both failure modes: blobs- or rows-first would need a log of keys still to
shred after the rows that name them are gone, and a crash would leave readable data behind.

**Family export** (GDPR Art. 15 and 20): :func:`collect_family_data` gathers everything about
the logged-in person and their children; :func:`family_export_json` and
:func:`family_export_report` turn it into JSON and the PDF's plain data. JSON, version 1::

    {"format": "kita.family-export", "version": 1, "generated_at": ISO-8601,
     "account": {"id", "email", "display_name", "locale", "created_at", "password_changed_at",
                 "two_factor_enabled", "roles": [{"kita_id", "kita", "role"}]},
     "children": [{"id", "first_name", "last_name", "birth_date", "entry_date", "leave_date",
                   "kita": {"id", "name"}, "group", "relation", "has_custody", "may_pick_up",
                   "consents": [{"purpose", "method", "text_version", "given_at",
                                 "given_by" ("you" | "other_guardian" | "paper"),
                                 "withdrawn_at"}],
                   "documentation": [{"id", "kind", "title", "text", "areas", "dispositions",
                                      "template_values", "observed_on", "author",
                                      "shared_with_family_at",
                                      "photos": [{"id", "width", "height", "media_type",
                                                  "data_base64"}]}],
                   "documentation_views": [{"at", "name", "role", "action", "break_glass"}]}],
     "account_events": [{"at", "action", "object_type"}]}

Dates are ``YYYY-MM-DD``, times ISO-8601 in UTC. Consents, documentation and views are given
for children the person has custody of (otherwise empty lists); documentation means the entries
shared with the family, as the family sees them. Every export is audited.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from kita import audit
from kita.access import (
    Actor,
    DocumentationAccess,
    documentation_access,
    is_custodial_guardian,
    may_write_documentation,
)
from kita.blobs import BlobStore
from kita.config import SUPPORTED_LOCALES
from kita.crypto import KeyService
from kita.db import Database
from kita.errors import NotFoundError, ValidationError, describe_exception
from kita.models.accounts import Invitation, Membership, User
from kita.models.audit import AuditEvent
from kita.models.documentation import (
    BreakGlassGrant,
    Consent,
    ConsentMethod,
    DevelopmentTalk,
    DocumentationEntry,
    DocumentationEntryArea,
    DocumentationPhoto,
    DocumentationRevision,
    DocumentationTemplate,
    EducationalArea,
)
from kita.models.messaging import (
    AnnouncementTarget,
    Attachment,
    Conversation,
    ConversationMessage,
    ConversationMessageTranslation,
    ConversationRead,
)
from kita.models.organisation import Child, GuardianLink, Kita
from kita.reports import AreaSection, FamilyExport, Portfolio, PortfolioEntry, Record, Table
from kita.services.consent import PURPOSE_LABELS, consent_history
from kita.services.documentation import (
    AREA_LABELS,
    KIND_LABELS,
    VIEWER_ROLE_LABELS,
    EntryView,
    ViewRecord,
    decrypt_entries_for_export,
    record_read,
    template_view,
    who_viewed,
)
from kita.services.photos import load_photo_bytes

log = logging.getLogger("kita.lifecycle")

HANDED_OVER_ACTION = "child.handed_over"
SHREDDED_ACTION = "child.shredded"
EXPORT_ACTION = "documentation.export"
EXPORT_FORMAT = "kita.family-export"
EXPORT_VERSION = 1
PORTFOLIO_PRIMARY_LOCALE = "de"
#: Leaving dates are calendar days in the city's time zone.
LOCAL_TIMEZONE = ZoneInfo("Europe/Berlin")
#: Ids per ``IN (...)`` clause when looking up many children at once.
_ID_BATCH = 500

#: Tables a shred deletes from, in dependency order; VACUUMed afterwards on PostgreSQL.
SHREDDED_TABLES: tuple[str, ...] = (
    "announcement_targets",
    "attachments",
    "conversation_message_translations",
    "conversation_messages",
    "conversation_reads",
    "conversations",
    "documentation_photos",
    "documentation_revisions",
    "documentation_entry_areas",
    "documentation_entries",
    "development_talks",
    "break_glass_grants",
    "consents",
    "invitations",
    "guardian_links",
    "children",
)

OTHER_AREA_LABEL = _l("Further entries")
YES, NO = _l("yes"), _l("no")


def local_today(now: datetime) -> date:
    """The calendar day ``now`` falls on in the city (leaving dates are local days)."""
    return now.astimezone(LOCAL_TIMEZONE).date()


def _in_locale(label: object, locale: str) -> str:
    """A lazy string rendered in ``locale`` (inside the app; the msgid outside of it)."""
    with force_locale(locale):
        return str(label)


# --- hand-over -------------------------------------------------------------------------------


def handed_over_at(db: Session, child_id: uuid.UUID) -> datetime | None:
    """When the hand-over of the child's documentation was recorded first, or None."""
    return db.scalars(
        select(AuditEvent.at)
        .where(
            AuditEvent.action == HANDED_OVER_ACTION,
            AuditEvent.object_type == "child",
            AuditEvent.object_id == str(child_id),
        )
        .order_by(AuditEvent.id)
        .limit(1)
    ).first()


def _handed_over_ids(db: Session, child_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    found: set[uuid.UUID] = set()
    for start in range(0, len(child_ids), _ID_BATCH):
        batch = [str(child_id) for child_id in child_ids[start : start + _ID_BATCH]]
        found.update(
            uuid.UUID(object_id)
            for object_id in db.scalars(
                select(AuditEvent.object_id)
                .where(
                    AuditEvent.action == HANDED_OVER_ACTION,
                    AuditEvent.object_type == "child",
                    AuditEvent.object_id.in_(batch),
                )
                .distinct()
            )
        )
    return found


def deletion_due_on(
    leave_date: date | None, handed_over: datetime | None, days_after_leave: int
) -> date | None:
    """The first day :func:`run_retention` shreds the child's data (None without a leaving
    date): the day after leaving once handed over, else ``days_after_leave`` after leaving."""
    if leave_date is None:
        return None
    deadline = leave_date + timedelta(days=max(days_after_leave, 1))
    if handed_over is None:
        return deadline
    return min(deadline, max(leave_date + timedelta(days=1), local_today(handed_over)))


@dataclass(frozen=True)
class HandoverState:
    """What the hand-over page shows to staff."""

    child_id: uuid.UUID
    leave_date: date | None
    handed_over_at: datetime | None
    handed_over_by: str
    shared_entries: int
    family_downloads: int
    deletion_due_on: date | None


def _require_staff(actor: Actor, child: Child) -> None:
    if not may_write_documentation(actor, child):
        raise NotFoundError()


def handover_state(
    db: Session, *, actor: Actor, child: Child, days_after_leave: int
) -> HandoverState:
    """The child's hand-over state for its educators and the Kita's leaders; 404 for others."""
    _require_staff(actor, child)
    event = db.scalars(
        select(AuditEvent)
        .where(
            AuditEvent.action == HANDED_OVER_ACTION,
            AuditEvent.object_type == "child",
            AuditEvent.object_id == str(child.id),
        )
        .order_by(AuditEvent.id)
        .limit(1)
    ).first()
    by = db.get(User, event.actor_id) if event is not None and event.actor_id else None
    shared = db.scalar(
        select(func.count())
        .select_from(DocumentationEntry)
        .where(
            DocumentationEntry.child_id == child.id,
            DocumentationEntry.shared_with_family_at.is_not(None),
        )
    )
    guardians = select(GuardianLink.user_id).where(GuardianLink.child_id == child.id)
    downloads = db.scalar(
        select(func.count())
        .select_from(AuditEvent)
        .where(
            AuditEvent.action == EXPORT_ACTION,
            AuditEvent.object_type == "child",
            AuditEvent.object_id == str(child.id),
            AuditEvent.actor_id.in_(guardians),
        )
    )
    at = event.at if event is not None else None
    return HandoverState(
        child_id=child.id,
        leave_date=child.leave_date,
        handed_over_at=at,
        handed_over_by=by.display_name if by is not None else "",
        shared_entries=int(shared or 0),
        family_downloads=int(downloads or 0),
        deletion_due_on=deletion_due_on(child.leave_date, at, days_after_leave),
    )


def record_handover(
    db: Session, *, actor: Actor, child: Child, now: datetime | None = None
) -> bool:
    """Record that the family received the child's documentation (the portfolio), which lets
    retention shred it the day after the leaving date. Staff of the child only (404 for
    others); the child needs a leaving date (field error otherwise). Returns False when the
    hand-over was recorded before (nothing changes)."""
    _require_staff(actor, child)
    if child.leave_date is None:
        raise ValidationError(
            {"confirm": _l("Please enter the child's leaving date first.")},
            _l("The hand-over can be recorded once the child's leaving date is known."),
        )
    if handed_over_at(db, child.id) is not None:
        return False
    audit.record(
        db,
        action=HANDED_OVER_ACTION,
        actor_id=actor.id,
        object_type="child",
        object_id=child.id,
        kita_id=child.kita_id,
        at=now,
    )
    return True


# --- portfolio -------------------------------------------------------------------------------


def family_locale(db: Session, child: Child) -> str:
    """The language most of the child's custodial guardians read (ties: alphabetical), else
    the Kita's default language, else German."""
    locales = Counter(
        locale
        for locale in db.scalars(
            select(User.locale)
            .join(GuardianLink, GuardianLink.user_id == User.id)
            .where(GuardianLink.child_id == child.id, GuardianLink.has_custody.is_(True))
        )
        if locale in SUPPORTED_LOCALES
    )
    if locales:
        return sorted(locales.items(), key=lambda item: (-item[1], item[0]))[0][0]
    default = child.kita.default_locale
    return default if default in SUPPORTED_LOCALES else PORTFOLIO_PRIMARY_LOCALE


def portfolio_locale(db: Session, actor: Actor, child: Child, preferred: str | None) -> str:
    """A guardian's portfolio comes in their own language (``preferred``: the language they
    use the app in); staff print the family's language."""
    if preferred in SUPPORTED_LOCALES and is_custodial_guardian(db, actor, child):
        return str(preferred)
    return family_locale(db, child)


def _photos_by_entry(
    db: Session, entry_ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, list[DocumentationPhoto]]:
    ids = list(entry_ids)
    result: dict[uuid.UUID, list[DocumentationPhoto]] = {}
    for start in range(0, len(ids), _ID_BATCH):
        for photo in db.scalars(
            select(DocumentationPhoto)
            .where(DocumentationPhoto.entry_id.in_(ids[start : start + _ID_BATCH]))
            .order_by(DocumentationPhoto.created_at, DocumentationPhoto.id)
        ):
            result.setdefault(photo.entry_id, []).append(photo)
    return result


def _template_text(db: Session, entry: EntryView, locale: str) -> str:
    """An entry's template values as ``label: value`` lines (in ``locale``)."""
    if entry.template_id is None or not entry.template_values:
        return ""
    template = db.get(DocumentationTemplate, entry.template_id)
    if template is None:
        return ""
    lines = []
    for spec in template_view(template).fields:
        if spec.name not in entry.template_values:
            continue
        value: object = entry.template_values[spec.name]
        value = dict(spec.options).get(str(value), value)
        lines.append(f"{_in_locale(spec.label, locale)}: {_in_locale(value, locale)}")
    return "\n".join(lines)


def _entry_text(db: Session, entry: EntryView, locale: str) -> str:
    return "\n\n".join(part for part in (entry.text, _template_text(db, entry, locale)) if part)


def _entry_title(entry: EntryView, locale: str) -> str:
    return entry.title or _in_locale(KIND_LABELS[entry.kind], locale)


def build_portfolio(
    db: Session,
    *,
    actor: Actor,
    keys: KeyService,
    blobs: BlobStore,
    child: Child,
    locale: str,
    now: datetime | None = None,
) -> Portfolio:
    """The child's portfolio: the entries shared with the family, by educational area, with
    their photos, in German with the family's ``locale`` next to it (see the module docstring
    on translation). For the child's staff, guardians with custody and provider admins with
    break-glass; 404 for everybody else. Audited as ``documentation.export``."""
    now = now or datetime.now(UTC)
    scope = documentation_access(db, actor, child, now=now)
    if scope is None:
        raise NotFoundError()
    if locale not in SUPPORTED_LOCALES:
        locale = PORTFOLIO_PRIMARY_LOCALE
    primary = PORTFOLIO_PRIMARY_LOCALE
    entries = decrypt_entries_for_export(db, keys=keys, child=child, shared_only=True)
    photos = _photos_by_entry(db, (entry.id for entry in entries))
    by_area: dict[EducationalArea | None, list[PortfolioEntry]] = {}
    for entry in entries:
        by_area.setdefault(entry.areas[0] if entry.areas else None, []).append(
            PortfolioEntry(
                date=entry.observed_on,
                title=_entry_title(entry, primary),
                text=_entry_text(db, entry, primary),
                author=entry.author_name,
                photos=[load_photo_bytes(keys, blobs, p) for p in photos.get(entry.id, [])],
            )
        )
    sections = []
    for area in [*EducationalArea, None]:
        if area not in by_area:
            continue
        label = AREA_LABELS[area] if area is not None else OTHER_AREA_LABEL
        title = _in_locale(label, primary)
        translated = _in_locale(label, locale) if locale != primary else None
        sections.append(
            AreaSection(
                area_title=title,
                entries=by_area[area],
                translated_area_title=translated if translated != title else None,
            )
        )
    today = local_today(now)
    observed = [entry.observed_on for entry in entries]
    start = child.entry_date or (min(observed) if observed else today)
    end = child.leave_date or (max(observed) if observed else today)
    record_read(
        db,
        actor=actor,
        child=child,
        action=EXPORT_ACTION,
        scope=scope,
        detail=f"portfolio entries={len(entries)}",
        now=now,
    )
    return Portfolio(
        child_name=child.full_name,
        kita_name=child.kita.name,
        group_name=child.group.name if child.group is not None else "",
        period=(min(start, end), max(start, end)),
        locale=locale,
        sections=sections,
    )


# --- retention -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetentionCandidate:
    """A child due for shredding and why: ``handed_over`` or ``deadline``."""

    child_id: uuid.UUID
    kita_id: uuid.UUID
    reason: str


@dataclass(frozen=True)
class ShredResult:
    """What :func:`shred_child` deleted (all 0 when the child was gone already)."""

    child_id: uuid.UUID
    found: bool
    keys: int
    blobs: int
    rows: int


@dataclass
class RetentionReport:
    """What :func:`run_retention` found and did; with ``dry_run`` only the counts."""

    dry_run: bool
    today: date
    due: int = 0
    handed_over: int = 0
    deadline: int = 0
    entries: int = 0
    photos: int = 0
    shredded: list[uuid.UUID] = field(default_factory=list)
    failed: list[uuid.UUID] = field(default_factory=list)
    keys_deleted: int = 0
    blobs_deleted: int = 0
    rows_deleted: int = 0
    purged: bool = False


def due_for_shredding(
    db: Session, *, today: date, days_after_leave: int
) -> list[RetentionCandidate]:
    """Children whose leaving date is before ``today`` and who were handed over, or whose
    leaving date is at least ``days_after_leave`` days ago (never before the day after)."""
    left = db.execute(
        select(Child.id, Child.kita_id, Child.leave_date)
        .where(Child.leave_date.is_not(None), Child.leave_date < today)
        .order_by(Child.leave_date, Child.id)
    ).all()
    handed_over = _handed_over_ids(db, [row.id for row in left])
    candidates = []
    for child_id, kita_id, leave_date in left:
        if child_id in handed_over:
            candidates.append(RetentionCandidate(child_id, kita_id, "handed_over"))
        elif leave_date is not None and leave_date + timedelta(days=days_after_leave) <= today:
            candidates.append(RetentionCandidate(child_id, kita_id, "deadline"))
    return candidates


def _count_children_rows(db: Session, model: Any, child_ids: Sequence[uuid.UUID]) -> int:
    total = 0
    for start in range(0, len(child_ids), _ID_BATCH):
        total += int(
            db.scalar(
                select(func.count())
                .select_from(model)
                .where(model.child_id.in_(child_ids[start : start + _ID_BATCH]))
            )
            or 0
        )
    return total


def _delete_child_rows(db: Session, child_id: uuid.UUID) -> int:
    """Delete every row of the child, dependants first (the foreign keys cascade as well; the
    explicit order keeps this correct whatever a migration says). Returns the rows deleted."""
    entries = select(DocumentationEntry.id).where(DocumentationEntry.child_id == child_id)
    conversations = select(Conversation.id).where(Conversation.child_id == child_id)
    messages = select(ConversationMessage.id).where(
        ConversationMessage.conversation_id.in_(conversations)
    )
    statements = (
        delete(Attachment).where(Attachment.message_id.in_(messages)),
        delete(ConversationMessageTranslation).where(
            ConversationMessageTranslation.message_id.in_(messages)
        ),
        delete(ConversationMessage).where(ConversationMessage.conversation_id.in_(conversations)),
        delete(ConversationRead).where(ConversationRead.conversation_id.in_(conversations)),
        delete(Conversation).where(Conversation.child_id == child_id),
        delete(AnnouncementTarget).where(AnnouncementTarget.child_id == child_id),
        delete(DocumentationPhoto).where(DocumentationPhoto.child_id == child_id),
        delete(DocumentationRevision).where(DocumentationRevision.entry_id.in_(entries)),
        delete(DocumentationEntryArea).where(DocumentationEntryArea.entry_id.in_(entries)),
        delete(DocumentationEntry).where(DocumentationEntry.child_id == child_id),
        delete(DevelopmentTalk).where(DevelopmentTalk.child_id == child_id),
        delete(BreakGlassGrant).where(BreakGlassGrant.child_id == child_id),
        delete(Consent).where(Consent.child_id == child_id),
        delete(Invitation).where(Invitation.child_id == child_id),
        delete(GuardianLink).where(GuardianLink.child_id == child_id),
        delete(Child).where(Child.id == child_id),
    )
    rows = 0
    for statement in statements:
        result = db.execute(statement.execution_options(synchronize_session=False))
        rows += int(getattr(result, "rowcount", 0) or 0)
    return rows


def shred_child(
    database: Database,
    *,
    keys: KeyService,
    blobs: BlobStore,
    child_id: uuid.UUID,
    reason: str,
    now: datetime | None = None,
) -> ShredResult:
    """Crypto-shred one child: keys, blobs, rows, a content-free audit event (see the module
    docstring for the order and why a crash is finished by running again).

    A transaction boundary of its own (it commits): erasure must be durable step by step.
    Does not purge the database files; :func:`run_retention` does that after all children.
    """
    now = now or datetime.now(UTC)
    with database.transaction() as db:
        child = db.scalars(select(Child).where(Child.id == child_id).with_for_update()).first()
        if child is None:
            return ShredResult(child_id, False, keys.shred(child_id), 0, 0)
        kita_id = child.kita_id
        blob_ids = list(
            db.scalars(
                select(DocumentationPhoto.blob_id).where(DocumentationPhoto.child_id == child_id)
            )
        )
        # The child's conversations have data keys of their own, and their attachments blobs.
        conversation_ids = list(
            db.scalars(select(Conversation.id).where(Conversation.child_id == child_id))
        )
        blob_ids += list(
            db.scalars(
                select(Attachment.blob_id)
                .join(ConversationMessage, ConversationMessage.id == Attachment.message_id)
                .where(ConversationMessage.conversation_id.in_(conversation_ids))
            )
        )
        entries = _count_children_rows(db, DocumentationEntry, [child_id])
        shredded_keys = keys.shred(child_id)  # the point of no return
        shredded_keys += sum(keys.shred(conversation_id) for conversation_id in conversation_ids)
        deleted_blobs = sum(1 for blob_id in blob_ids if blobs.delete(blob_id))
        db.expunge(child)
        rows = _delete_child_rows(db, child_id)
        audit.record(
            db,
            action=SHREDDED_ACTION,
            object_type="child",
            object_id=child_id,
            kita_id=kita_id,
            detail=f"reason={reason} entries={entries} photos={len(blob_ids)}",
            at=now,
        )
    # A key a concurrent writer made after the first shred: its rows are gone, so is it now.
    shredded_keys += keys.shred(child_id)
    return ShredResult(child_id, True, shredded_keys, deleted_blobs, rows)


def purge_deleted_rows(database: Database, *, attempts: int = 20) -> bool:
    """Make deleted rows leave the database files: on SQLite checkpoint the WAL into the main
    file and truncate it (``secure_delete`` has zeroed the deleted cells); on PostgreSQL VACUUM
    the tables shredding deletes from. Returns False when a long reader kept the SQLite WAL
    from being truncated (the next run tries again)."""
    if database.is_sqlite:
        raw = database.engine.raw_connection()
        cursor = raw.cursor()
        try:
            # A checkpoint waits for readers through the busy handler: wait briefly per attempt
            # (not the connection's 30 seconds), and try again a few times.
            cursor.execute("PRAGMA busy_timeout=100")
            for _ in range(attempts):
                busy, _log, _done = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if busy == 0:
                    return True
                time.sleep(0.05)
        finally:
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
            raw.close()
        log.warning("retention: the WAL is in use and was not truncated; the next run retries")
        return False
    with database.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in SHREDDED_TABLES:
            conn.exec_driver_sql(f'VACUUM "{table}"')
    return True


def run_retention(
    database: Database,
    *,
    keys: KeyService,
    blobs: BlobStore,
    now: datetime,
    days_after_leave: int,
    dry_run: bool = False,
) -> RetentionReport:
    """Shred every child that is due (:func:`due_for_shredding`), each in its own transaction,
    then purge the database files. Idempotent: a second run finds nothing to do, and a run
    after a crash finishes what the crashed one started. A child that fails is logged (by id)
    and listed in ``failed``; the others are shredded all the same. ``dry_run`` only counts.
    """
    today = local_today(now)
    with database.session() as db:
        candidates = due_for_shredding(db, today=today, days_after_leave=days_after_leave)
        ids = [candidate.child_id for candidate in candidates]
        report = RetentionReport(
            dry_run=dry_run,
            today=today,
            due=len(candidates),
            handed_over=sum(1 for c in candidates if c.reason == "handed_over"),
            deadline=sum(1 for c in candidates if c.reason == "deadline"),
            entries=_count_children_rows(db, DocumentationEntry, ids),
            photos=_count_children_rows(db, DocumentationPhoto, ids),
        )
    if dry_run:
        return report
    for candidate in candidates:
        try:
            result = shred_child(
                database,
                keys=keys,
                blobs=blobs,
                child_id=candidate.child_id,
                reason=candidate.reason,
                now=now,
            )
        except Exception as error:
            # Ids only: no names or content in the log. The child stays due and is retried.
            log.error(
                "retention: shredding child %s failed: %s",
                candidate.child_id,
                describe_exception(error),
            )
            report.failed.append(candidate.child_id)
            continue
        if result.found:
            report.shredded.append(candidate.child_id)
        report.keys_deleted += result.keys
        report.blobs_deleted += result.blobs
        report.rows_deleted += result.rows
    report.purged = purge_deleted_rows(database)
    return report


# --- family export ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildData:
    """One child of the exporting person; consents, entries and views only with custody."""

    child: Child
    link: GuardianLink
    custody: bool
    consents: list[Consent]
    entries: list[EntryView]
    photos: dict[uuid.UUID, list[tuple[DocumentationPhoto, bytes]]]
    views: list[ViewRecord]


@dataclass(frozen=True)
class FamilyData:
    """Everything the family export contains, decrypted, in plain objects."""

    user: User
    locale: str
    generated_at: datetime
    roles: list[tuple[Kita, Membership]]
    children: list[ChildData]
    account_events: list[AuditEvent]


def _all_views(db: Session, actor: Actor, child: Child) -> list[ViewRecord]:
    views: list[ViewRecord] = []
    number = 1
    while True:
        page = who_viewed(db, actor=actor, child=child, page=number)
        views.extend(page.items)
        if not page.has_next:
            return views
        number += 1


def collect_family_data(
    db: Session,
    *,
    actor: Actor,
    keys: KeyService,
    blobs: BlobStore,
    locale: str,
    export_format: str,
    now: datetime | None = None,
) -> FamilyData:
    """Everything stored about the logged-in person and their children (GDPR Art. 15/20):
    the account, roles, each linked child's record and, with custody, its consents, the
    documentation shared with the family (decrypted, with photos) and who viewed it. Audited:
    ``account.exported`` and, per child with custody, ``documentation.export``."""
    now = now or datetime.now(UTC)
    user = actor.user
    roles = [
        (kita, membership)
        for kita, membership in db.execute(
            select(Kita, Membership)
            .join(Membership, Membership.kita_id == Kita.id)
            .where(Membership.user_id == user.id)
            .order_by(Kita.name, Membership.role)
        )
    ]
    account_events = list(
        db.scalars(select(AuditEvent).where(AuditEvent.actor_id == user.id).order_by(AuditEvent.id))
    )
    children: list[ChildData] = []
    links = db.scalars(
        select(GuardianLink)
        .join(Child, GuardianLink.child_id == Child.id)
        .where(GuardianLink.user_id == user.id)
        .order_by(Child.last_name, Child.first_name, Child.id)
    ).all()
    for link in links:
        child = link.child
        custody = is_custodial_guardian(db, actor, child)
        consents: list[Consent] = []
        entries: list[EntryView] = []
        photos: dict[uuid.UUID, list[tuple[DocumentationPhoto, bytes]]] = {}
        views: list[ViewRecord] = []
        if custody:
            consents = consent_history(db, child)
            entries = decrypt_entries_for_export(db, keys=keys, child=child, shared_only=True)
            for entry_id, rows in _photos_by_entry(db, (e.id for e in entries)).items():
                photos[entry_id] = [(row, load_photo_bytes(keys, blobs, row)) for row in rows]
            views = _all_views(db, actor, child)
            record_read(
                db,
                actor=actor,
                child=child,
                action=EXPORT_ACTION,
                scope=DocumentationAccess.FAMILY,
                detail=f"family_export {export_format} entries={len(entries)}",
                now=now,
            )
        children.append(ChildData(child, link, custody, consents, entries, photos, views))
    audit.record(
        db,
        action="account.exported",
        actor_id=user.id,
        object_type="user",
        object_id=user.id,
        detail=f"format={export_format}",
        at=now,
    )
    return FamilyData(user, locale, now, roles, children, account_events)


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _given_by(consent: Consent, user: User) -> str:
    if consent.given_by_id == user.id:
        return "you"
    if consent.method is ConsentMethod.PAPER and consent.given_by_id is None:
        return "paper"
    return "other_guardian"


def family_export_json(data: FamilyData) -> dict[str, Any]:
    """The export as JSON-ready data (structure: see the module docstring)."""
    user = data.user
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "generated_at": data.generated_at.isoformat(),
        "account": {
            "id": str(user.id),
            "email": user.email,
            "display_name": user.display_name,
            "locale": user.locale,
            "created_at": _iso(user.created_at),
            "password_changed_at": _iso(user.password_changed_at),
            "two_factor_enabled": user.totp_enabled_at is not None,
            "roles": [
                {"kita_id": str(kita.id), "kita": kita.name, "role": membership.role.value}
                for kita, membership in data.roles
            ],
        },
        "children": [_child_json(item, user) for item in data.children],
        "account_events": [
            {"at": _iso(event.at), "action": event.action, "object_type": event.object_type}
            for event in data.account_events
        ],
    }


def _child_json(item: ChildData, user: User) -> dict[str, Any]:
    child = item.child
    return {
        "id": str(child.id),
        "first_name": child.first_name,
        "last_name": child.last_name,
        "birth_date": _iso(child.birth_date),
        "entry_date": _iso(child.entry_date),
        "leave_date": _iso(child.leave_date),
        "kita": {"id": str(child.kita_id), "name": child.kita.name},
        "group": child.group.name if child.group is not None else None,
        "relation": item.link.relation.value,
        "has_custody": item.link.has_custody,
        "may_pick_up": item.link.may_pick_up,
        "consents": [
            {
                "purpose": consent.purpose.value,
                "method": consent.method.value,
                "text_version": consent.text_version,
                "given_at": _iso(consent.given_at),
                "given_by": _given_by(consent, user),
                "withdrawn_at": _iso(consent.withdrawn_at),
            }
            for consent in item.consents
        ],
        "documentation": [
            {
                "id": str(entry.id),
                "kind": entry.kind.value,
                "title": entry.title,
                "text": entry.text,
                "areas": [area.value for area in entry.areas],
                "dispositions": [d.value for d in entry.dispositions],
                "template_values": entry.template_values,
                "observed_on": _iso(entry.observed_on),
                "author": entry.author_name,
                "shared_with_family_at": _iso(entry.shared_with_family_at),
                "photos": [
                    {
                        "id": str(photo.id),
                        "width": photo.width,
                        "height": photo.height,
                        "media_type": "image/jpeg",
                        "data_base64": base64.b64encode(jpeg).decode("ascii"),
                    }
                    for photo, jpeg in item.photos.get(entry.id, [])
                ],
            }
            for entry in item.entries
        ],
        "documentation_views": [
            {
                "at": _iso(view.at),
                "name": view.name,
                "role": view.role,
                "action": view.action,
                "break_glass": view.break_glass,
            }
            for view in item.views
        ],
    }


_GIVEN_BY_LABELS = {
    "you": _l("You"),
    "other_guardian": _l("Another parent"),
    "paper": _l("Paper form"),
}
_METHOD_LABELS = {ConsentMethod.APP: _l("In the app"), ConsentMethod.PAPER: _l("On paper")}
_ROLE_LABELS = {
    "leader": _l("Leader"),
    "educator": _l("Educator"),
    "caretaker": _l("Caretaker"),
    "council": _l("Parent council"),
    "parent": _l("Parent"),
}
_VIEW_ACTION_LABELS = {
    "documentation.list": _l("Viewed the list of entries"),
    "documentation.read": _l("Read an entry"),
    "documentation.photo_read": _l("Viewed a photo"),
    "documentation.export": _l("Exported the documentation"),
}


def family_export_report(data: FamilyData) -> FamilyExport:
    """The export as the plain data ``kita.reports.render_family_export`` lays out."""
    locale, user = data.locale, data.user

    def text(label: object) -> str:
        return _in_locale(label, locale)

    roles = "; ".join(
        f"{kita.name}: {text(_ROLE_LABELS.get(m.role.value, m.role.value))}"
        for kita, m in data.roles
    )
    guardian = Record(
        title=user.display_name,
        rows=[
            (_l("E-mail address"), user.email),
            (_l("Language"), user.locale),
            (_l("Account created"), user.created_at),
            (_l("Two-factor authentication"), text(YES if user.totp_enabled_at else NO)),
            (_l("Roles"), roles or None),
        ],
    )
    children, entries = [], []
    consent_rows: list[list[Any]] = []
    view_rows: list[list[Any]] = []
    for item in data.children:
        child = item.child
        children.append(
            Record(
                title=child.full_name,
                rows=[
                    (_l("Kita"), child.kita.name),
                    (_l("Group"), child.group.name if child.group is not None else None),
                    (_l("Date of birth"), child.birth_date),
                    (_l("Start date"), child.entry_date),
                    (_l("Leaving date"), child.leave_date),
                    (_l("Custody"), text(YES if item.link.has_custody else NO)),
                    (_l("May pick up"), text(YES if item.link.may_pick_up else NO)),
                ],
            )
        )
        for consent in item.consents:
            consent_rows.append(
                [
                    child.first_name,
                    text(PURPOSE_LABELS[consent.purpose]),
                    text(_METHOD_LABELS[consent.method]),
                    consent.given_at,
                    text(_GIVEN_BY_LABELS[_given_by(consent, user)]),
                    consent.withdrawn_at,
                ]
            )
        for entry in item.entries:
            entries.append(
                Record(
                    title=f"{child.first_name}: {_entry_title(entry, locale)}",
                    rows=[
                        (_l("Date"), entry.observed_on),
                        (_l("Areas"), ", ".join(text(AREA_LABELS[a]) for a in entry.areas)),
                        (_l("Written by"), entry.author_name),
                        (_l("Shared on"), entry.shared_with_family_at),
                    ],
                    text=entry.text or None,
                    photos=[jpeg for _photo, jpeg in item.photos.get(entry.id, [])],
                )
            )
        for view in item.views:
            view_rows.append(
                [
                    child.first_name,
                    view.at,
                    view.name or None,
                    text(VIEWER_ROLE_LABELS.get(view.role, view.role)),
                    text(_VIEW_ACTION_LABELS.get(view.action, view.action)),
                ]
            )
    return FamilyExport(
        locale=locale,
        subject_name=user.display_name,
        generated_at=data.generated_at,
        guardian=guardian,
        children=children,
        consents=Table(
            title=_l("Consents"),
            columns=[
                _l("Child"),
                _l("Purpose"),
                _l("How"),
                _l("Given on"),
                _l("Given by"),
                _l("Withdrawn on"),
            ],
            rows=consent_rows,
        ),
        entries=entries,
        audit_events=Table(
            title=_l("Who viewed the documentation"),
            columns=[_l("Child"), _l("When"), _l("Who"), _l("Role"), _l("What")],
            rows=view_rows,
        ),
    )
