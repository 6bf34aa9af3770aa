"""Development documentation: consents, observations and learning stories with their encrypted
edit history and photos, Kita-defined templates, development talks and break-glass grants.

Content columns (``*_ct``) hold ciphertexts made by ``kita.crypto.encrypt`` with the child's data
key and associated data naming the row; ``key_version`` is the data key version they need. What
stays readable is what access checks, filters and retention need: ids, dates, kind, status,
educational areas, dispositions and consent state.
"""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Enum, ForeignKey, Index, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kita.db import Base, new_id, utcnow
from kita.models.organisation import Child


def _str_enum(enum_cls: type[enum.StrEnum], length: int = 32) -> Enum:
    return Enum(
        enum_cls, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e]
    )


class ConsentPurpose(enum.StrEnum):
    DOCUMENTATION = "documentation"
    PHOTOS_IN_DOCUMENTATION = "photos_in_documentation"
    PHOTOS_FOR_GROUP = "photos_for_group"
    PASS_TO_SCHOOL = "pass_to_school"  # noqa: S105 (a purpose, not a password)


class ConsentMethod(enum.StrEnum):
    APP = "app"
    PAPER = "paper"


class EntryKind(enum.StrEnum):
    OBSERVATION = "observation"
    LEARNING_STORY = "learning_story"


class EntryStatus(enum.StrEnum):
    DRAFT = "draft"
    FINAL = "final"


class EducationalArea(enum.StrEnum):
    """The ten educational areas of the NRW "Bildungsgrundsätze"."""

    MOVEMENT = "movement"
    BODY_HEALTH_NUTRITION = "body_health_nutrition"
    LANGUAGE_COMMUNICATION = "language_communication"
    SOCIAL_INTERCULTURAL = "social_intercultural"
    ARTS_AESTHETICS = "arts_aesthetics"
    RELIGION_ETHICS = "religion_ethics"
    MATHEMATICS = "mathematics"
    SCIENCE_TECHNOLOGY = "science_technology"
    ECOLOGY = "ecology"
    MEDIA = "media"


class Disposition(enum.StrEnum):
    """The five learning dispositions of "Bildungs- und Lerngeschichten"."""

    INTERESTED = "interested"
    ENGAGED = "engaged"
    PERSISTING = "persisting"
    COMMUNICATING = "communicating"
    TAKING_RESPONSIBILITY = "taking_responsibility"


class TemplateFieldType(enum.StrEnum):
    TEXT = "text"
    CHOICE = "choice"
    SCALE = "scale"


