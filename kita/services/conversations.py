"""Conversations between the family of one child and a team of its Kita (the child's group team
or the Kita office), with attachments, translation both ways, read tracking and working hours.

Who takes part is decided by ``kita.access`` (``conversation_side``): the child's guardians with
custody on one side; the group's educators and the Kita's leaders (group team) or the leaders
alone (office) on the other. Nobody writes to a private person: parents see staff messages as
coming from "the team of group X" or "the Kita office"; the author is stored for the audit and
shown to colleagues only.

Everything a conversation says is encrypted with the conversation's own data key
(``KeyKind.CONVERSATION``, subject = the conversation id): the topic, every message body, every
translation, every attachment and its file name. The associated data names purpose, table,
column, row, conversation and Kita, so a ciphertext copied to another row does not decrypt.

Languages: a parent's message is language-detected (``kita.translation.detect``; the parent's
UI language when detection gives nothing) and translated into the Kita's language for staff; a
staff message is written in the Kita's language and translated into each guardian's language.
Translation goes through the provider WITHOUT the shared translation memory (the texts are
personal). When the engine is down the original is shown with a "not translated" note and the
worker job ``conversations.translate_retry`` translates later. A conversation flagged "needs
an interpreter" still stores machine translations, but pages show the original first and mark
the machine translation as unreliable.

Working hours (per Kita, per weekday, local time): outside them a parent's message does not
push to staff (they find it in the inbox next morning), and parents are told when the team
usually answers. A Kita without working hours is treated as always reachable.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import ColumnElement, and_, delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kita import audit
from kita.access import (
    Actor,
    ConversationSide,
    custodial_child_ids,
    get_conversation_attachment,
    may_staff_conversation,
    visible_conversations,
)
from kita.blobs import BlobStore
from kita.crypto import Context, DataKey, KeyKind, KeyService, decrypt, encrypt
from kita.errors import ValidationError
from kita.models.accounts import GroupAssignment, Membership, Role, User
from kita.models.messaging import (
    Attachment,
    Conversation,
    ConversationMessage,
    ConversationMessageTranslation,
    ConversationRead,
    Team,
    TranslationStatus,
    WorkingHours,
)
from kita.models.organisation import Child, Group, GuardianLink, Kita
from kita.services import attachments
from kita.services.lifecycle import LOCAL_TIMEZONE
from kita.services.organisation import Page
from kita.services.photos import normalise_image
from kita.services.translation import Translator
from kita.translation.detect import detect_language

BODY_MAX = 5_000
ATTACHMENT_MAX_BYTES = 10 * 1024 * 1024
ATTACHMENTS_PER_MESSAGE = 3
FILENAME_MAX = 100
INBOX_PAGE_SIZE = 20
#: A PENDING translation is retried this many times by the worker, then left as it is.
TRANSLATION_ATTEMPTS_MAX = 50

#: Purpose named in the associated data of every conversation ciphertext.
CRYPTO_PURPOSE = "conversation"

#: Topics offered when a conversation starts. A fixed list rather than a free subject line: it
#: reads in every language without machine translation, and says little about the family.
TOPICS: Mapping[str, object] = {
    "absence": _l("Absence or illness"),
    "pickup": _l("Pick-up"),
    "health": _l("Health"),
    "appointment": _l("Appointment"),
    "question": _l("Question"),
    "other": _l("Other"),
}

WEEKDAY_LABELS = (
    _l("Monday"),
    _l("Tuesday"),
    _l("Wednesday"),
    _l("Thursday"),
    _l("Friday"),
    _l("Saturday"),
    _l("Sunday"),
)

#: File signatures accepted for attachments: media type and the extension used on download.
_SIGNATURES: tuple[tuple[bytes, str, str], ...] = (
    (b"%PDF-", "application/pdf", "pdf"),
    (b"\xff\xd8\xff", "image/jpeg", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "image/png", "png"),
)
_UNSAFE_FILENAME = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]+")


def team_label(team: Team, group_name: str | None) -> object:
    """How a team appears to families: never a person."""
    if team is Team.GROUP and group_name:
        return _l("Team of group %(group)s", group=group_name)
    return _l("Kita office")


# --- encryption ------------------------------------------------------------------------------


def _context(
    conversation: Conversation, table: str, column: str, row_id: uuid.UUID, key_version: int
) -> Context:
    return Context(
        purpose=CRYPTO_PURPOSE,
        table=table,
        column=column,
        row_id=row_id,
        subject_id=conversation.id,
        kita_id=conversation.kita_id,
        key_version=key_version,
    )


def encrypt_for_conversation(
    keys: KeyService,
    conversation: Conversation,
    *,
    table: str,
    column: str,
    row_id: uuid.UUID,
    plaintext: bytes,
) -> tuple[bytes, int]:
    """Encrypt with the conversation's data key (created on first use), bound to the row.
    Returns the ciphertext and the key version to store next to it."""
    key = keys.data_key(conversation.id, KeyKind.CONVERSATION)
    context = _context(conversation, table, column, row_id, key.version)
    return encrypt(key, plaintext, context), key.version


def decrypt_for_conversation(
    keys: KeyService,
    conversation: Conversation,
    *,
    table: str,
    column: str,
    row_id: uuid.UUID,
    ciphertext: bytes,
    key_version: int,
    key: DataKey | None = None,
) -> bytes:
    """Counterpart of :func:`encrypt_for_conversation`; raises ``KeyNotFoundError`` when the key
    is gone (shredded) and ``DecryptionError`` when the ciphertext does not belong to this row."""
    if key is None:
        key = keys.data_key(conversation.id, KeyKind.CONVERSATION, create=False)
    return decrypt(key, ciphertext, _context(conversation, table, column, row_id, key_version))


def _decrypt_text(
    keys: KeyService,
    conversation: Conversation,
    table: str,
    column: str,
    row_id: uuid.UUID,
    ciphertext: bytes,
    key_version: int,
    key: DataKey | None = None,
) -> str:
    return decrypt_for_conversation(
        keys,
        conversation,
        table=table,
        column=column,
        row_id=row_id,
        ciphertext=ciphertext,
        key_version=key_version,
        key=key,
    ).decode()


# --- input -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Upload:
    """A file as it arrived: the name the browser gave and at most ``ATTACHMENT_MAX_BYTES + 1``
    bytes (the view reads one byte more, so an oversized file is recognised)."""

    filename: str
    data: bytes


@dataclass(frozen=True)
class CheckedUpload:
    filename: str
    media_type: str
    data: bytes


@dataclass(frozen=True)
class ConversationDraft:
    child_id: uuid.UUID
    team: Team
    topic: str
    body: str
    uploads: Sequence[Upload] = ()


def clean_body(raw: str, field_name: str = "body") -> str:
    """A message body: trimmed, not empty, at most ``BODY_MAX`` characters, no NUL."""
    body = raw.replace("\r\n", "\n").strip()
    if not body:
        raise ValidationError({field_name: _l("Please write a message.")})
    if "\x00" in body:
        raise ValidationError(
            {field_name: _l("This field contains characters that are not allowed.")}
        )
    if len(body) > BODY_MAX:
        raise ValidationError(
            {field_name: _l("At most %(count)d characters are allowed.", count=BODY_MAX)}
        )
    return body


def _clean_filename(raw: str, extension: str) -> str:
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = _UNSAFE_FILENAME.sub("_", name).strip(" ._") or "attachment"
    stem = name.rsplit(".", 1)[0] if "." in name else name
    stem = stem[: FILENAME_MAX - len(extension) - 1].strip(" ._") or "attachment"
    # The extension follows the content, whatever the name claimed.
    return f"{stem}.{extension}"


def check_uploads(uploads: Sequence[Upload]) -> list[CheckedUpload]:
    """PDF, JPEG or PNG by signature (never by name or Content-Type), each at most 10 MB, at
    most ``ATTACHMENTS_PER_MESSAGE``. Raises ``ValidationError`` on field ``files``."""
    if len(uploads) > ATTACHMENTS_PER_MESSAGE:
        raise ValidationError(
            {
                "files": _l(
                    "At most %(count)d files can be attached to one message.",
                    count=ATTACHMENTS_PER_MESSAGE,
                )
            }
        )
    checked: list[CheckedUpload] = []
    for upload in uploads:
        if not upload.data:
            raise ValidationError({"files": _l("An attached file is empty.")})
        if len(upload.data) > ATTACHMENT_MAX_BYTES:
            raise ValidationError(
                {"files": _l("A file is larger than 10 MB. Please attach a smaller one.")}
            )
        match = next((s for s in _SIGNATURES if upload.data.startswith(s[0])), None)
        if match is None:
            raise ValidationError(
                {"files": _l("Only PDF documents and JPEG or PNG images can be attached.")}
            )
        _signature, media_type, extension = match
        data = upload.data
        if media_type != "application/pdf":
            # Photos are re-encoded as JPEG: this drops their location and camera data.
            try:
                data = normalise_image(upload.data).data
            except ValidationError:
                name = _clean_filename(upload.filename, extension)
                raise ValidationError(
                    {"files": _l("%(name)s is damaged or not an image we can read.", name=name)}
                ) from None
            media_type, extension = "image/jpeg", "jpg"
        checked.append(CheckedUpload(_clean_filename(upload.filename, extension), media_type, data))
    return checked


# --- participants ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildChoice:
    """A child the actor may start a conversation about, and the teams to write to."""

    child: Child
    group_name: str | None
    teams: tuple[Team, ...]


def conversation_children(db: Session, actor: Actor) -> list[ChildChoice]:
    """Children the actor may start a conversation about: a parent's children (with custody),
    to the group team or the office; for educators the children of their groups (group team);
    for leaders every child of their Kita (either team)."""
    custodial = custodial_child_ids(db, actor)
    led = [kita_id for kita_id, roles in actor.roles.items() if Role.LEADER in roles]
    teaching = [kita_id for kita_id, roles in actor.roles.items() if Role.EDUCATOR in roles]
    conditions: list[ColumnElement[bool]] = []
    if custodial:
        conditions.append(Child.id.in_(custodial))
    if led:
        conditions.append(Child.kita_id.in_(led))
    if teaching and actor.group_ids:
        conditions.append(Child.group_id.in_(actor.group_ids) & Child.kita_id.in_(teaching))
    if not conditions:
        return []
    rows = db.execute(
        select(Child, Group.name)
        .outerjoin(Group, Group.id == Child.group_id)
        .where(or_(*conditions))
        .order_by(Child.first_name, Child.last_name, Child.id)
    ).all()
    choices: list[ChildChoice] = []
    for child, group_name in rows:
        teams: list[Team] = []
        family = child.id in custodial
        for team in (Team.GROUP, Team.OFFICE):
            if team is Team.GROUP and child.group_id is None:
                continue
            if family or may_staff_conversation(actor, child.kita_id, team, child.group_id):
                teams.append(team)
        if teams:
            choices.append(ChildChoice(child, group_name, tuple(teams)))
    return choices


def _user_locale(user: User, kita: Kita) -> str:
    return user.locale or kita.default_locale


def family_members(db: Session, conversation: Conversation) -> list[User]:
    """The child's guardians with custody, active accounts only."""
    return list(
        db.scalars(
            select(User)
            .join(GuardianLink, GuardianLink.user_id == User.id)
            .where(
                GuardianLink.child_id == conversation.child_id,
                GuardianLink.has_custody.is_(True),
                User.is_active.is_(True),
            )
            .order_by(User.id)
        )
    )


