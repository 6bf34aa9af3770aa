"""Announcements: composed by staff (free text or from the phrasebook), addressed to a Kita,
groups or chosen families, translated into every recipient's language, and sent through the
push/e-mail outbox.

Life of an announcement: DRAFT (composed, previewed, corrected) → SCHEDULED (optional) → SENT →
RECALLED (optional). Sending writes, in the caller's transaction, the recipient rows (one per
guardian account, so siblings in different groups or Kitas give one row), a translation row per
recipient language and the outbox rows (``notify.enqueue``): a crash loses nothing and sends
nothing twice.

Translation: phrasebook texts are vetted and rendered per language without an engine (status
PHRASEBOOK). Free text goes through the ``Translator`` (translation memory first, then the
configured engine). With no engine or the engine down, the row keeps the original with status
PENDING: parents read the original with a notice, staff see the affected families
(``untranslated_recipients``) and the ``translations.retry`` job tries again with growing pauses.

Attachments (PDF, JPEG, PNG) are checked by signature and size; images are re-encoded (which
drops their metadata). Files and their names are encrypted with the announcement's own data key
(``KeyKind.ANNOUNCEMENT``, subject = the announcement id; see ``kita.services.attachments``)
and the file goes to the blob store.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from flask_babel import lazy_gettext as _l
from sqlalchemy import ColumnElement, Select, and_, event, exists, false, func, not_, or_, select
from sqlalchemy.orm import Session, SessionTransaction

from kita import audit
from kita.access import (
    Actor,
    announceable_children,
    announceable_groups,
    managed_kitas,
    may_announce_to_child,
    may_announce_to_group,
    may_announce_to_kita,
)
from kita.blobs import BlobStore
from kita.config import SUPPORTED_LOCALES
from kita.crypto import KeyService
from kita.errors import KitaError, ValidationError, describe_exception
from kita.models.accounts import Role, User
from kita.models.messaging import (
    Announcement,
    AnnouncementRecipient,
    AnnouncementStatus,
    AnnouncementTarget,
    AnnouncementTranslation,
    Attachment,
    Category,
    TranslationStatus,
)
from kita.models.organisation import Child, Group, GuardianLink, Kita
from kita.services import notify
from kita.services.attachments import (
    announcement_owner,
    decrypt_filename,
    encrypt_attachment,
    read_attachment_file,
)
from kita.services.organisation import PAGE_SIZE, Page
from kita.services.photos import normalise_image
from kita.services.translation import TranslationResult, Translator
from kita.translation import phrasebook

log = logging.getLogger("kita.announcements")

TITLE_MAX = 200
BODY_MAX = 5000
#: Translations may be longer than the original (the column allows 400 characters).
TRANSLATED_TITLE_MAX = 400
MAX_ATTACHMENTS = 5
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
#: How far ahead a message may be scheduled.
MAX_SCHEDULE_AHEAD = timedelta(days=366)
ZONE = ZoneInfo("Europe/Berlin")

#: Pauses between retries of an untranslated text: 2, 4, 8 ... minutes, at most six hours.
RETRY_BASE = timedelta(minutes=2)
RETRY_MAX = timedelta(hours=6)

CATEGORY_LABELS = {
    Category.INFORMATION: _l("Information"),
    Category.EVENT: _l("Event"),
    Category.CLOSURE: _l("Closure"),
    Category.HEALTH: _l("Health notice"),
    Category.URGENT: _l("Urgent"),
}
#: One pictogram per category (plain Unicode: no external assets).
CATEGORY_ICONS = {
    Category.INFORMATION: "\u2139\ufe0f",  # information source
    Category.EVENT: "\U0001f4c5",  # calendar
    Category.CLOSURE: "\U0001f6aa",  # door
    Category.HEALTH: "\U0001fa7a",  # stethoscope
    Category.URGENT: "\u26a0\ufe0f",  # warning sign
}
STATUS_LABELS = {
    AnnouncementStatus.DRAFT: _l("Draft"),
    AnnouncementStatus.SCHEDULED: _l("Scheduled"),
    AnnouncementStatus.SENT: _l("Sent"),
    AnnouncementStatus.RECALLED: _l("Recalled"),
}
TRANSLATION_STATUS_LABELS = {
    TranslationStatus.ORIGINAL: _l("Original"),
    TranslationStatus.PHRASEBOOK: _l("Phrasebook (checked text)"),
    TranslationStatus.MACHINE: _l("Machine translation"),
    TranslationStatus.MEMORY: _l("Machine translation (from memory)"),
    TranslationStatus.CORRECTED: _l("Corrected by staff"),
    TranslationStatus.PENDING: _l("Not translated yet"),
}
# When the parts of one text reached a language in different ways, the row shows the weakest.
_STATUS_RANK = (
    TranslationStatus.PENDING,
    TranslationStatus.MACHINE,
    TranslationStatus.MEMORY,
    TranslationStatus.CORRECTED,
    TranslationStatus.PHRASEBOOK,
    TranslationStatus.ORIGINAL,
)
_CORRECTABLE = frozenset(
    {
        TranslationStatus.MACHINE,
        TranslationStatus.MEMORY,
        TranslationStatus.CORRECTED,
        TranslationStatus.PENDING,
    }
)

_SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)


class AnnouncementStateError(KitaError):
    """The announcement is not in a state that allows this (sent twice, edited after recall)."""

    status = 409
    default_message = _l(
        "This message has changed in the meantime (sent, scheduled or recalled). "
        "Please reload the page."
    )


# --- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Audience:
    """Who an announcement is for: whole Kitas, groups, and single families (by child)."""

    kita_ids: tuple[uuid.UUID, ...] = ()
    group_ids: tuple[uuid.UUID, ...] = ()
    child_ids: tuple[uuid.UUID, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.kita_ids or self.group_ids or self.child_ids)


@dataclass(frozen=True)
class Upload:
    """An uploaded file as the browser sent it (name and bytes; its Content-Type is ignored)."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class AnnouncementInput:
    """What the compose form holds. ``phrase_key`` set: composed from the phrasebook, and
    ``title``/``body`` are ignored."""

    category: str
    source_locale: str
    audience: Audience
    title: str = ""
    body: str = ""
    phrase_key: str | None = None
    phrase_params: Mapping[str, str] = field(default_factory=dict)
    needs_interpreter: bool = False
    confirm_required: bool = False
    confirm_deadline: datetime | None = None
    scheduled_at: datetime | None = None


