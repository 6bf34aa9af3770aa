"""The parent's feed: announcements received, confirmations due and the family's conversations,
and the message view with its read and confirm receipts.

A parent sees an announcement only through the recipient row its sending wrote (one per
guardian, so siblings in several groups still give one entry), once it is sent: drafts and
scheduled announcements never, recalled ones as "recalled" without their content. Texts are
shown in the parent's language when a usable translation exists; otherwise the original with a
"not translated yet" notice. The original is always part of the view.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, and_, bindparam, func, or_, select, update
from sqlalchemy.orm import Session

from kita import access
from kita.access import RECEIVED_STATUSES, Actor
from kita.blobs import BlobStore
from kita.config import RTL_LOCALES
from kita.crypto import KeyService
from kita.models.messaging import (
    Announcement,
    AnnouncementRecipient,
    AnnouncementStatus,
    AnnouncementTranslation,
    Attachment,
    Category,
    Conversation,
    ConversationMessage,
    ConversationRead,
    Team,
    TranslationStatus,
)
from kita.models.organisation import Child, Group, GuardianLink, Kita
from kita.services.announcements import CATEGORY_ICONS, CATEGORY_LABELS
from kita.services.attachments import (
    announcement_owner,
    decrypt_filename,
    read_attachment_file,
)
from kita.services.organisation import Page

PAGE_SIZE = 20
#: How many announcements and conversations the home page shows.
HOME_LIMIT = 5

#: Translations a parent may read instead of the original (PENDING is the original waiting).
USABLE_TRANSLATIONS = frozenset(
    {
        TranslationStatus.ORIGINAL,
        TranslationStatus.PHRASEBOOK,
        TranslationStatus.MACHINE,
        TranslationStatus.MEMORY,
        TranslationStatus.CORRECTED,
    }
)
MACHINE_TRANSLATIONS = frozenset({TranslationStatus.MACHINE, TranslationStatus.MEMORY})
#: Attachment types served with their own media type; anything else as a plain download.
SERVED_MEDIA_TYPES = frozenset({"application/pdf", "image/jpeg", "image/png", "image/webp"})


# --- texts -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageText:
    """A title and body in one language (``locale``), for ``lang`` and ``dir`` attributes."""

    title: str
    body: str
    locale: str

    @property
    def direction(self) -> str:
        return "rtl" if self.locale in RTL_LOCALES else "ltr"


@dataclass(frozen=True)
class LocalisedText:
    """What a parent reads (``shown``) and the original; flags for the notices."""

    shown: MessageText
    original: MessageText
    #: ``shown`` is a translation, so the original/translation switch is offered.
    translated: bool
    #: The parent reads another language but no translation exists yet (retried later).
    not_translated: bool
    #: ``shown`` was made by a translation engine, not a person or the phrasebook.
    machine: bool


def localise(
    announcement: Announcement,
    translations: Iterable[AnnouncementTranslation],
    locales: Sequence[str],
) -> LocalisedText:
    """The announcement's text for a reader of ``locales`` (the first is the reader's own
    language; the next ones are fallbacks, such as the language it was sent for)."""
    original = MessageText(announcement.title, announcement.body, announcement.source_locale)
    wanted = locales[0]
    if wanted == announcement.source_locale:
        return LocalisedText(original, original, False, False, False)
    usable = {t.locale: t for t in translations if t.status in USABLE_TRANSLATIONS}
    for locale in locales:
        if locale == announcement.source_locale:
            break
        found = usable.get(locale)
        if found is not None:
            shown = MessageText(found.title, found.body, found.locale)
            return LocalisedText(shown, original, True, False, found.status in MACHINE_TRANSLATIONS)
    return LocalisedText(original, original, False, True, False)


def _reader_locales(locale: str, recipient_locale: str) -> list[str]:
    return [locale] if recipient_locale == locale else [locale, recipient_locale]


def _translations_for(
    db: Session, announcement_ids: Sequence[uuid.UUID], locales: Iterable[str]
) -> dict[uuid.UUID, list[AnnouncementTranslation]]:
    found: dict[uuid.UUID, list[AnnouncementTranslation]] = {}
    if not announcement_ids:
        return found
    rows = db.scalars(
        select(AnnouncementTranslation).where(
            AnnouncementTranslation.announcement_id.in_(announcement_ids),
            AnnouncementTranslation.locale.in_(set(locales)),
        )
    )
    for row in rows:
        found.setdefault(row.announcement_id, []).append(row)
    return found


# --- the feed --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedEntry:
    """One announcement in a parent's feed. ``text`` is None once it was recalled."""

    id: uuid.UUID
    category: Category
    kita_name: str
    sent_at: datetime | None
    text: LocalisedText | None
    recalled: bool
    edited: bool
    read: bool
    confirm_required: bool
    confirmed_at: datetime | None
    confirm_deadline: datetime | None

    @property
    def category_label(self) -> object:
        return CATEGORY_LABELS[self.category]

    @property
    def category_icon(self) -> str:
        return CATEGORY_ICONS[self.category]