def team_members(db: Session, conversation: Conversation) -> list[User]:
    """Who is notified of a family's message: for a group team, the people assigned to the
    group (educators or leaders); the leaders when nobody is, and always for the office."""
    assigned: list[User] = []
    if conversation.team is Team.GROUP and conversation.group_id is not None:
        assigned = list(
            db.scalars(
                select(User)
                .join(GroupAssignment, GroupAssignment.user_id == User.id)
                .join(Membership, Membership.user_id == User.id)
                .where(
                    GroupAssignment.group_id == conversation.group_id,
                    Membership.kita_id == conversation.kita_id,
                    Membership.role.in_([Role.EDUCATOR, Role.LEADER]),
                    User.is_active.is_(True),
                )
                .distinct()
                .order_by(User.id)
            )
        )
    if assigned:
        return assigned
    return list(
        db.scalars(
            select(User)
            .join(Membership, Membership.user_id == User.id)
            .where(
                Membership.kita_id == conversation.kita_id,
                Membership.role == Role.LEADER,
                User.is_active.is_(True),
            )
            .order_by(User.id)
        )
    )


# --- working hours ---------------------------------------------------------------------------

#: Working hours by weekday (0 = Monday): local start and end.
Hours = Mapping[int, tuple[time, time]]


def working_hours(db: Session, kita_id: uuid.UUID) -> dict[int, tuple[time, time]]:
    """The Kita's working hours by weekday; empty when none are set (always reachable)."""
    return {
        row.weekday: (row.starts, row.ends)
        for row in db.scalars(select(WorkingHours).where(WorkingHours.kita_id == kita_id))
    }