@dataclass(frozen=True)
class RecipientAddress:
    """One guardian account an announcement goes to, with the language it is shown in."""

    user_id: uuid.UUID
    kita_id: uuid.UUID
    locale: str


@dataclass(frozen=True)
class SendReport:
    recipients: int
    locales: dict[str, int]
    pending_locales: tuple[str, ...]


@dataclass(frozen=True)
class UntranslatedRecipient:
    """A family member who reads the original with a "not translated" notice."""

    user_id: uuid.UUID
    name: str
    locale: str


@dataclass(frozen=True)
class AttachmentFile:
    filename: str
    media_type: str
    data: bytes


# --- validation ------------------------------------------------------------------------------


def _check_text(
    errors: dict[str, object], name: str, value: str, limit: int, required: bool
) -> str:
    value = value.strip()
    if "\x00" in value:
        errors[name] = _l("This field contains characters that are not allowed.")
    elif required and not value:
        errors[name] = _l("This field is required.")
    elif len(value) > limit:
        errors[name] = _l("At most %(count)d characters are allowed.", count=limit)
    return value


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError("naive datetime given; use timezone-aware values")
    return value.astimezone(UTC) if value is not None else None


@dataclass(frozen=True)
class _Content:
    category: Category
    source_locale: str
    title: str
    body: str
    phrase_key: str | None
    phrase_params: dict[str, str] | None
    needs_interpreter: bool
    confirm_required: bool
    confirm_deadline: datetime | None
    scheduled_at: datetime | None


def _validate(data: AnnouncementInput, now: datetime, *, sent: bool = False) -> _Content:
    """Check the form's content (not its audience); every problem at once as field errors."""
    errors: dict[str, object] = {}
    category = Category(data.category) if data.category in set(Category) else None
    if category is None:
        errors["category"] = _l("Please choose one of the offered options.")
    source_locale = data.source_locale
    if source_locale not in SUPPORTED_LOCALES:
        errors["source_locale"] = _l("Please choose one of the offered options.")
        source_locale = "de"
    phrase_key = data.phrase_key or None
    params: dict[str, str] | None = None
    title = body = ""
    if phrase_key is not None:
        if phrase_key not in phrasebook.PHRASES:
            errors["phrase_key"] = _l("Please choose one of the offered options.")
        else:
            try:
                params = phrasebook.validate_params(phrase_key, data.phrase_params)
            except ValidationError as error:
                errors.update({f"param_{name}": text for name, text in error.fields.items()})
            else:
                rendered = phrasebook.render(phrase_key, params, source_locale)
                title, body = rendered.title[:TITLE_MAX], rendered.body[:BODY_MAX]
    else:
        title = _check_text(errors, "title", data.title, TITLE_MAX, required=True)
        body = _check_text(errors, "body", data.body, BODY_MAX, required=False)
    deadline = _aware(data.confirm_deadline) if data.confirm_required else None
    scheduled = None if sent else _aware(data.scheduled_at)
    if scheduled is not None and scheduled <= now:
        errors["scheduled_at"] = _l("Please choose a time in the future.")
    elif scheduled is not None and scheduled > now + MAX_SCHEDULE_AHEAD:
        errors["scheduled_at"] = _l("A message can be scheduled at most a year ahead.")
    if data.confirm_required:
        if deadline is None:
            errors["confirm_deadline"] = _l("Please give a deadline for the confirmation.")
        elif deadline <= (scheduled or now):
            errors["confirm_deadline"] = _l(
                "The deadline must be in the future (and after the scheduled time)."
            )
    if errors or category is None:
        raise ValidationError(errors)
    return _Content(
        category=category,
        source_locale=source_locale,
        title=title,
        body=body,
        phrase_key=phrase_key,
        phrase_params=params,
        needs_interpreter=data.needs_interpreter,
        confirm_required=data.confirm_required,
        confirm_deadline=deadline,
        scheduled_at=scheduled,
    )


def _audience_error() -> ValidationError:
    # The same message for ids that do not exist and ids outside the actor's reach: no probing.
    return ValidationError(
        {
            "audience": _l(
                "Please choose the recipients among the offered Kitas, groups and families."
            )
        }
    )


