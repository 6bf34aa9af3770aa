"""What a person sees first: their children, groups and the Kitas they manage.

This is the most requested page, so it reads plain columns (no ORM objects) in one query per
section, and only the sections the actor has.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kita.access import Actor, managed_kitas
from kita.models.organisation import Child, Group, Kita
from kita.services.feed import Feed, build_feed


@dataclass(frozen=True)
class ChildSummary:
    id: str
    name: str
    group: str
    kita: str


@dataclass(frozen=True)
class GroupSummary:
    id: str
    name: str
    kita: str


@dataclass(frozen=True)
class KitaSummary:
    id: str
    name: str


@dataclass(frozen=True)
class Overview:
    children: list[ChildSummary]
    groups: list[GroupSummary]
    managed_kitas: list[KitaSummary]
    #: The parent's feed (announcements, confirmations due, conversations); None for staff
    #: without children.
    feed: Feed | None = None


def build_overview(
    db: Session, actor: Actor, *, locale: str | None = None, now: datetime | None = None
) -> Overview:
    """The actor's own children (as guardian), assigned groups and managed Kitas, by name;
    for guardians also their feed, in ``locale`` (default: the account's language)."""
    children: list[ChildSummary] = []
    if actor.child_ids:
        rows = db.execute(
            select(Child.id, Child.first_name, Child.last_name, Group.name, Kita.name)
            .join(Kita, Kita.id == Child.kita_id)
            .outerjoin(Group, Group.id == Child.group_id)
            .where(Child.id.in_(actor.child_ids))
            .order_by(Child.first_name, Child.last_name)
        )
        children = [
            ChildSummary(str(child_id), f"{first} {last}", group or "", kita)
            for child_id, first, last, group, kita in rows
        ]
    groups: list[GroupSummary] = []
    if actor.group_ids:
        group_rows = db.execute(
            select(Group.id, Group.name, Kita.name)
            .join(Kita, Kita.id == Group.kita_id)
            .where(Group.id.in_(actor.group_ids))
            .order_by(Group.name)
        )
        groups = [GroupSummary(str(group_id), name, kita) for group_id, name, kita in group_rows]
    managed: list[KitaSummary] = []
    if actor.may_administer:
        query = managed_kitas(actor).with_only_columns(Kita.id, Kita.name)
        managed = [KitaSummary(str(kita_id), name) for kita_id, name in db.execute(query)]
    feed = None
    if children:
        feed = build_feed(
            db, actor, locale=locale or actor.user.locale or "de", now=now or datetime.now(UTC)
        )
    return Overview(children=children, groups=groups, managed_kitas=managed, feed=feed)