def within_working_hours(hours: Hours, now: datetime) -> bool:
    """Whether ``now`` falls into the working hours (always, when none are set)."""
    if not hours:
        return True
    local = now.astimezone(LOCAL_TIMEZONE)
    day = hours.get(local.weekday())
    return day is not None and day[0] <= local.time().replace(tzinfo=None) < day[1]


def next_working_start(hours: Hours, now: datetime) -> datetime | None:
    """When the team usually answers next (local, aware): None within working hours or when no
    hours are set."""
    if within_working_hours(hours, now):
        return None
    local = now.astimezone(LOCAL_TIMEZONE)
    for offset in range(8):
        day = local.date() + timedelta(days=offset)
        span = hours.get(day.weekday())
        if span is None:
            continue
        start = datetime.combine(day, span[0], tzinfo=LOCAL_TIMEZONE)
        if start > local:
            return start
    return None


def save_working_hours(
    db: Session,
    *,
    actor: Actor,
    kita: Kita,
    hours: Mapping[int, tuple[time, time] | None],
    now: datetime,
) -> None:
    """Replace the Kita's working hours (the caller loaded ``kita`` with MANAGE access). Each
    weekday maps to (start, end) or None (closed). Raises ``ValidationError`` when a start is
    not before its end."""
    errors: dict[str, object] = {}
    for weekday, span in hours.items():
        if not 0 <= weekday <= 6:
            raise ValueError("weekday out of range")
        if span is not None and not span[0] < span[1]:
            errors[f"ends_{weekday}"] = _l("The end must be after the start.")
    if errors:
        raise ValidationError(errors)
    db.execute(delete(WorkingHours).where(WorkingHours.kita_id == kita.id))
    for weekday, span in sorted(hours.items()):
        if span is not None:
            db.add(WorkingHours(kita_id=kita.id, weekday=weekday, starts=span[0], ends=span[1]))
    db.flush()
    audit.record(
        db,
        action="conversations.working_hours",
        actor_id=actor.id,
        object_type="kita",
        object_id=kita.id,
        kita_id=kita.id,
        at=now,
    )