def _resolve_audience(
    db: Session, actor: Actor, audience: Audience
) -> tuple[list[AnnouncementTarget], set[uuid.UUID], uuid.UUID]:
    """Check that every part of the audience is within what the actor may write to and return
    the target rows (not added), the Kitas involved and the provider."""
    if not audience:
        raise ValidationError({"audience": _l("Please choose who should receive this message.")})
    targets: list[AnnouncementTarget] = []
    kitas: dict[uuid.UUID, Kita] = {}
    for kita_id in dict.fromkeys(audience.kita_ids):
        kita = db.get(Kita, kita_id)
        if kita is None or not may_announce_to_kita(actor, kita):
            raise _audience_error()
        kitas[kita.id] = kita
        targets.append(AnnouncementTarget(kita_id=kita.id))
    for group_id in dict.fromkeys(audience.group_ids):
        group = db.get(Group, group_id)
        if group is None or not may_announce_to_group(actor, group):
            raise _audience_error()
        kitas[group.kita_id] = group.kita
        targets.append(AnnouncementTarget(kita_id=group.kita_id, group_id=group.id))
    for child_id in dict.fromkeys(audience.child_ids):
        child = db.get(Child, child_id)
        if child is None or not may_announce_to_child(actor, child):
            raise _audience_error()
        kitas[child.kita_id] = child.kita
        targets.append(AnnouncementTarget(kita_id=child.kita_id, child_id=child.id))
    providers = {kita.provider_id for kita in kitas.values()}
    if len(providers) != 1:
        raise ValidationError(
            {"audience": _l("One message can only go to Kitas of the same provider.")}
        )
    return targets, set(kitas), providers.pop()


# --- drafts ----------------------------------------------------------------------------------


def _apply_content(announcement: Announcement, content: _Content) -> bool:
    """Copy validated content onto the row; True when the text (and so every translation)
    changed."""
    before = (
        announcement.title,
        announcement.body,
        announcement.source_locale,
        announcement.phrase_key,
        announcement.phrase_params,
    )
    announcement.category = content.category
    announcement.source_locale = content.source_locale
    announcement.title = content.title
    announcement.body = content.body
    announcement.phrase_key = content.phrase_key
    announcement.phrase_params = content.phrase_params
    announcement.needs_interpreter = content.needs_interpreter
    announcement.confirm_required = content.confirm_required
    announcement.confirm_deadline = content.confirm_deadline
    after = (
        content.title,
        content.body,
        content.source_locale,
        content.phrase_key,
        content.phrase_params,
    )
    return before != after


def create_draft(
    db: Session,
    *,
    actor: Actor,
    data: AnnouncementInput,
    now: datetime,
    keys: KeyService | None = None,
    blobs: BlobStore | None = None,
    uploads: Sequence[Upload] = (),
) -> Announcement:
    """Create a draft from the compose form.

    Raises ``ValidationError`` (422) for bad content, an audience outside the actor's reach
    (educators: their groups and those groups' families; leaders: their Kita; provider admins:
    Kitas of their provider) and unacceptable attachments, before anything is written.
    """
    content = _validate(data, now)
    targets, kita_ids, provider_id = _resolve_audience(db, actor, data.audience)
    checked = check_uploads(uploads)
    announcement = Announcement(
        id=uuid.uuid4(),
        provider_id=provider_id,
        kita_id=next(iter(kita_ids)) if len(kita_ids) == 1 else None,
        author_id=actor.id,
        status=AnnouncementStatus.DRAFT,
        scheduled_at=content.scheduled_at,
        created_at=now,
    )
    _apply_content(announcement, content)
    announcement.targets = targets
    db.add(announcement)
    db.flush()
    if checked:
        if keys is None or blobs is None:
            raise ValueError("attachments need a key service and a blob store")
        _store_attachments(db, keys, blobs, announcement, checked, now)
    audit.record(
        db,
        action="announcement.drafted",
        actor_id=actor.id,
        object_type="announcement",
        object_id=announcement.id,
        kita_id=announcement.kita_id,
        at=now,
    )
    return announcement


def update_announcement(
    db: Session,
    *,
    actor: Actor,
    announcement: Announcement,
    data: AnnouncementInput,
    now: datetime,
    translator: Translator | None = None,
    keys: KeyService | None = None,
    blobs: BlobStore | None = None,
    uploads: Sequence[Upload] = (),
    remove_attachments: Iterable[uuid.UUID] = (),
) -> Announcement:
    """Change a draft or scheduled message (everything), or a sent one (its text, the
    interpreter flag and the confirmation; audience, category and schedule stay).

    A sent message gets ``edited_at`` (parents see "edited"), is translated again for its
    recipients' languages (``translator`` required) and sends no new notification. A recalled
    message cannot be changed (409).
    """
    _lock(db, announcement)
    if announcement.status is AnnouncementStatus.RECALLED:
        raise AnnouncementStateError()
    sent = announcement.status is AnnouncementStatus.SENT
    content = _validate(
        data if not sent else _keep_category(data, announcement.category), now, sent=sent
    )
    if sent:
        changed = _apply_content(announcement, content)
        if changed:
            if translator is None:
                raise ValueError("editing a sent message needs a translator")
            announcement.edited_at = now
            _clear_translations(db, announcement)
            prepare_translations(
                db,
                announcement,
                translator,
                now=now,
                locales=list(recipient_locales(db, announcement)),
            )
        audit.record(
            db,
            action="announcement.edited",
            actor_id=actor.id,
            object_type="announcement",
            object_id=announcement.id,
            kita_id=announcement.kita_id,
            at=now,
        )
        db.flush()
        return announcement
    targets, kita_ids, provider_id = _resolve_audience(db, actor, data.audience)
    checked = check_uploads(uploads)
    removing = set(remove_attachments)
    kept = [a for a in attachments_of(db, announcement) if a.id not in removing]
    if len(kept) + len(checked) > MAX_ATTACHMENTS:
        raise _too_many_attachments()
    if _apply_content(announcement, content):
        _clear_translations(db, announcement)
    announcement.scheduled_at = content.scheduled_at
    # A scheduled message whose time is taken away goes back to being a draft.
    if content.scheduled_at is None:
        announcement.status = AnnouncementStatus.DRAFT
    announcement.provider_id = provider_id
    announcement.kita_id = next(iter(kita_ids)) if len(kita_ids) == 1 else None
    if _target_keys(announcement.targets) != _target_keys(targets):
        announcement.targets = targets
    db.flush()
    if removing:
        _remove_attachments(db, blobs, announcement, removing)
    if checked:
        if keys is None or blobs is None:
            raise ValueError("attachments need a key service and a blob store")
        _store_attachments(db, keys, blobs, announcement, checked, now)
    audit.record(
        db,
        action="announcement.updated",
        actor_id=actor.id,
        object_type="announcement",
        object_id=announcement.id,
        kita_id=announcement.kita_id,
        at=now,
    )
    db.flush()
    return announcement


