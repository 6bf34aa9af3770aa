"""Test data factories: each creates rows and commits, returning the model."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

import pyotp
from sqlalchemy.orm import Session

from kita.models.accounts import GroupAssignment, Membership, Role, User
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
from kita.models.organisation import Child, Group, GuardianLink, Kita, Provider, Relation
from kita.services.accounts import make_password_hasher

PASSWORD = "correct horse battery"
TOTP_SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
_hasher = make_password_hasher("test")
_PASSWORD_HASH = _hasher.hash(PASSWORD)
_counter = itertools.count(1)


def _n() -> int:
    return next(_counter)


def make_provider(db: Session, name: str | None = None) -> Provider:
    provider = Provider(id=uuid.uuid4(), name=name or f"Träger {_n()}")
    db.add(provider)
    db.commit()
    return provider


def make_kita(
    db: Session,
    provider: Provider | None = None,
    name: str | None = None,
    default_locale: str = "de",
) -> Kita:
    provider = provider or make_provider(db)
    kita = Kita(
        id=uuid.uuid4(),
        provider_id=provider.id,
        name=name or f"Kita {_n()}",
        default_locale=default_locale,
    )
    db.add(kita)
    db.commit()
    return kita


def make_group(db: Session, kita: Kita, name: str | None = None) -> Group:
    group = Group(id=uuid.uuid4(), kita_id=kita.id, name=name or f"Gruppe {_n()}")
    db.add(group)
    db.commit()
    return group


def make_child(
    db: Session, group: Group, first_name: str | None = None, last_name: str = "Muster"
) -> Child:
    child = Child(
        id=uuid.uuid4(),
        kita_id=group.kita_id,
        group_id=group.id,
        first_name=first_name or f"Kind{_n()}",
        last_name=last_name,
        birth_date=date(2021, 5, 1),
    )
    db.add(child)
    db.commit()
    return child


def make_user(
    db: Session,
    *,
    email: str | None = None,
    name: str | None = None,
    roles: Iterable[tuple[Kita, Role]] = (),
    groups: Iterable[Group] = (),
    children: Iterable[Child] = (),
    admin_of: Provider | None = None,
    totp: bool | None = None,
    locale: str | None = None,
    active: bool = True,
) -> User:
    """A user with roles. Staff and admins get TOTP enrolled (secret ``TOTP_SECRET``)."""
    roles = list(roles)
    number = _n()
    user = User(
        id=uuid.uuid4(),
        email=email or f"user{number}@example.org",
        display_name=name or f"Person {number}",
        password_hash=_PASSWORD_HASH,
        admin_of_provider_id=admin_of.id if admin_of else None,
        locale=locale,
        is_active=active,
    )
    staff = admin_of is not None or any(
        role in {Role.LEADER, Role.EDUCATOR, Role.CARETAKER} for _, role in roles
    )
    if totp if totp is not None else staff:
        user.totp_secret = TOTP_SECRET
        user.totp_enabled_at = datetime.now(UTC)
    db.add(user)
    db.flush()
    for kita, role in roles:
        db.add(Membership(user_id=user.id, kita_id=kita.id, role=role))
    for group in groups:
        db.add(GroupAssignment(user_id=user.id, group_id=group.id))
    for child in children:
        db.add(GuardianLink(child_id=child.id, user_id=user.id, relation=Relation.MOTHER))
    db.commit()
    return user


def totp_now(secret: str = TOTP_SECRET, offset: int = 0) -> str:
    totp = pyotp.TOTP(secret)
    return totp.at(datetime.now(UTC), counter_offset=offset)


# --- messaging -------------------------------------------------------------------------------


def make_announcement(
    db: Session,
    kita: Kita,
    author: User,
    *,
    recipients: Iterable[User | tuple[User, str]] = (),
    translations: dict[str, tuple[str, str] | tuple[str, str, str]] | None = None,
    title: str = "Morgen geschlossen",
    body: str = "Die Kita bleibt morgen wegen einer Fortbildung geschlossen.",
    groups: Iterable[Group] = (),
    children: Iterable[Child] = (),
    category: str = "information",
    status: str = "sent",
    source_locale: str = "de",
    confirm_required: bool = False,
    confirm_deadline: datetime | None = None,
    sent_at: datetime | None = None,
    edited_at: datetime | None = None,
    needs_interpreter: bool = False,
) -> Announcement:
    """An announcement with its audience rows, written directly (no send logic): targets are
    the given groups and children (the whole Kita when none), one recipient row per user
    (``(user, locale)`` or the user's own locale), translations ``{locale: (title, body)}`` or
    ``(title, body, status)``."""
    now = datetime.now(UTC)
    the_status = AnnouncementStatus(status)
    announcement = Announcement(
        id=uuid.uuid4(),
        provider_id=kita.provider_id,
        kita_id=kita.id,
        author_id=author.id,
        category=Category(category),
        status=the_status,
        source_locale=source_locale,
        title=title,
        body=body,
        needs_interpreter=needs_interpreter,
        confirm_required=confirm_required,
        confirm_deadline=confirm_deadline,
        sent_at=sent_at
        or (now if the_status in {AnnouncementStatus.SENT, AnnouncementStatus.RECALLED} else None),
        edited_at=edited_at,
        recalled_at=now if the_status is AnnouncementStatus.RECALLED else None,
        created_at=now,
    )
    db.add(announcement)
    db.flush()
    groups, children = list(groups), list(children)
    for group in groups:
        db.add(
            AnnouncementTarget(announcement_id=announcement.id, kita_id=kita.id, group_id=group.id)
        )
    for child in children:
        db.add(
            AnnouncementTarget(announcement_id=announcement.id, kita_id=kita.id, child_id=child.id)
        )
    if not groups and not children:
        db.add(AnnouncementTarget(announcement_id=announcement.id, kita_id=kita.id))
    for item in recipients:
        user, locale = item if isinstance(item, tuple) else (item, item.locale or "de")
        db.add(
            AnnouncementRecipient(
                announcement_id=announcement.id, user_id=user.id, kita_id=kita.id, locale=locale
            )
        )
    for locale, texts in (translations or {}).items():
        status_value = texts[2] if len(texts) == 3 else "machine"  # type: ignore[misc]
        db.add(
            AnnouncementTranslation(
                announcement_id=announcement.id,
                locale=locale,
                title=texts[0],
                body=texts[1],
                status=TranslationStatus(status_value),
                provider="test",
            )
        )
    db.commit()
    return announcement


def make_announcement_attachment(
    db: Session,
    keys: Any,
    blobs: Any,
    announcement: Announcement,
    *,
    filename: str = "Elternbrief.pdf",
    data: bytes = b"%PDF-1.4 test attachment",
    media_type: str = "application/pdf",
) -> Attachment:
    """An encrypted attachment of ``announcement`` (file in the blob store ``blobs``)."""
    from kita.services.attachments import announcement_owner, encrypt_attachment

    attachment_id = uuid.uuid4()
    stored = encrypt_attachment(
        keys,
        blobs,
        announcement_owner(announcement),
        attachment_id=attachment_id,
        filename=filename,
        data=data,
    )
    attachment = Attachment(
        id=attachment_id,
        announcement_id=announcement.id,
        filename_ct=stored.filename_ct,
        media_type=media_type,
        size=len(data),
        blob_id=stored.blob_id,
        key_version=stored.key_version,
    )
    db.add(attachment)
    db.commit()
    return attachment