# --- writing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostResult:
    conversation: Conversation
    message: ConversationMessage
    #: For a family's message outside working hours: when the team usually answers (local).
    answer_expected_at: datetime | None = None
    #: Target languages whose translation failed (the worker retries them).
    pending_locales: tuple[str, ...] = ()


def start_conversation(
    db: Session,
    *,
    actor: Actor,
    keys: KeyService,
    blobs: BlobStore,
    translator: Translator,
    draft: ConversationDraft,
    writer_locale: str,
    now: datetime,
) -> PostResult:
    """Open a conversation about a child with a team and post its first message.

    ``writer_locale`` is the writer's UI language (the fallback when a parent's text gives no
    language). Raises ``ValidationError`` for a child or team the actor may not choose, an
    unknown topic, an empty or too long body or an unacceptable attachment; nothing is
    written then.
    """
    choice = next(
        (c for c in conversation_children(db, actor) if c.child.id == draft.child_id), None
    )
    errors: dict[str, object] = {}
    if choice is None:
        errors["child_id"] = _l("Please choose one of the offered options.")
    elif draft.team not in choice.teams:
        errors["team"] = _l("Please choose one of the offered options.")
    if draft.topic not in TOPICS:
        errors["topic"] = _l("Please choose one of the offered options.")
    try:
        body = clean_body(draft.body)
    except ValidationError as error:
        errors.update(error.fields)
        body = ""
    try:
        checked = check_uploads(draft.uploads)
    except ValidationError as error:
        errors.update(error.fields)
        checked = []
    if errors or choice is None:
        raise ValidationError(errors)
    child = choice.child
    side = (
        ConversationSide.FAMILY
        if child.id in custodial_child_ids(db, actor)
        else (ConversationSide.STAFF)
    )
    conversation = Conversation(
        id=uuid.uuid4(),
        kita_id=child.kita_id,
        child_id=child.id,
        team=draft.team,
        group_id=child.group_id if draft.team is Team.GROUP else None,
        subject_ct=b"",
        key_version=1,
        created_by_id=actor.id,
        created_at=now,
        last_message_at=now,
    )
    conversation.subject_ct, conversation.key_version = encrypt_for_conversation(
        keys,
        conversation,
        table="conversations",
        column="subject",
        row_id=conversation.id,
        plaintext=draft.topic.encode(),
    )
    db.add(conversation)
    db.flush()
    audit.record(
        db,
        action="conversation.started",
        actor_id=actor.id,
        object_type="conversation",
        object_id=conversation.id,
        kita_id=conversation.kita_id,
        detail=f"team={draft.team.value}",
        at=now,
    )
    return _post(
        db,
        actor=actor,
        side=side,
        keys=keys,
        blobs=blobs,
        translator=translator,
        conversation=conversation,
        body=body,
        uploads=checked,
        writer_locale=writer_locale,
        now=now,
    )


def post_message(
    db: Session,
    *,
    actor: Actor,
    side: ConversationSide,
    keys: KeyService,
    blobs: BlobStore,
    translator: Translator,
    conversation: Conversation,
    body: str,
    uploads: Sequence[Upload] = (),
    writer_locale: str,
    now: datetime,
) -> PostResult:
    """Reply in a conversation loaded through ``kita.access.get_conversation`` (``side`` as it
    answered). Raises ``ValidationError`` (fields ``body``, ``files``) and writes nothing then."""
    errors: dict[str, object] = {}
    try:
        text = clean_body(body)
    except ValidationError as error:
        errors.update(error.fields)
        text = ""
    try:
        checked = check_uploads(uploads)
    except ValidationError as error:
        errors.update(error.fields)
        checked = []
    if errors:
        raise ValidationError(errors)
    return _post(
        db,
        actor=actor,
        side=side,
        keys=keys,
        blobs=blobs,
        translator=translator,
        conversation=conversation,
        body=text,
        uploads=checked,
        writer_locale=writer_locale,
        now=now,
    )