def _keep_category(data: AnnouncementInput, category: Category) -> AnnouncementInput:
    return AnnouncementInput(
        category=category.value,
        source_locale=data.source_locale,
        audience=data.audience,
        title=data.title,
        body=data.body,
        phrase_key=data.phrase_key,
        phrase_params=data.phrase_params,
        needs_interpreter=data.needs_interpreter,
        confirm_required=data.confirm_required,
        confirm_deadline=data.confirm_deadline,
    )


def _target_keys(targets: Iterable[AnnouncementTarget]) -> set[tuple[object, ...]]:
    return {(t.kita_id, t.group_id, t.child_id) for t in targets}


def _lock(db: Session, announcement: Announcement) -> None:
    """Serialise state changes of one announcement (two clicks on "send" send once)."""
    db.flush()
    db.refresh(announcement, with_for_update=True)


def _clear_translations(db: Session, announcement: Announcement) -> None:
    announcement.translations.clear()
    db.flush()


def audience_of(announcement: Announcement) -> Audience:
    """The stored audience, in the form's terms."""
    targets = announcement.targets
    return Audience(
        kita_ids=tuple(t.kita_id for t in targets if t.group_id is None and t.child_id is None),
        group_ids=tuple(t.group_id for t in targets if t.group_id is not None),
        child_ids=tuple(t.child_id for t in targets if t.child_id is not None),
    )


# --- recipients ------------------------------------------------------------------------------


def _local_today(now: datetime) -> date:
    return now.astimezone(ZONE).date()


def resolve_recipients(
    db: Session, announcement: Announcement, now: datetime
) -> list[RecipientAddress]:
    """The guardian accounts of the targeted children, each once (siblings in several groups
    or Kitas give one address), active accounts only, children who have not left. The language
    is the account's setting, else the Kita's default."""
    conditions: list[ColumnElement[bool]] = []
    kita_ids = [
        t.kita_id for t in announcement.targets if t.group_id is None and t.child_id is None
    ]
    group_ids = [t.group_id for t in announcement.targets if t.group_id is not None]
    child_ids = [t.child_id for t in announcement.targets if t.child_id is not None]
    if kita_ids:
        conditions.append(Child.kita_id.in_(kita_ids))
    if group_ids:
        conditions.append(Child.group_id.in_(group_ids))
    if child_ids:
        conditions.append(Child.id.in_(child_ids))
    today = _local_today(now)
    rows = db.execute(
        select(GuardianLink.user_id, Child.kita_id, User.locale, Kita.default_locale)
        .join(Child, Child.id == GuardianLink.child_id)
        .join(User, User.id == GuardianLink.user_id)
        .join(Kita, Kita.id == Child.kita_id)
        .where(
            or_(*conditions) if conditions else false(),
            User.is_active.is_(True),
            or_(Child.leave_date.is_(None), Child.leave_date >= today),
        )
        .order_by(GuardianLink.user_id, Child.kita_id)
    )
    seen: dict[uuid.UUID, RecipientAddress] = {}
    for user_id, kita_id, user_locale, kita_locale in rows:
        if user_id in seen:
            continue
        locale = (
            user_locale
            if user_locale in SUPPORTED_LOCALES
            else kita_locale
            if kita_locale in SUPPORTED_LOCALES
            else "de"
        )
        seen[user_id] = RecipientAddress(user_id, kita_id, locale)
    return list(seen.values())


def recipient_locales(
    db: Session, announcement: Announcement, now: datetime | None = None
) -> dict[str, int]:
    """Languages of the recipients and how many read each: the stored recipients once sent,
    else the audience as it resolves now."""
    if announcement.status in {AnnouncementStatus.SENT, AnnouncementStatus.RECALLED}:
        counts = db.execute(
            select(AnnouncementRecipient.locale, func.count())
            .where(AnnouncementRecipient.announcement_id == announcement.id)
            .group_by(AnnouncementRecipient.locale)
        )
        return dict(sorted((locale, int(n)) for locale, n in counts))
    result: dict[str, int] = {}
    for address in resolve_recipients(db, announcement, now or datetime.now(UTC)):
        result[address.locale] = result.get(address.locale, 0) + 1
    return dict(sorted(result.items()))


# --- translation -----------------------------------------------------------------------------


def _weakest(results: Sequence[TranslationResult]) -> TranslationStatus:
    return min((r.status for r in results), key=_STATUS_RANK.index)


