"""Messaging: announcements with their translations and per-family reach, conversations between a
family and a Kita team, push subscriptions and the delivery outboxes (push and e-mail), the
translation memory, staff working hours and shared staff tablets.

What stays readable is what addressing, access checks and reach need. Conversation bodies and
their translations are ciphertexts (``*_ct``) made with the conversation's data key; announcement
texts are addressed to many families at once and are kept readable so they can be translated
through the shared memory (a conversation's text never enters that memory).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime, time
from typing import Any

from sqlalchemy import (
    JSON,
    Enum,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kita.db import Base, new_id, utcnow


def _str_enum(enum_cls: type[enum.StrEnum], length: int = 16) -> Enum:
    return Enum(
        enum_cls, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e]
    )


class Category(enum.StrEnum):
    """Announcement categories; the same names as ``kita.push.payload.CATEGORIES``."""

    INFORMATION = "information"
    EVENT = "event"
    CLOSURE = "closure"
    HEALTH = "health"
    URGENT = "urgent"


class AnnouncementStatus(enum.StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENT = "sent"
    RECALLED = "recalled"


class TranslationStatus(enum.StrEnum):
    """How a text reached a language: the original, the phrasebook, an engine, a person."""

    ORIGINAL = "original"
    PHRASEBOOK = "phrasebook"
    MACHINE = "machine"
    MEMORY = "memory"
    CORRECTED = "corrected"
    # No provider, or the engine was down: the original is shown with a notice; retried later.
    PENDING = "pending"


class Team(enum.StrEnum):
    GROUP = "group"
    OFFICE = "office"


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    GONE = "gone"
    ALERT = "alert"
    SKIPPED = "skipped"


class Announcement(Base):
    __tablename__ = "announcements"
    __table_args__ = (Index("ix_announcements_status_scheduled", "status", "scheduled_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("providers.id"), index=True)
    # The Kita it was written for; NULL when a provider admin wrote to several Kitas.
    kita_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("kitas.id"), index=True)
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    category: Mapped[Category] = mapped_column(_str_enum(Category))
    status: Mapped[AnnouncementStatus] = mapped_column(
        _str_enum(AnnouncementStatus), default=AnnouncementStatus.DRAFT
    )
    source_locale: Mapped[str] = mapped_column(String(8), default="de")
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    # Composed from the phrasebook: the phrase key and its placeholder values.
    phrase_key: Mapped[str | None] = mapped_column(String(64))
    phrase_params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    needs_interpreter: Mapped[bool] = mapped_column(default=False)
    confirm_required: Mapped[bool] = mapped_column(default=False)
    confirm_deadline: Mapped[datetime | None]
    scheduled_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    edited_at: Mapped[datetime | None]
    recalled_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    targets: Mapped[list[AnnouncementTarget]] = relationship(
        back_populates="announcement", cascade="all, delete-orphan"
    )
    translations: Mapped[list[AnnouncementTranslation]] = relationship(
        back_populates="announcement", cascade="all, delete-orphan"
    )


class AnnouncementTarget(Base):
    """One part of the audience: a whole Kita (group and child NULL), a group, or one family
    (the child's guardians)."""

    __tablename__ = "announcement_targets"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    announcement_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("announcements.id", ondelete="CASCADE"), index=True
    )
    kita_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("kitas.id"), index=True)
    group_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    child_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("children.id", ondelete="CASCADE")
    )

    announcement: Mapped[Announcement] = relationship(back_populates="targets")


class AnnouncementTranslation(Base):
    __tablename__ = "announcement_translations"
    __table_args__ = (UniqueConstraint("announcement_id", "locale"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    announcement_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("announcements.id", ondelete="CASCADE")
    )
    locale: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(String(400))
    body: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[TranslationStatus] = mapped_column(_str_enum(TranslationStatus))
    provider: Mapped[str | None] = mapped_column(String(32))
    # The translation translated back into the source language, for the staff preview.
    back_translation: Mapped[str | None] = mapped_column(Text)
    corrected_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    attempts: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    announcement: Mapped[Announcement] = relationship(back_populates="translations")


class AnnouncementRecipient(Base):
    """One parent an announcement reached: the reach list (delivered, read, confirmed)."""

    __tablename__ = "announcement_recipients"
    __table_args__ = (
        UniqueConstraint("announcement_id", "user_id"),
        Index("ix_announcement_recipients_user", "user_id", "announcement_id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    announcement_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("announcements.id", ondelete="CASCADE")
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kita_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("kitas.id"), index=True)
    locale: Mapped[str] = mapped_column(String(8))
    delivered_at: Mapped[datetime | None]
    read_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    emailed_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Attachment(Base):
    """A PDF or image attached to an announcement or a conversation message. The file is
    encrypted in the blob store (announcement or conversation key); here only metadata."""

    __tablename__ = "attachments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    announcement_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("announcements.id", ondelete="CASCADE"), index=True
    )
    message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("conversation_messages.id", ondelete="CASCADE"), index=True
    )
    filename_ct: Mapped[bytes] = mapped_column(LargeBinary)
    media_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int]
    blob_id: Mapped[str] = mapped_column(String(128))
    key_version: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Conversation(Base):
    """A thread between the family of one child and a team (the group's or the Kita office)."""

    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conversations_kita_last", "kita_id", "last_message_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    kita_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("kitas.id"))
    child_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("children.id", ondelete="CASCADE"), index=True
    )
    team: Mapped[Team] = mapped_column(_str_enum(Team))
    group_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("groups.id", ondelete="SET NULL"))
    subject_ct: Mapped[bytes] = mapped_column(LargeBinary)
    key_version: Mapped[int]
    needs_interpreter: Mapped[bool] = mapped_column(default=False)
    created_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_message_at: Mapped[datetime] = mapped_column(default=utcnow)
    closed_at: Mapped[datetime | None]


