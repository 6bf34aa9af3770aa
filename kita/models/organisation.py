"""Provider (Träger) → Kitas → groups → children, and the guardians linked to each child."""

from __future__ import annotations

import enum
import uuid
from datetime import date, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Enum, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kita.db import Base, new_id, utcnow

if TYPE_CHECKING:
    from kita.models.accounts import User


class Relation(enum.StrEnum):
    MOTHER = "mother"
    FATHER = "father"
    GUARDIAN = "guardian"
    OTHER = "other"


class Provider(Base):
    __tablename__ = "providers"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Kita(Base):
    __tablename__ = "kitas"
    __table_args__ = (UniqueConstraint("provider_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("providers.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str] = mapped_column(String(300), default="")
    default_locale: Mapped[str] = mapped_column(String(8), default="de")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    provider: Mapped[Provider] = relationship()


class Group(Base):
    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("kita_id", "name"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    kita_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("kitas.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    kita: Mapped[Kita] = relationship()


class Child(Base):
    __tablename__ = "children"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    kita_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("kitas.id"), index=True)
    group_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("groups.id"), index=True)
    first_name: Mapped[str] = mapped_column(String(120))
    last_name: Mapped[str] = mapped_column(String(120))
    birth_date: Mapped[date | None]
    entry_date: Mapped[date | None]
    leave_date: Mapped[date | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    kita: Mapped[Kita] = relationship()
    group: Mapped[Group | None] = relationship()
    guardian_links: Mapped[list[GuardianLink]] = relationship(
        back_populates="child", cascade="all, delete-orphan"
    )

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


class GuardianLink(Base):
    """A guardian (a user) linked to a child, with custody and pick-up flags."""

    __tablename__ = "guardian_links"
    __table_args__ = (UniqueConstraint("child_id", "user_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    child_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("children.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    relation: Mapped[Relation] = mapped_column(
        Enum(Relation, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e])
    )
    has_custody: Mapped[bool] = mapped_column(default=True)
    may_pick_up: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    child: Mapped[Child] = relationship(back_populates="guardian_links")
    user: Mapped[User] = relationship()


class Council(Base):
    """A parent council (Elternbeirat): one per Kita, or the city-wide one when kita_id is NULL."""

    __tablename__ = "councils"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    provider_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("providers.id"), index=True)
    kita_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("kitas.id"), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