def _translate_into(
    announcement: Announcement, locale: str, translator: Translator
) -> tuple[str, str, TranslationStatus, str | None]:
    """Title, body, status and provider of the announcement in ``locale``."""
    if announcement.phrase_key is not None:
        rendered = phrasebook.render(
            announcement.phrase_key, announcement.phrase_params or {}, locale
        )
        return (
            rendered.title[:TRANSLATED_TITLE_MAX],
            rendered.body,
            TranslationStatus.PHRASEBOOK,
            None,
        )
    if locale == announcement.source_locale:
        return announcement.title, announcement.body, TranslationStatus.ORIGINAL, None
    texts = [announcement.title] + ([announcement.body] if announcement.body else [])
    results = translator.translate_many(texts, announcement.source_locale, locale)
    status = _weakest(results)
    if status is TranslationStatus.PENDING:
        return announcement.title, announcement.body, status, None
    providers = [r.provider for r in results if r.provider]
    return (
        results[0].text[:TRANSLATED_TITLE_MAX],
        results[1].text if len(results) > 1 else "",
        status,
        providers[0] if providers else None,
    )


def _back_translate(
    announcement: Announcement, row: AnnouncementTranslation, translator: Translator
) -> str | None:
    """The translation translated back into the author's language, for the staff preview
    (title and body in one engine call); None when the engine cannot do it now."""
    texts = [row.title] + ([row.body] if row.body else [])
    results = translator.translate_many(texts, row.locale, announcement.source_locale)
    if any(result.status is TranslationStatus.PENDING for result in results):
        return None
    return "\n\n".join(result.text for result in results)


def prepare_translations(
    db: Session,
    announcement: Announcement,
    translator: Translator,
    *,
    now: datetime,
    locales: Iterable[str] | None = None,
    back_translate: bool = False,
) -> list[AnnouncementTranslation]:
    """Make sure a translation row exists for each language (default: the recipients'
    languages plus the source language); retry PENDING ones. ``back_translate``: also fill
    in the back-translation of machine translations for the staff preview.

    Existing rows that are not PENDING are reused: a second preview or the send costs no
    engine call."""
    wanted = (
        sorted(set(locales))
        if locales is not None
        else sorted({announcement.source_locale, *recipient_locales(db, announcement, now)})
    )
    existing = {row.locale: row for row in announcement.translations}
    for locale in wanted:
        row = existing.get(locale)
        if row is None or row.status is TranslationStatus.PENDING:
            title, body, status, provider = _translate_into(announcement, locale, translator)
            if row is None:
                row = AnnouncementTranslation(
                    id=uuid.uuid4(), announcement_id=announcement.id, locale=locale, attempts=0
                )
                announcement.translations.append(row)
                existing[locale] = row
            row.title, row.body, row.status, row.provider = title, body, status, provider
            row.back_translation = None
            row.attempts = (row.attempts or 0) + (1 if status is TranslationStatus.PENDING else 0)
            row.updated_at = now
        if (
            back_translate
            and row.back_translation is None
            and row.status in {TranslationStatus.MACHINE, TranslationStatus.MEMORY}
        ):
            row.back_translation = _back_translate(announcement, row, translator)
    db.flush()
    return [existing[locale] for locale in wanted]


def translations_of(announcement: Announcement) -> list[AnnouncementTranslation]:
    return sorted(announcement.translations, key=lambda row: row.locale)


def correct_translation(
    db: Session,
    *,
    actor: Actor,
    announcement: Announcement,
    locale: str,
    title: str,
    body: str,
    translator: Translator,
    now: datetime,
) -> AnnouncementTranslation:
    """Replace a machine translation by staff's own; the correction also goes into the
    translation memory, so the same sentence is translated this way from now on.

    Phrasebook texts and originals cannot be corrected here (422); recalled messages not at
    all (409)."""
    if announcement.status is AnnouncementStatus.RECALLED:
        raise AnnouncementStateError()
    row = next((r for r in announcement.translations if r.locale == locale), None)
    if row is None or row.status not in _CORRECTABLE:
        raise ValidationError(
            {"locale": _l("This language has no machine translation that could be corrected.")}
        )
    errors: dict[str, object] = {}
    title = _check_text(errors, "title", title, TRANSLATED_TITLE_MAX, required=True)
    body = _check_text(errors, "body", body, BODY_MAX * 2, required=bool(announcement.body))
    if errors:
        raise ValidationError(errors)
    source = announcement.source_locale
    translator.correct(announcement.title, source, locale, title, actor.id)
    if announcement.body:
        translator.correct(announcement.body, source, locale, body, actor.id)
    row.title, row.body = title, body if announcement.body else ""
    row.status = TranslationStatus.CORRECTED
    row.corrected_by_id = actor.id
    row.back_translation = None
    row.updated_at = now
    audit.record(
        db,
        action="announcement.translation_corrected",
        actor_id=actor.id,
        object_type="announcement",
        object_id=announcement.id,
        kita_id=announcement.kita_id,
        detail=f"locale={locale}",
        at=now,
    )
    db.flush()
    return row