def _post(
    db: Session,
    *,
    actor: Actor,
    side: ConversationSide,
    keys: KeyService,
    blobs: BlobStore,
    translator: Translator,
    conversation: Conversation,
    body: str,
    uploads: Sequence[CheckedUpload],
    writer_locale: str,
    now: datetime,
) -> PostResult:
    kita = db.get(Kita, conversation.kita_id)
    assert kita is not None  # noqa: S101 (a foreign key)
    staff_locale = kita.default_locale
    from_staff = side is ConversationSide.STAFF
    detected: str | None = None
    if from_staff:
        # Staff write in the Kita's language; a misdetected short German text would send
        # nonsense to every family, so staff messages are not guessed at.
        locale = staff_locale
    else:
        detected = detect_language(body)
        locale = detected or writer_locale
    family = family_members(db, conversation)
    team = team_members(db, conversation)
    if from_staff:
        targets = sorted({_user_locale(user, kita) for user in family} - {locale})
    else:
        targets = [staff_locale] if staff_locale != locale else []

    message = ConversationMessage(
        id=uuid.uuid4(),
        conversation_id=conversation.id,
        author_id=actor.id,
        from_staff=from_staff,
        body_ct=b"",
        key_version=1,
        locale=locale,
        detected=detected is not None,
        created_at=now,
    )
    message.body_ct, message.key_version = encrypt_for_conversation(
        keys,
        conversation,
        table="conversation_messages",
        column="body",
        row_id=message.id,
        plaintext=body.encode(),
    )
    db.add(message)
    db.flush()
    pending: list[str] = []
    for target in targets:
        result = translator.translate(body, locale, target)
        row = ConversationMessageTranslation(
            id=uuid.uuid4(),
            message_id=message.id,
            locale=target,
            status=result.status,
            provider=result.provider,
            attempts=1,
            updated_at=now,
        )
        if result.status is TranslationStatus.PENDING:
            pending.append(target)
        else:
            row.text_ct, row.key_version = encrypt_for_conversation(
                keys,
                conversation,
                table="conversation_message_translations",
                column="text",
                row_id=row.id,
                plaintext=result.text.encode(),
            )
        db.add(row)
    for upload in uploads:
        _store_attachment(
            db,
            keys=keys,
            blobs=blobs,
            conversation=conversation,
            message=message,
            upload=upload,
            now=now,
        )
    conversation.last_message_at = now
    mark_read(db, actor=actor, conversation=conversation, now=now)
    db.flush()
    audit.record(
        db,
        action="conversation.message",
        actor_id=actor.id,
        object_type="conversation",
        object_id=conversation.id,
        kita_id=conversation.kita_id,
        detail=f"message={message.id}",
        at=now,
    )
    hours = working_hours(db, conversation.kita_id)
    answer_expected_at = None if from_staff else next_working_start(hours, now)
    _notify(
        db,
        conversation=conversation,
        message=message,
        kita=kita,
        recipients=family if from_staff else team,
        author_id=actor.id,
        # Outside working hours staff get no push: the message waits in their inbox.
        skip=not from_staff and not within_working_hours(hours, now),
        now=now,
    )
    return PostResult(conversation, message, answer_expected_at, tuple(pending))


def _notify(
    db: Session,
    *,
    conversation: Conversation,
    message: ConversationMessage,
    kita: Kita,
    recipients: Iterable[User],
    author_id: uuid.UUID,
    skip: bool,
    now: datetime,
) -> None:
    from kita.services import notify

    if skip:
        return
    chosen = [
        notify.Recipient(user_id=user.id, locale=_user_locale(user, kita))
        for user in recipients
        if user.id != author_id
    ]
    if not chosen:
        return
    notify.enqueue(
        db,
        message_id=message.id,
        kind="conversation",
        category="conversation",
        recipients=chosen,
        url=f"/conversations/{conversation.id}",
        now=now,
    )