def _received(actor: Actor) -> Select:
    return (
        select(Announcement, AnnouncementRecipient, Kita.name)
        .join(
            AnnouncementRecipient,
            and_(
                AnnouncementRecipient.announcement_id == Announcement.id,
                AnnouncementRecipient.user_id == actor.id,
            ),
        )
        .join(Kita, Kita.id == AnnouncementRecipient.kita_id)
        .where(Announcement.status.in_(RECEIVED_STATUSES))
    )


def _newest_first(query: Select) -> Select:
    sent = func.coalesce(Announcement.sent_at, Announcement.created_at)
    return query.order_by(sent.desc(), Announcement.id)


def _entries(
    db: Session,
    rows: Sequence[tuple[Announcement, AnnouncementRecipient, str]],
    locale: str,
) -> list[FeedEntry]:
    locales = {locale} | {recipient.locale for _a, recipient, _k in rows}
    translations = _translations_for(db, [a.id for a, _r, _k in rows], locales)
    return [
        _entry(announcement, recipient, kita_name, translations.get(announcement.id, []), locale)
        for announcement, recipient, kita_name in rows
    ]


def _entry(
    announcement: Announcement,
    recipient: AnnouncementRecipient,
    kita_name: str,
    translations: Iterable[AnnouncementTranslation],
    locale: str,
) -> FeedEntry:
    recalled = announcement.status is AnnouncementStatus.RECALLED
    text = (
        None
        if recalled
        else localise(announcement, translations, _reader_locales(locale, recipient.locale))
    )
    return FeedEntry(
        id=announcement.id,
        category=announcement.category,
        kita_name=kita_name,
        sent_at=announcement.sent_at,
        text=text,
        recalled=recalled,
        edited=announcement.edited_at is not None and not recalled,
        read=recipient.read_at is not None,
        confirm_required=announcement.confirm_required and not recalled,
        confirmed_at=recipient.confirmed_at,
        confirm_deadline=announcement.confirm_deadline,
    )


def list_announcements(
    db: Session, actor: Actor, *, locale: str, page: int = 1, per_page: int = PAGE_SIZE
) -> Page[FeedEntry]:
    """The announcements the actor received, newest first, one page (numbered from 1)."""
    page = max(1, page)
    received = _received(actor)
    total = db.scalar(select(func.count()).select_from(received.subquery())) or 0
    rows = db.execute(_newest_first(received).limit(per_page).offset((page - 1) * per_page))
    return Page(items=_entries(db, list(rows), locale), number=page, total=total, per_page=per_page)


def confirmations_due(db: Session, actor: Actor, *, locale: str, now: datetime) -> list[FeedEntry]:
    """Sent announcements that ask the actor to confirm, not yet confirmed, whose deadline
    has not passed; the nearest deadline first (those without one last)."""
    query = (
        _received(actor)
        .where(
            Announcement.status == AnnouncementStatus.SENT,
            Announcement.confirm_required.is_(True),
            AnnouncementRecipient.confirmed_at.is_(None),
            or_(Announcement.confirm_deadline.is_(None), Announcement.confirm_deadline > now),
        )
        .order_by(
            Announcement.confirm_deadline.is_(None),
            Announcement.confirm_deadline,
            Announcement.sent_at,
        )
    )
    return _entries(db, list(db.execute(query)), locale)


@dataclass(frozen=True)
class ConversationSummary:
    """A conversation of the family, without its (encrypted) subject or text."""

    id: uuid.UUID
    child_first_name: str
    team: Team
    group_name: str
    kita_name: str
    last_message_at: datetime
    unread: int
    closed: bool


def _family_conversations() -> Select:
    # The custody check is a subquery, so the home page spends one round trip here.
    children = select(GuardianLink.child_id).where(
        GuardianLink.user_id == bindparam("user_id"), GuardianLink.has_custody.is_(True)
    )
    return (
        select(
            Conversation.id,
            Conversation.team,
            Conversation.last_message_at,
            Conversation.closed_at,
            Child.first_name,
            Group.name,
            Kita.name,
        )
        .join(Child, Child.id == Conversation.child_id)
        .join(Kita, Kita.id == Conversation.kita_id)
        .outerjoin(Group, Group.id == Conversation.group_id)
        .where(Conversation.child_id.in_(children))
        .order_by(Conversation.last_message_at.desc(), Conversation.id)
    )