def untranslated_recipients(db: Session, announcement: Announcement) -> list[UntranslatedRecipient]:
    """Recipients (sent) or would-be recipients (draft) whose language has no translation yet:
    they read the original with a notice. For the staff page, to phone or print for them."""
    pending = {
        row.locale for row in announcement.translations if row.status is TranslationStatus.PENDING
    }
    # Only languages tried and failed: a draft not previewed yet has no rows at all.
    if not pending:
        return []
    if announcement.status in {AnnouncementStatus.SENT, AnnouncementStatus.RECALLED}:
        rows = db.execute(
            select(AnnouncementRecipient.user_id, User.display_name, AnnouncementRecipient.locale)
            .join(User, User.id == AnnouncementRecipient.user_id)
            .where(AnnouncementRecipient.announcement_id == announcement.id)
        ).all()
        people = [(user_id, name, locale) for user_id, name, locale in rows]
    else:
        addresses = resolve_recipients(db, announcement, datetime.now(UTC))
        names = dict(
            db.execute(
                select(User.id, User.display_name).where(
                    User.id.in_([a.user_id for a in addresses])
                )
            ).all()
        )
        people = [(a.user_id, names.get(a.user_id, ""), a.locale) for a in addresses]
    result = [
        UntranslatedRecipient(user_id, name, locale)
        for user_id, name, locale in people
        if locale in pending
    ]
    return sorted(result, key=lambda r: (r.locale, r.name.casefold(), str(r.user_id)))


def retry_delay(attempts: int) -> timedelta:
    """Pause before the next try after ``attempts`` failed ones (2, 4, 8 ... minutes, ≤ 6 h)."""
    exponent = min(max(attempts - 1, 0), 16)
    return min(RETRY_BASE * (2**exponent), RETRY_MAX)


def retry_pending_translations(
    db: Session, *, translator: Translator, now: datetime, limit: int = 200
) -> int:
    """Try again to translate PENDING announcement texts whose pause is over (the
    ``translations.retry`` job). Returns how many are translated now; failures count an
    attempt and wait longer. Recalled messages are left alone."""
    rows = db.scalars(
        select(AnnouncementTranslation)
        .join(Announcement, Announcement.id == AnnouncementTranslation.announcement_id)
        .where(
            AnnouncementTranslation.status == TranslationStatus.PENDING,
            Announcement.status != AnnouncementStatus.RECALLED,
        )
        .order_by(AnnouncementTranslation.updated_at)
        .limit(limit)
    ).all()
    done = 0
    for row in rows:
        if row.updated_at + retry_delay(row.attempts) > now:
            continue
        title, body, status, provider = _translate_into(row.announcement, row.locale, translator)
        row.updated_at = now
        if status is TranslationStatus.PENDING:
            row.attempts += 1
            continue
        row.title, row.body, row.status, row.provider = title, body, status, provider
        done += 1
    db.flush()
    return done


# --- sending ---------------------------------------------------------------------------------


def send(
    db: Session,
    announcement: Announcement,
    now: datetime,
    translator: Translator,
    keys: KeyService | None = None,
    *,
    actor: Actor | None = None,
    require_recipients: bool = True,
) -> SendReport:
    """Send now, in the caller's transaction: recipient rows (one per guardian account),
    translations for every recipient language, one outbox entry per device (``notify``), the
    status SENT and an audit event. Nothing is written when any step fails.

    Raises ``AnnouncementStateError`` (409) unless it is a draft or scheduled, and
    ``ValidationError`` when nobody would receive it (with ``require_recipients``)."""
    del keys  # the text is not encrypted; attachments were encrypted when uploaded
    _lock(db, announcement)
    if announcement.status not in {AnnouncementStatus.DRAFT, AnnouncementStatus.SCHEDULED}:
        raise AnnouncementStateError()
    addresses = resolve_recipients(db, announcement, now)
    if require_recipients and not addresses:
        raise ValidationError(
            {
                "audience": _l(
                    "Nobody would receive this message: no family in this audience has an "
                    "account yet."
                )
            }
        )
    locales: dict[str, int] = {}
    for address in addresses:
        locales[address.locale] = locales.get(address.locale, 0) + 1
    rows = prepare_translations(
        db, announcement, translator, now=now, locales=[announcement.source_locale, *locales]
    )
    db.add_all(
        AnnouncementRecipient(
            id=uuid.uuid4(),
            announcement_id=announcement.id,
            user_id=address.user_id,
            kita_id=address.kita_id,
            locale=address.locale,
            created_at=now,
        )
        for address in addresses
    )
    db.flush()
    notify.enqueue(
        db,
        message_id=announcement.id,
        kind="announcement",
        category=announcement.category.value,
        recipients=[notify.Recipient(a.user_id, a.locale) for a in addresses],
        url=f"/messages/a/{announcement.id}",
        now=now,
    )
    announcement.status = AnnouncementStatus.SENT
    announcement.sent_at = now
    audit.record(
        db,
        action="announcement.sent",
        actor_id=actor.id if actor is not None else announcement.author_id,
        object_type="announcement",
        object_id=announcement.id,
        kita_id=announcement.kita_id,
        detail=f"recipients={len(addresses)}",
        at=now,
    )
    db.flush()
    pending = tuple(r.locale for r in rows if r.status is TranslationStatus.PENDING)
    return SendReport(len(addresses), dict(sorted(locales.items())), pending)


def schedule(db: Session, *, actor: Actor, announcement: Announcement, now: datetime) -> None:
    """Queue a draft for its ``scheduled_at`` (the ``announcements.send_scheduled`` job sends
    it). 409 unless it is a draft; 422 when the time is missing or has passed."""
    _lock(db, announcement)
    if announcement.status is not AnnouncementStatus.DRAFT:
        raise AnnouncementStateError()
    if announcement.scheduled_at is None or announcement.scheduled_at <= now:
        raise ValidationError({"scheduled_at": _l("Please choose a time in the future.")})
    if not resolve_recipients(db, announcement, now):
        raise ValidationError(
            {
                "audience": _l(
                    "Nobody would receive this message: no family in this audience has an "
                    "account yet."
                )
            }
        )
    announcement.status = AnnouncementStatus.SCHEDULED
    audit.record(
        db,
        action="announcement.scheduled",
        actor_id=actor.id,
        object_type="announcement",
        object_id=announcement.id,
        kita_id=announcement.kita_id,
        at=now,
    )
    db.flush()