def _store_attachment(
    db: Session,
    *,
    keys: KeyService,
    blobs: BlobStore,
    conversation: Conversation,
    message: ConversationMessage,
    upload: CheckedUpload,
    now: datetime,
) -> Attachment:
    attachment_id = uuid.uuid4()
    stored = attachments.encrypt_attachment(
        keys,
        blobs,
        attachments.conversation_owner(conversation),
        attachment_id=attachment_id,
        filename=upload.filename,
        data=upload.data,
    )
    attachment = Attachment(
        id=attachment_id,
        message_id=message.id,
        filename_ct=stored.filename_ct,
        media_type=upload.media_type,
        size=len(upload.data),
        blob_id=stored.blob_id,
        key_version=stored.key_version,
        created_at=now,
    )
    db.add(attachment)
    return attachment


def set_needs_interpreter(
    db: Session, *, actor: Actor, conversation: Conversation, needed: bool, now: datetime
) -> None:
    """Flag (or unflag) a conversation as needing an interpreter. The caller loaded it with
    ``get_conversation(..., staff=True)``: only the team sets the flag."""
    if conversation.needs_interpreter == needed:
        return
    conversation.needs_interpreter = needed
    db.flush()
    audit.record(
        db,
        action="conversation.interpreter",
        actor_id=actor.id,
        object_type="conversation",
        object_id=conversation.id,
        kita_id=conversation.kita_id,
        detail="on" if needed else "off",
        at=now,
    )


def mark_read(db: Session, *, actor: Actor, conversation: Conversation, now: datetime) -> None:
    """Remember that the actor has read the conversation up to ``now``."""
    row = db.scalars(
        select(ConversationRead).where(
            ConversationRead.conversation_id == conversation.id,
            ConversationRead.user_id == actor.id,
        )
    ).first()
    if row is not None:
        row.read_at = max(row.read_at, now)
        return
    try:
        with db.begin_nested():
            db.add(ConversationRead(conversation_id=conversation.id, user_id=actor.id, read_at=now))
            db.flush()
    except IntegrityError:
        # The same person read it in another tab at the same moment: that row is as good.
        pass


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxRow:
    conversation: Conversation
    child_name: str
    team: object
    topic: object
    unread: int


def _unread_counts(
    db: Session,
    actor: Actor,
    conversation_ids: Sequence[uuid.UUID],
    side_by_id: Mapping[uuid.UUID, ConversationSide],
) -> dict[uuid.UUID, int]:
    if not conversation_ids:
        return {}
    rows = db.execute(
        select(ConversationMessage.conversation_id, ConversationMessage.from_staff, func.count())
        .outerjoin(
            ConversationRead,
            and_(
                ConversationRead.conversation_id == ConversationMessage.conversation_id,
                ConversationRead.user_id == actor.id,
            ),
        )
        .where(
            ConversationMessage.conversation_id.in_(conversation_ids),
            or_(
                ConversationRead.read_at.is_(None),
                ConversationMessage.created_at > ConversationRead.read_at,
            ),
        )
        .group_by(ConversationMessage.conversation_id, ConversationMessage.from_staff)
    ).all()
    counts: dict[uuid.UUID, int] = {}
    for conversation_id, from_staff, count in rows:
        # Unread are the other side's messages: a colleague's answer is not news to the team.
        staff_reader = side_by_id.get(conversation_id) is ConversationSide.STAFF
        if bool(from_staff) != staff_reader:
            counts[conversation_id] = counts.get(conversation_id, 0) + int(count)
    return counts


def _sides(
    db: Session, actor: Actor, conversations: Iterable[Conversation]
) -> dict[uuid.UUID, ConversationSide]:
    custodial = custodial_child_ids(db, actor)
    return {
        c.id: ConversationSide.FAMILY if c.child_id in custodial else ConversationSide.STAFF
        for c in conversations
    }


def topic_of(keys: KeyService, conversation: Conversation) -> object:
    """The conversation's topic label (decrypted)."""
    key = _decrypt_text(
        keys,
        conversation,
        "conversations",
        "subject",
        conversation.id,
        conversation.subject_ct,
        conversation.key_version,
    )
    return TOPICS.get(key, TOPICS["other"])