_FAMILY_CONVERSATIONS = _family_conversations()


def conversation_summaries(
    db: Session, actor: Actor, *, limit: int | None = HOME_LIMIT
) -> list[ConversationSummary]:
    """Conversations about the actor's children (as a guardian with custody, the family side),
    latest activity first, with the number of messages by others the actor has not read."""
    if not actor.child_ids:
        return []
    query = _FAMILY_CONVERSATIONS if limit is None else _FAMILY_CONVERSATIONS.limit(limit)
    rows = list(db.execute(query, {"user_id": actor.id}))
    unread = _unread_counts(db, actor, [row[0] for row in rows])
    return [
        ConversationSummary(
            id=conversation_id,
            child_first_name=first_name,
            team=team,
            group_name=group_name or "",
            kita_name=kita_name,
            last_message_at=last_message_at,
            unread=unread.get(conversation_id, 0),
            closed=closed_at is not None,
        )
        for (
            conversation_id,
            team,
            last_message_at,
            closed_at,
            first_name,
            group_name,
            kita_name,
        ) in rows
    ]


def _unread_counts(
    db: Session, actor: Actor, conversation_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    if not conversation_ids:
        return {}
    query = (
        select(ConversationMessage.conversation_id, func.count())
        .outerjoin(
            ConversationRead,
            and_(
                ConversationRead.conversation_id == ConversationMessage.conversation_id,
                ConversationRead.user_id == actor.id,
            ),
        )
        .where(
            ConversationMessage.conversation_id.in_(conversation_ids),
            or_(ConversationMessage.author_id.is_(None), ConversationMessage.author_id != actor.id),
            or_(
                ConversationRead.read_at.is_(None),
                ConversationMessage.created_at > ConversationRead.read_at,
            ),
        )
        .group_by(ConversationMessage.conversation_id)
    )
    return {conversation_id: count for conversation_id, count in db.execute(query)}


@dataclass(frozen=True)
class Feed:
    """The parent's part of the home page."""

    confirmations: list[FeedEntry]
    announcements: list[FeedEntry]
    more_announcements: bool
    conversations: list[ConversationSummary]
    unread_announcements: int


def _feed_counts() -> Select:
    sent = Announcement.status == AnnouncementStatus.SENT
    waiting = and_(
        sent,
        Announcement.confirm_required.is_(True),
        AnnouncementRecipient.confirmed_at.is_(None),
        or_(
            Announcement.confirm_deadline.is_(None),
            Announcement.confirm_deadline > bindparam("now"),
        ),
    )
    return (
        select(
            func.count(),
            func.count().filter(and_(sent, AnnouncementRecipient.read_at.is_(None))),
            func.count().filter(waiting),
        )
        .select_from(AnnouncementRecipient)
        .join(Announcement, Announcement.id == AnnouncementRecipient.announcement_id)
        .where(
            AnnouncementRecipient.user_id == bindparam("user_id"),
            Announcement.status.in_(RECEIVED_STATUSES),
        )
    )


# Built once: the home page runs it on every view, and building a statement costs more than
# running it.
_FEED_COUNTS = _feed_counts()


def build_feed(db: Session, actor: Actor, *, locale: str, now: datetime) -> Feed:
    """Confirmations due, the latest announcements and the family's conversations."""
    # One aggregate first: how many messages the parent received, how many are unread and
    # how many wait for a confirmation. Most page views then need no further announcement
    # query (nothing received, or nothing to confirm).
    received, unread, to_confirm = db.execute(_FEED_COUNTS, {"user_id": actor.id, "now": now}).one()
    latest: list[FeedEntry] = []
    if received:
        rows = list(db.execute(_newest_first(_received(actor)).limit(HOME_LIMIT)))
        latest = _entries(db, rows, locale)
    return Feed(
        confirmations=confirmations_due(db, actor, locale=locale, now=now) if to_confirm else [],
        announcements=latest,
        more_announcements=received > HOME_LIMIT,
        conversations=conversation_summaries(db, actor),
        unread_announcements=unread or 0,
    )


# --- one message -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AttachmentInfo:
    id: uuid.UUID
    filename: str
    media_type: str
    size: int


@dataclass(frozen=True)
class MessageView:
    entry: FeedEntry
    attachments: list[AttachmentInfo]
    needs_interpreter: bool
    #: The deadline to confirm has passed (a confirmation is still recorded).
    deadline_passed: bool


def _mark(db: Session, recipient: AnnouncementRecipient, column: str, now: datetime) -> None:
    """Set a receipt timestamp once: a later request never moves it (conditional UPDATE, so
    two requests at once cannot both write)."""
    field = getattr(AnnouncementRecipient, column)
    db.execute(
        update(AnnouncementRecipient)
        .where(AnnouncementRecipient.id == recipient.id, field.is_(None))
        .values({column: now})
        .execution_options(synchronize_session=False)
    )


def open_announcement(
    db: Session,
    actor: Actor,
    keys: KeyService,
    announcement_id: uuid.UUID,
    *,
    locale: str,
    now: datetime,
) -> MessageView:
    """The announcement as its recipient reads it, marking it read (and delivered, if the
    push receipt did not arrive); 404 for anyone it was not sent to."""
    announcement, recipient = access.get_received_announcement(db, actor, announcement_id)
    _mark(db, recipient, "delivered_at", now)
    _mark(db, recipient, "read_at", now)
    db.refresh(recipient)
    kita_name = db.scalar(select(Kita.name).where(Kita.id == recipient.kita_id)) or ""
    translations = _translations_for(db, [announcement.id], {locale, recipient.locale})
    entry = _entry(
        announcement, recipient, kita_name, translations.get(announcement.id, []), locale
    )
    attachments: list[AttachmentInfo] = []
    if not entry.recalled:
        owner = announcement_owner(announcement)
        attachments = [
            AttachmentInfo(row.id, decrypt_filename(keys, owner, row), row.media_type, row.size)
            for row in db.scalars(
                select(Attachment)
                .where(Attachment.announcement_id == announcement.id)
                .order_by(Attachment.created_at, Attachment.id)
            )
        ]
    deadline = announcement.confirm_deadline
    return MessageView(
        entry=entry,
        attachments=attachments,
        needs_interpreter=announcement.needs_interpreter and not entry.recalled,
        deadline_passed=deadline is not None and deadline <= now,
    )


class ConfirmOutcome(enum.StrEnum):
    CONFIRMED = "confirmed"
    #: Confirmed before: the first timestamp stays.
    ALREADY = "already"
    NOT_REQUESTED = "not_requested"
    RECALLED = "recalled"


def confirm_announcement(
    db: Session, actor: Actor, announcement_id: uuid.UUID, *, now: datetime
) -> ConfirmOutcome:
    """Record the recipient's confirmation once; a replayed request keeps the first timestamp
    and is not an error. A confirmation after the deadline is still recorded (the Kita sees
    when it came). 404 for anyone the announcement was not sent to."""
    announcement, recipient = access.get_received_announcement(db, actor, announcement_id)
    if announcement.status is AnnouncementStatus.RECALLED:
        return ConfirmOutcome.RECALLED
    if not announcement.confirm_required:
        return ConfirmOutcome.NOT_REQUESTED
    done = db.execute(
        update(AnnouncementRecipient)
        .where(
            AnnouncementRecipient.id == recipient.id,
            AnnouncementRecipient.confirmed_at.is_(None),
        )
        .values(confirmed_at=now)
        .execution_options(synchronize_session=False)
    )
    # Confirming means it was read and delivered.
    _mark(db, recipient, "read_at", now)
    _mark(db, recipient, "delivered_at", now)
    return ConfirmOutcome.CONFIRMED if done.rowcount == 1 else ConfirmOutcome.ALREADY  # type: ignore[attr-defined]


@dataclass(frozen=True)
class AttachmentFile:
    filename: str
    media_type: str
    data: bytes


def read_attachment(
    db: Session,
    actor: Actor,
    keys: KeyService,
    blobs: BlobStore,
    announcement_id: uuid.UUID,
    attachment_id: uuid.UUID,
) -> AttachmentFile:
    """An announcement's attachment, decrypted, for its recipients (while not recalled) and the
    Kita's staff; 404 for everybody else and for ids that do not belong together."""
    announcement, attachment = access.get_announcement_attachment(
        db, actor, announcement_id, attachment_id
    )
    owner = announcement_owner(announcement)
    media_type = (
        attachment.media_type
        if attachment.media_type in SERVED_MEDIA_TYPES
        else "application/octet-stream"
    )
    return AttachmentFile(
        filename=decrypt_filename(keys, owner, attachment),
        media_type=media_type,
        data=read_attachment_file(keys, blobs, owner, attachment),
    )