class Consent(Base):
    """A consent of the family for one purpose. Active while ``withdrawn_at`` is NULL."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_child_purpose", "child_id", "purpose"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("children.id", ondelete="CASCADE"))
    kita_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("kitas.id"), index=True)
    purpose: Mapped[ConsentPurpose] = mapped_column(_str_enum(ConsentPurpose))
    method: Mapped[ConsentMethod] = mapped_column(_str_enum(ConsentMethod, 16))
    text_version: Mapped[str] = mapped_column(String(32))
    # The guardian who consented (NULL for a paper form signed by someone without an account).
    given_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    # Who entered it: the guardian in the app, or the leader who filed the paper form.
    recorded_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    given_at: Mapped[datetime] = mapped_column(default=utcnow)
    withdrawn_at: Mapped[datetime | None]
    withdrawn_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))

    @property
    def is_active(self) -> bool:
        return self.withdrawn_at is None


class DocumentationTemplate(Base):
    """A Kita's template: structured fields (text, choice, scale) an entry fills in.

    ``fields`` is a list of ``{"name", "type", "label", "options", "required"}``; shipped
    templates carry a ``builtin_key`` and their labels are translated from the code.
    """

    __tablename__ = "documentation_templates"
    __table_args__ = (UniqueConstraint("kita_id", "builtin_key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    kita_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("kitas.id"), index=True)
    builtin_key: Mapped[str | None] = mapped_column(String(64))
    area: Mapped[EducationalArea | None] = mapped_column(_str_enum(EducationalArea))
    name: Mapped[str] = mapped_column(String(120))
    fields: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    archived_at: Mapped[datetime | None]


class DocumentationEntry(Base):
    """An observation or learning story. The id is made by the client (offline outbox)."""

    __tablename__ = "documentation_entries"
    __table_args__ = (Index("ix_documentation_entries_child_observed", "child_id", "observed_on"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("children.id", ondelete="CASCADE"))
    kita_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("kitas.id"), index=True)
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[EntryKind] = mapped_column(_str_enum(EntryKind))
    status: Mapped[EntryStatus] = mapped_column(_str_enum(EntryStatus, 16))
    observed_on: Mapped[date]
    dispositions: Mapped[list[str]] = mapped_column(JSON, default=list)
    template_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("documentation_templates.id"))
    # Encrypted JSON {"title", "text", "template_values"}.
    content_ct: Mapped[bytes] = mapped_column(LargeBinary)
    key_version: Mapped[int]
    # Optimistic concurrency: every saved change increments it.
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    shared_with_family_at: Mapped[datetime | None]
    shared_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))

    child: Mapped[Child] = relationship()
    area_rows: Mapped[list[DocumentationEntryArea]] = relationship(
        cascade="all, delete-orphan", lazy="selectin", order_by="DocumentationEntryArea.area"
    )

    @property
    def areas(self) -> list[EducationalArea]:
        return sorted((row.area for row in self.area_rows), key=list(EducationalArea).index)


class DocumentationEntryArea(Base):
    """An educational area an entry is tagged with (a table, so timelines filter in SQL)."""

    __tablename__ = "documentation_entry_areas"

    entry_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("documentation_entries.id", ondelete="CASCADE"), primary_key=True
    )
    area: Mapped[EducationalArea] = mapped_column(
        _str_enum(EducationalArea), primary_key=True, index=True
    )


class DocumentationRevision(Base):
    """One saved version of an entry; its content is encrypted and bound to this row's id."""

    __tablename__ = "documentation_revisions"
    __table_args__ = (UniqueConstraint("entry_id", "version"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    entry_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("documentation_entries.id", ondelete="CASCADE")
    )
    version: Mapped[int]
    editor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    saved_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Encrypted JSON of everything the version held (content and metadata).
    content_ct: Mapped[bytes] = mapped_column(LargeBinary)
    key_version: Mapped[int]


class DocumentationPhoto(Base):
    """A photo of an entry: re-encoded JPEG, encrypted, stored in the blob store by ``blob_id``."""

    __tablename__ = "documentation_photos"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    entry_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("documentation_entries.id", ondelete="CASCADE"), index=True
    )
    child_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("children.id", ondelete="CASCADE"), index=True
    )
    kita_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("kitas.id"))
    blob_id: Mapped[str] = mapped_column(String(64), unique=True)
    key_version: Mapped[int]
    width: Mapped[int]
    height: Mapped[int]
    byte_size: Mapped[int]
    uploaded_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DevelopmentTalk(Base):
    """A development talk (Entwicklungsgespräch): planned, then held; notes and protocol
    encrypted."""

    __tablename__ = "development_talks"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    child_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("children.id", ondelete="CASCADE"), index=True
    )
    kita_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("kitas.id"))
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    planned_at: Mapped[datetime | None]
    held_at: Mapped[datetime | None]
    notes_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    protocol_ct: Mapped[bytes | None] = mapped_column(LargeBinary)
    key_version: Mapped[int]
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class BreakGlassGrant(Base):
    """A provider admin's recorded reason to read one child's documentation, for a short time."""

    __tablename__ = "break_glass_grants"
    __table_args__ = (Index("ix_break_glass_grants_child_admin", "child_id", "admin_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    admin_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("children.id", ondelete="CASCADE"))
    kita_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("kitas.id"))
    # The reason may name the child or family: encrypted with the child's key.
    reason_ct: Mapped[bytes] = mapped_column(LargeBinary)
    key_version: Mapped[int]
    granted_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