def inbox(db: Session, *, actor: Actor, keys: KeyService, page: int = 1) -> Page[InboxRow]:
    """The actor's conversations, newest activity first, with unread counts."""
    query = visible_conversations(db, actor)
    total = db.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    pages = max(1, -(-total // INBOX_PAGE_SIZE))
    page = max(1, min(page, pages))
    conversations = list(
        db.scalars(query.offset((page - 1) * INBOX_PAGE_SIZE).limit(INBOX_PAGE_SIZE))
    )
    sides = _sides(db, actor, conversations)
    unread = _unread_counts(db, actor, [c.id for c in conversations], sides)
    children = {
        child.id: child
        for child in db.scalars(
            select(Child).where(Child.id.in_({c.child_id for c in conversations}))
        )
    }
    groups = {
        group.id: group.name
        for group in db.scalars(
            select(Group).where(
                Group.id.in_({c.group_id for c in conversations if c.group_id is not None})
            )
        )
    }
    rows = [
        InboxRow(
            conversation=c,
            child_name=children[c.child_id].full_name,
            team=team_label(c.team, groups.get(c.group_id) if c.group_id else None),
            topic=topic_of(keys, c),
            unread=unread.get(c.id, 0),
        )
        for c in conversations
    ]
    return Page(rows, page, total, INBOX_PAGE_SIZE)


def unread_total(db: Session, actor: Actor) -> int:
    """Messages of the other side the actor has not seen yet, over all their conversations."""
    conversations = list(db.scalars(visible_conversations(db, actor)))
    sides = _sides(db, actor, conversations)
    return sum(_unread_counts(db, actor, [c.id for c in conversations], sides).values())


@dataclass(frozen=True)
class AttachmentView:
    id: uuid.UUID
    filename: str
    media_type: str
    size: int


@dataclass(frozen=True)
class MessageView:
    id: uuid.UUID
    created_at: datetime
    from_staff: bool
    mine: bool
    sender: object
    original: str
    original_locale: str
    #: The text in the reader's language (machine translation), if there is one.
    translation: str | None
    translation_locale: str | None
    #: In another language than the reader's and not (yet) translated: shown with a note.
    not_translated: bool
    attachments: list[AttachmentView] = field(default_factory=list)


@dataclass(frozen=True)
class ThreadView:
    conversation: Conversation
    side: ConversationSide
    child_name: str
    team: object
    topic: object
    reader_locale: str
    messages: list[MessageView]
    #: For families outside working hours: when the team usually answers (local time).
    answer_expected_at: datetime | None


def reader_locale(
    db: Session, actor: Actor, side: ConversationSide, conversation: Conversation, ui_locale: str
) -> str:
    """The language a reader sees translations in: the Kita's language for staff, the
    parent's own setting (else the UI language) for families."""
    if side is ConversationSide.STAFF:
        kita = db.get(Kita, conversation.kita_id)
        return kita.default_locale if kita is not None else ui_locale
    return actor.user.locale or ui_locale


def thread(
    db: Session,
    *,
    actor: Actor,
    side: ConversationSide,
    keys: KeyService,
    conversation: Conversation,
    ui_locale: str,
    now: datetime,
) -> ThreadView:
    """The whole conversation for a participant, decrypted, each message in the reader's
    language where a translation exists. Marks the conversation read."""
    locale = reader_locale(db, actor, side, conversation, ui_locale)
    key = keys.data_key(conversation.id, KeyKind.CONVERSATION, create=False)
    messages = list(
        db.scalars(
            select(ConversationMessage)
            .where(ConversationMessage.conversation_id == conversation.id)
            .order_by(ConversationMessage.created_at, ConversationMessage.id)
        )
    )
    ids = [m.id for m in messages]
    translations = (
        {
            row.message_id: row
            for row in db.scalars(
                select(ConversationMessageTranslation).where(
                    ConversationMessageTranslation.message_id.in_(ids),
                    ConversationMessageTranslation.locale == locale,
                )
            )
        }
        if ids
        else {}
    )
    files_by_message: dict[uuid.UUID, list[AttachmentView]] = {}
    owner = attachments.conversation_owner(conversation)
    if ids:
        for attachment in db.scalars(
            select(Attachment)
            .where(Attachment.message_id.in_(ids))
            .order_by(Attachment.created_at, Attachment.id)
        ):
            assert attachment.message_id is not None  # noqa: S101 (filtered above)
            name = attachments.decrypt_filename(keys, owner, attachment)
            files_by_message.setdefault(attachment.message_id, []).append(
                AttachmentView(attachment.id, name, attachment.media_type, attachment.size)
            )
    authors = {
        user.id: user
        for user in db.scalars(
            select(User).where(User.id.in_({m.author_id for m in messages if m.author_id}))
        )
    }
    group_name = None
    if conversation.group_id is not None:
        group = db.get(Group, conversation.group_id)
        group_name = group.name if group is not None else None
    team = team_label(conversation.team, group_name)
    views: list[MessageView] = []
    for message in messages:
        original = _decrypt_text(
            keys,
            conversation,
            "conversation_messages",
            "body",
            message.id,
            message.body_ct,
            message.key_version,
            key,
        )
        author = authors.get(message.author_id) if message.author_id else None
        mine = message.author_id == actor.id
        if message.from_staff:
            # Families see the team; colleagues also see who wrote it.
            sender: object = team
            if side is ConversationSide.STAFF and author is not None:
                sender = f"{team} ({author.display_name})"
        else:
            sender = _l("You") if mine else (author.display_name if author else _l("Family"))
        translation_text: str | None = None
        translation_locale: str | None = None
        not_translated = False
        if message.locale != locale:
            row = translations.get(message.id)
            if row is not None and row.text_ct is not None and row.key_version is not None:
                translation_text = _decrypt_text(
                    keys,
                    conversation,
                    "conversation_message_translations",
                    "text",
                    row.id,
                    row.text_ct,
                    row.key_version,
                    key,
                )
                translation_locale = row.locale
            elif not mine:
                not_translated = True
        views.append(
            MessageView(
                id=message.id,
                created_at=message.created_at,
                from_staff=message.from_staff,
                mine=mine,
                sender=sender,
                original=original,
                original_locale=message.locale,
                translation=translation_text,
                translation_locale=translation_locale,
                not_translated=not_translated,
                attachments=files_by_message.get(message.id, []),
            )
        )
    child = db.get(Child, conversation.child_id)
    answer_expected_at = None
    if side is ConversationSide.FAMILY:
        answer_expected_at = next_working_start(working_hours(db, conversation.kita_id), now)
    mark_read(db, actor=actor, conversation=conversation, now=now)
    return ThreadView(
        conversation=conversation,
        side=side,
        child_name=child.full_name if child is not None else "",
        team=team,
        topic=topic_of(keys, conversation),
        reader_locale=locale,
        messages=views,
        answer_expected_at=answer_expected_at,
    )


@dataclass(frozen=True)
class AttachmentFile:
    filename: str
    media_type: str
    data: bytes


def read_attachment(
    db: Session,
    *,
    actor: Actor,
    keys: KeyService,
    blobs: BlobStore,
    conversation_id: uuid.UUID,
    attachment_id: uuid.UUID,
) -> AttachmentFile:
    """An attachment's bytes for a participant of its conversation; 404 for everyone else."""
    attachment, conversation, _side = get_conversation_attachment(
        db, actor, conversation_id, attachment_id
    )
    owner = attachments.conversation_owner(conversation)
    data = attachments.read_attachment_file(keys, blobs, owner, attachment)
    name = attachments.decrypt_filename(keys, owner, attachment)
    return AttachmentFile(name, attachment.media_type, data)


# --- retrying translations (worker) ----------------------------------------------------------


def retry_pending_translations(
    db: Session, *, keys: KeyService, translator: Translator, now: datetime, limit: int = 100
) -> int:
    """Translate conversation messages whose translation failed earlier. Stops at the first
    failure (the engine is still down: the next run tries again). Returns how many were
    translated now."""
    rows = db.execute(
        select(ConversationMessageTranslation, ConversationMessage, Conversation)
        .join(
            ConversationMessage, ConversationMessage.id == ConversationMessageTranslation.message_id
        )
        .join(Conversation, Conversation.id == ConversationMessage.conversation_id)
        .where(
            ConversationMessageTranslation.status == TranslationStatus.PENDING,
            ConversationMessageTranslation.attempts < TRANSLATION_ATTEMPTS_MAX,
        )
        .order_by(ConversationMessageTranslation.updated_at, ConversationMessageTranslation.id)
        .limit(limit)
        .with_for_update(skip_locked=True, of=ConversationMessageTranslation)
    ).all()
    done = 0
    for row, message, conversation in rows:
        text = _decrypt_text(
            keys,
            conversation,
            "conversation_messages",
            "body",
            message.id,
            message.body_ct,
            message.key_version,
        )
        result = translator.translate(text, message.locale, row.locale)
        row.attempts += 1
        row.updated_at = now
        if result.status is TranslationStatus.PENDING:
            break
        row.text_ct, row.key_version = encrypt_for_conversation(
            keys,
            conversation,
            table="conversation_message_translations",
            column="text",
            row_id=row.id,
            plaintext=result.text.encode(),
        )
        row.status = result.status
        row.provider = result.provider
        done += 1
    db.flush()
    return done


# --- erasure ---------------------------------------------------------------------------------


def erasure_targets_for_child(
    db: Session, child_id: uuid.UUID
) -> tuple[list[uuid.UUID], list[str]]:
    """What shredding a child must also destroy besides the rows (which cascade with the child):
    the ids of the child's conversations (each is the subject of a CONVERSATION data key, to
    pass to ``KeyService.shred``) and the blob ids of their attachments."""
    conversation_ids = list(
        db.scalars(select(Conversation.id).where(Conversation.child_id == child_id))
    )
    if not conversation_ids:
        return [], []
    blob_ids = list(
        db.scalars(
            select(Attachment.blob_id)
            .join(ConversationMessage, ConversationMessage.id == Attachment.message_id)
            .where(ConversationMessage.conversation_id.in_(conversation_ids))
        )
    )
    return conversation_ids, blob_ids