def send_due(db: Session, *, now: datetime, translator: Translator) -> int:
    """Send every scheduled announcement whose time has come (the job). Each one in its own
    savepoint, so one that fails does not hold back the others."""
    due = db.scalars(
        select(Announcement)
        .where(
            Announcement.status == AnnouncementStatus.SCHEDULED,
            Announcement.scheduled_at <= now,
        )
        .order_by(Announcement.scheduled_at)
        .limit(50)
    ).all()
    sent = 0
    for announcement in due:
        try:
            with db.begin_nested():
                send(db, announcement, now, translator, require_recipients=False)
        except Exception as error:
            # Logged without content; the next run tries again. The others still go out.
            log.error("scheduled announcement not sent: %s", describe_exception(error))
            continue
        sent += 1
    return sent


def recall(db: Session, *, actor: Actor, announcement: Announcement, now: datetime) -> Announcement:
    """Take a sent message back: parents see "recalled by the Kita" instead of its content and
    pending notifications are dropped. A scheduled one goes back to being a draft. 409 for
    drafts and messages already recalled."""
    _lock(db, announcement)
    if announcement.status is AnnouncementStatus.SCHEDULED:
        announcement.status = AnnouncementStatus.DRAFT
        action = "announcement.unscheduled"
    elif announcement.status is AnnouncementStatus.SENT:
        announcement.status = AnnouncementStatus.RECALLED
        announcement.recalled_at = now
        notify.cancel(db, announcement.id)
        action = "announcement.recalled"
    else:
        raise AnnouncementStateError()
    audit.record(
        db,
        action=action,
        actor_id=actor.id,
        object_type="announcement",
        object_id=announcement.id,
        kita_id=announcement.kita_id,
        at=now,
    )
    db.flush()
    return announcement


# --- attachments -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _CheckedUpload:
    filename: str
    media_type: str
    data: bytes


def _too_many_attachments() -> ValidationError:
    message = _l("A message can have at most %(count)d attachments.", count=MAX_ATTACHMENTS)
    return ValidationError({"attachments": message}, message)