class ConversationMessage(Base):
    __tablename__ = "conversation_messages"
    __table_args__ = (Index("ix_conversation_messages_conv", "conversation_id", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    author_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    from_staff: Mapped[bool]
    body_ct: Mapped[bytes] = mapped_column(LargeBinary)
    key_version: Mapped[int]
    # Language of the text: the writer's setting, or detected (parents' replies).
    locale: Mapped[str] = mapped_column(String(8))
    detected: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConversationMessageTranslation(Base):
    __tablename__ = "conversation_message_translations"
    __table_args__ = (UniqueConstraint("message_id", "locale"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversation_messages.id", ondelete="CASCADE")
    )
    locale: Mapped[str] = mapped_column(String(8))
    text_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    key_version: Mapped[int | None]
    status: Mapped[TranslationStatus] = mapped_column(_str_enum(TranslationStatus))
    provider: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ConversationRead(Base):
    """How far a participant has read a conversation."""

    __tablename__ = "conversation_reads"
    __table_args__ = (UniqueConstraint("conversation_id", "user_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    read_at: Mapped[datetime] = mapped_column(default=utcnow)


class WorkingHours(Base):
    """When a Kita's staff answer messages: one row per weekday (0 = Monday), local time."""

    __tablename__ = "working_hours"
    __table_args__ = (UniqueConstraint("kita_id", "weekday"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    kita_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("kitas.id", ondelete="CASCADE"))
    weekday: Mapped[int]
    starts: Mapped[time]
    ends: Mapped[time]


class PushSubscription(Base):
    """One browser's push subscription. The endpoint was checked against the allow-list."""

    __tablename__ = "push_subscriptions"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    endpoint: Mapped[str] = mapped_column(String(2048), unique=True)
    p256dh: Mapped[bytes] = mapped_column(LargeBinary(65))
    auth: Mapped[bytes] = mapped_column(LargeBinary(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_success_at: Mapped[datetime | None]


class NotificationSettings(Base):
    """A user's notification preferences: categories switched off and quiet hours (local)."""

    __tablename__ = "notification_settings"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    muted_categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    quiet_from: Mapped[time | None]
    quiet_until: Mapped[time | None]
    email_fallback: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class PushDelivery(Base):
    """The push outbox: one row per message × subscription, written with the message."""

    __tablename__ = "push_deliveries"
    __table_args__ = (
        UniqueConstraint("message_id", "subscription_id"),
        Index("ix_push_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    # An announcement or a conversation message (the kind says which).
    message_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(16))
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("push_subscriptions.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    category: Mapped[str] = mapped_column(String(16))
    urgency: Mapped[str] = mapped_column(String(16))
    topic: Mapped[str] = mapped_column(String(32))
    # The localised title and the link: no names, no message text.
    title: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(300))
    ttl: Mapped[int]
    status: Mapped[DeliveryStatus] = mapped_column(
        _str_enum(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A worker's lease: another worker may take the row once this has passed.
    claimed_until: Mapped[datetime | None]
    last_status: Mapped[int | None]
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EmailDelivery(Base):
    """The e-mail outbox for parents without a push subscription: urgent at once, the rest in
    the daily digest."""

    __tablename__ = "email_deliveries"
    __table_args__ = (
        UniqueConstraint("message_id", "user_id"),
        Index("ix_email_deliveries_due", "status", "digest"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    message_id: Mapped[uuid.UUID]
    kind: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    digest: Mapped[bool]
    status: Mapped[DeliveryStatus] = mapped_column(
        _str_enum(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OperatorAlert(Base):
    """Something the operator must look at (a push service refusing our VAPID key). No
    personal data: a kind, a host and a status."""

    __tablename__ = "operator_alerts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    resolved_at: Mapped[datetime | None]


class TranslationMemoryEntry(Base):
    """A translation made once and reused: keyed by a hash of source language, target language,
    glossary version and the exact text."""

    __tablename__ = "translation_memory"
    __table_args__ = (UniqueConstraint("source_hash"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    source_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    source_locale: Mapped[str] = mapped_column(String(8))
    target_locale: Mapped[str] = mapped_column(String(8))
    source_text: Mapped[str] = mapped_column(Text)
    translated_text: Mapped[str] = mapped_column(Text)
    provider: Mapped[str] = mapped_column(String(32))
    corrected_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    used_at: Mapped[datetime] = mapped_column(default=utcnow)


class Tablet(Base):
    """A shared staff tablet paired once by a leader. The device keeps a random token; only its
    hash is stored."""

    __tablename__ = "tablets"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    kita_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("kitas.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    paired_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    #: Minutes of inactivity until the tablet locks itself (None: KITA_TABLET_LOCK_MINUTES).
    lock_minutes: Mapped[int | None]


class TabletOutboxKey(Base):
    """The random key that encrypts one staff member's offline outbox on one tablet. Stored
    encrypted with the tablet's data key, so revoking the tablet (which shreds that key) makes
    every outbox the tablet still holds unreadable."""

    __tablename__ = "tablet_outbox_keys"
    __table_args__ = (UniqueConstraint("tablet_id", "user_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tablet_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tablets.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    key_ct: Mapped[bytes] = mapped_column(LargeBinary)
    key_version: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class StaffPin(Base):
    """A staff member's personal PIN for unlocking shared tablets (argon2 hash)."""

    __tablename__ = "staff_pins"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    pin_hash: Mapped[str] = mapped_column(String(255))
    failed_attempts: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
