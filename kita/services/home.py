"""What a person sees first: their children, Kitas and groups."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from kita.access import Actor, managed_kitas
from kita.models.accounts import Role
from kita.models.organisation import Child, Group, Kita


@dataclass(frozen=True)
class ChildSummary:
    id: str
    name: str
    group: str
    kita: str


@dataclass(frozen=True)
class Overview:
    children: list[ChildSummary]
    groups: list[Group]
    kitas: list[Kita]
    managed_kitas: list[Kita]
    roles: frozenset[Role]


def build_overview(db: Session, actor: Actor) -> Overview:
    """The actor's own children (as guardian), assigned groups and Kitas, in name order."""
    children: list[ChildSummary] = []
    if actor.child_ids:
        rows = db.scalars(
            select(Child)
            .where(Child.id.in_(actor.child_ids))
            .options(joinedload(Child.group), joinedload(Child.kita))
            .order_by(Child.first_name)
        ).all()
        children = [
            ChildSummary(str(c.id), c.full_name, c.group.name if c.group else "", c.kita.name)
            for c in rows
        ]
    groups = (
        list(db.scalars(select(Group).where(Group.id.in_(actor.group_ids)).order_by(Group.name)))
        if actor.group_ids
        else []
    )
    kitas = (
        list(db.scalars(select(Kita).where(Kita.id.in_(list(actor.roles))).order_by(Kita.name)))
        if actor.roles
        else []
    )
    roles = frozenset(role for held in actor.roles.values() for role in held)
    return Overview(
        children=children,
        groups=groups,
        kitas=kitas,
        managed_kitas=list(db.scalars(managed_kitas(actor))) if actor.may_administer else [],
        roles=roles,
    )