def _clean_filename(name: str, media_type: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()[:120] or "attachment"
    if media_type == "image/jpeg" and not base.lower().endswith((".jpg", ".jpeg")):
        base = base.rsplit(".", 1)[0] + ".jpg"
    return base


def check_uploads(uploads: Sequence[Upload]) -> list[_CheckedUpload]:
    """Check every upload (PDF, JPEG or PNG by signature, at most 10 MB, at most five) and
    re-encode images as JPEG without metadata. Raises one ``ValidationError`` naming the file."""
    uploads = [u for u in uploads if u.filename or u.data]
    if len(uploads) > MAX_ATTACHMENTS:
        raise _too_many_attachments()
    checked: list[_CheckedUpload] = []
    for upload in uploads:
        name = _clean_filename(upload.filename, "")
        if len(upload.data) > MAX_ATTACHMENT_BYTES:
            message = _l("%(name)s is larger than 10 MB.", name=name)
            raise ValidationError({"attachments": message}, message)
        media_type = next(
            (kind for magic, kind in _SIGNATURES if upload.data.startswith(magic)), None
        )
        if media_type is None:
            message = _l(
                "%(name)s is not a PDF, JPEG or PNG file. Please attach only those.", name=name
            )
            raise ValidationError({"attachments": message}, message)
        data = upload.data
        if media_type != "application/pdf":
            try:
                data = normalise_image(upload.data).data
            except ValidationError:
                message = _l("%(name)s is damaged or not an image we can read.", name=name)
                raise ValidationError({"attachments": message}, message) from None
            media_type = "image/jpeg"
        checked.append(
            _CheckedUpload(_clean_filename(upload.filename, media_type), media_type, data)
        )
    return checked


def _store_attachments(
    db: Session,
    keys: KeyService,
    blobs: BlobStore,
    announcement: Announcement,
    checked: Sequence[_CheckedUpload],
    now: datetime,
) -> list[Attachment]:
    existing = len(attachments_of(db, announcement))
    if existing + len(checked) > MAX_ATTACHMENTS:
        raise _too_many_attachments()
    owner = announcement_owner(announcement)
    stored: list[Attachment] = []
    for upload in checked:
        attachment_id = uuid.uuid4()
        encrypted = encrypt_attachment(
            keys,
            blobs,
            owner,
            attachment_id=attachment_id,
            filename=upload.filename,
            data=upload.data,
        )
        row = Attachment(
            id=attachment_id,
            announcement_id=announcement.id,
            filename_ct=encrypted.filename_ct,
            media_type=upload.media_type,
            size=len(upload.data),
            blob_id=encrypted.blob_id,
            key_version=encrypted.key_version,
            created_at=now,
        )
        db.add(row)
        stored.append(row)
    db.flush()
    return stored


def _remove_attachments(
    db: Session, blobs: BlobStore | None, announcement: Announcement, ids: set[uuid.UUID]
) -> None:
    gone: list[str] = []
    for row in attachments_of(db, announcement):
        if row.id in ids:
            db.delete(row)
            gone.append(row.blob_id)
    db.flush()
    if blobs is not None and gone:
        _delete_blobs_after_commit(db, blobs, gone)


_BLOBS_TO_DELETE = "kita.announcement_blobs_to_delete"


def _delete_blobs_after_commit(db: Session, blobs: BlobStore, blob_ids: list[str]) -> None:
    """Delete files only once their rows are gone for good: a rolled-back request must not
    leave rows pointing at deleted files."""
    pending: list[tuple[BlobStore, str]] | None = db.info.get(_BLOBS_TO_DELETE)
    if pending is None:
        pending = db.info[_BLOBS_TO_DELETE] = []

        def committed(session: Session) -> None:
            while pending:
                store, blob_id = pending.pop()
                store.delete(blob_id)

        def rolled_back(session: Session, previous: SessionTransaction) -> None:
            if not previous.nested:
                pending.clear()

        event.listen(db, "after_commit", committed)
        event.listen(db, "after_soft_rollback", rolled_back)
    pending.extend((blobs, blob_id) for blob_id in blob_ids)


def attachments_of(db: Session, announcement: Announcement) -> list[Attachment]:
    return list(
        db.scalars(
            select(Attachment)
            .where(Attachment.announcement_id == announcement.id)
            .order_by(Attachment.created_at, Attachment.id)
        )
    )


def attachment_filename(
    keys: KeyService, announcement: Announcement, attachment: Attachment
) -> str:
    return decrypt_filename(keys, announcement_owner(announcement), attachment)


def read_attachment(
    keys: KeyService, blobs: BlobStore, announcement: Announcement, attachment: Attachment
) -> AttachmentFile:
    """The decrypted file. NO access check: the caller loaded the announcement through the
    access policy and checked that the attachment belongs to it."""
    if attachment.announcement_id != announcement.id:
        raise ValueError("attachment of another announcement")
    owner = announcement_owner(announcement)
    return AttachmentFile(
        decrypt_filename(keys, owner, attachment),
        attachment.media_type,
        read_attachment_file(keys, blobs, owner, attachment),
    )


# --- compose form --------------------------------------------------------------------------


@dataclass(frozen=True)
class ComposeOptions:
    """What the actor may choose as audience: whole Kitas (leaders, provider admins), groups
    and families, the latter by group."""

    kitas: list[Kita]
    groups: list[Group]
    children_by_group: dict[uuid.UUID | None, list[Child]]
    kita_names: dict[uuid.UUID, str]

    @property
    def several_kitas(self) -> bool:
        return len(self.kita_names) > 1


def compose_options(db: Session, actor: Actor) -> ComposeOptions:
    groups = list(db.scalars(announceable_groups(actor)))
    children = list(db.scalars(announceable_children(actor)))
    by_group: dict[uuid.UUID | None, list[Child]] = {}
    for child in children:
        by_group.setdefault(child.group_id, []).append(child)
    kitas = list(db.scalars(managed_kitas(actor)))
    kita_ids = {g.kita_id for g in groups} | {c.kita_id for c in children} | {k.id for k in kitas}
    names = dict(db.execute(select(Kita.id, Kita.name).where(Kita.id.in_(kita_ids))).all())
    return ComposeOptions(kitas, groups, by_group, names)


# --- lists for staff -------------------------------------------------------------------------


def staff_announcements_query(actor: Actor) -> Select[Announcement]:
    """Announcements the actor may manage (see ``kita.access.may_manage_announcement``),
    newest first."""
    conditions: list[ColumnElement[bool]] = []
    if actor.admin_provider_id is not None:
        conditions.append(Announcement.provider_id == actor.admin_provider_id)
    led = [kita_id for kita_id, roles in actor.roles.items() if Role.LEADER in roles]
    if led:
        conditions.append(Announcement.kita_id.in_(led))
    teaching = [kita_id for kita_id, roles in actor.roles.items() if Role.EDUCATOR in roles]
    if teaching and actor.group_ids:
        groups = list(actor.group_ids)
        outside = (
            select(AnnouncementTarget.id)
            .outerjoin(Child, Child.id == AnnouncementTarget.child_id)
            .where(
                AnnouncementTarget.announcement_id == Announcement.id,
                # Spelled out with IS NOT NULL: a whole-Kita target (NULLs) must count as
                # outside, and NOT (NULL IN ...) would be NULL, not true.
                not_(
                    or_(
                        and_(
                            AnnouncementTarget.group_id.is_not(None),
                            AnnouncementTarget.group_id.in_(groups),
                        ),
                        and_(
                            AnnouncementTarget.child_id.is_not(None),
                            Child.group_id.is_not(None),
                            Child.group_id.in_(groups),
                        ),
                    )
                ),
            )
        )
        any_target = select(AnnouncementTarget.id).where(
            AnnouncementTarget.announcement_id == Announcement.id
        )
        conditions.append(
            Announcement.kita_id.in_(teaching) & exists(any_target) & ~exists(outside)
        )
    return (
        select(Announcement)
        .where(or_(*conditions) if conditions else false())
        .order_by(Announcement.created_at.desc(), Announcement.id)
    )


def staff_announcements(
    db: Session, actor: Actor, *, status: AnnouncementStatus | None = None, page: int = 1
) -> Page[Announcement]:
    """One page of the staff list, optionally of one status."""
    query = staff_announcements_query(actor)
    if status is not None:
        query = query.where(Announcement.status == status)
    total = int(db.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0)
    page = max(1, min(page, math.ceil(total / PAGE_SIZE) or 1))
    items = list(db.scalars(query.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)))
    return Page(items, page, total)


def recipient_count(db: Session, announcement: Announcement) -> int:
    return int(
        db.scalar(
            select(func.count()).where(AnnouncementRecipient.announcement_id == announcement.id)
        )
        or 0
    )
