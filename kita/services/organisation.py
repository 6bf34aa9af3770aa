"""Administration of the organisation: Kitas, groups, staff roles, children and their guardians.

Views load every object through ``kita.access``; the functions here check once more that the actor
manages the Kita (they are also called by the CLI and tests), validate meaning (a group of this
Kita, a leave date after the entry date), flush, and write an audit event without personal content.
"""

from __future__ import annotations

import math
import string
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime
from typing import Generic, TypeVar

from flask_babel import lazy_gettext as _l
from flask_babel import lazy_ngettext as _ln
from sqlalchemy import ColumnElement, Select, and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session

from kita import audit
from kita.access import Actor, accounts_actor_may_switch, may_edit_kita_settings, may_manage_kita
from kita.config import SUPPORTED_LOCALES
from kita.errors import ForbiddenError, NotFoundError, ValidationError
from kita.models.accounts import GroupAssignment, Invitation, Membership, Role, User
from kita.models.organisation import Child, Group, GuardianLink, Kita, Relation
from kita.services.accounts import set_account_active

PAGE_SIZE = 50
KITA_NAME_MAX = 200
ADDRESS_MAX = 300
NAME_MAX = 120
SEARCH_MAX = 100

#: Roles shown and managed on the staff pages; parents are managed on the children pages.
STAFF_PAGE_ROLES: tuple[Role, ...] = (Role.LEADER, Role.EDUCATOR, Role.CARETAKER, Role.COUNCIL)
#: Roles whose holders may be assigned to groups.
TEACHING_ROLES = frozenset({Role.LEADER, Role.EDUCATOR})
INVITATION_STATUSES: tuple[str, ...] = ("open", "redeemed", "expired", "revoked")
# Dates outside this range are typing mistakes (a year 0202 or 2204), not real children.
EARLIEST_DATE = date(1950, 1, 1)

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list, numbered from 1."""

    items: list[T]
    number: int
    total: int
    per_page: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages


def _count(db: Session, query: Select[T]) -> int:
    return int(db.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0)


def _require_manager(actor: Actor, kita: Kita) -> None:
    if not may_manage_kita(actor, kita):
        raise NotFoundError()


def _clean_text(
    value: str, field: str, errors: dict[str, object], *, max_length: int, required: bool = True
) -> str:
    value = value.strip()
    if any(ord(c) < 32 for c in value):
        errors[field] = _l("This field contains characters that are not allowed.")
    elif required and not value:
        errors[field] = _l("This field is required.")
    elif len(value) > max_length:
        errors[field] = _l("At most %(count)d characters are allowed.", count=max_length)
    return value


# --- Kitas -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class KitaInput:
    name: str
    address: str
    default_locale: str


def _validate_kita(
    db: Session, provider_id: uuid.UUID, data: KitaInput, kita_id: uuid.UUID | None
) -> KitaInput:
    errors: dict[str, object] = {}
    name = _clean_text(data.name, "name", errors, max_length=KITA_NAME_MAX)
    address = _clean_text(data.address, "address", errors, max_length=ADDRESS_MAX, required=False)
    if data.default_locale not in SUPPORTED_LOCALES:
        errors["default_locale"] = _l("Please choose one of the offered languages.")
    if "name" not in errors:
        same_name = db.scalars(
            select(Kita.id).where(Kita.provider_id == provider_id, Kita.name == name)
        ).first()
        if same_name is not None and same_name != kita_id:
            errors["name"] = _l("A Kita with this name already exists.")
    if errors:
        raise ValidationError(errors)
    return KitaInput(name=name, address=address, default_locale=data.default_locale)


def create_kita(db: Session, *, actor: Actor, data: KitaInput) -> Kita:
    """Create a Kita of the actor's provider (provider admins only; anyone else gets 404)."""
    if actor.admin_provider_id is None:
        raise NotFoundError()
    clean = _validate_kita(db, actor.admin_provider_id, data, None)
    kita = Kita(
        id=uuid.uuid4(),
        provider_id=actor.admin_provider_id,
        name=clean.name,
        address=clean.address,
        default_locale=clean.default_locale,
    )
    db.add(kita)
    db.flush()
    audit.record(
        db,
        action="kita.created",
        actor_id=actor.id,
        object_type="kita",
        object_id=kita.id,
        kita_id=kita.id,
    )
    return kita


def update_kita_settings(db: Session, *, actor: Actor, kita: Kita, data: KitaInput) -> None:
    """Change name, address and default language (the provider's admins only)."""
    if not may_edit_kita_settings(actor, kita):
        raise NotFoundError()
    clean = _validate_kita(db, kita.provider_id, data, kita.id)
    kita.name, kita.address, kita.default_locale = clean.name, clean.address, clean.default_locale
    db.flush()
    audit.record(
        db,
        action="kita.updated",
        actor_id=actor.id,
        object_type="kita",
        object_id=kita.id,
        kita_id=kita.id,
    )


@dataclass(frozen=True)
class GroupSummary:
    group: Group
    children: int

    @property
    def option(self) -> tuple[str, str]:
        """(value, label) for a select field."""
        return str(self.group.id), self.group.name


@dataclass(frozen=True)
class KitaSummary:
    kita: Kita
    groups: list[GroupSummary]
    children: int
    children_without_guardian: int
    staff: int
    open_invitations: int


def list_groups(db: Session, kita: Kita) -> list[GroupSummary]:
    """The Kita's groups by name, each with its number of children."""
    counts = {
        group_id: count
        for group_id, count in db.execute(
            select(Child.group_id, func.count())
            .where(Child.kita_id == kita.id, Child.group_id.is_not(None))
            .group_by(Child.group_id)
        )
    }
    groups = db.scalars(select(Group).where(Group.kita_id == kita.id).order_by(Group.name))
    return [GroupSummary(group, int(counts.get(group.id, 0))) for group in groups]


def _open_invitation(now: datetime) -> ColumnElement[bool]:
    return and_(
        Invitation.revoked_at.is_(None),
        Invitation.redeemed_at.is_(None),
        Invitation.expires_at > now,
    )


def _has_guardian() -> ColumnElement[bool]:
    return exists().where(GuardianLink.child_id == Child.id)


def summarise_kita(db: Session, kita: Kita, *, now: datetime) -> KitaSummary:
    """Figures for the Kita's start page: groups, children, staff, open invitations."""
    children = select(Child.id).where(Child.kita_id == kita.id)
    staff = (
        select(Membership.user_id)
        .where(Membership.kita_id == kita.id, Membership.role.in_(STAFF_PAGE_ROLES))
        .distinct()
    )
    invitations = select(Invitation.id).where(Invitation.kita_id == kita.id, _open_invitation(now))
    return KitaSummary(
        kita=kita,
        groups=list_groups(db, kita),
        children=_count(db, children),
        children_without_guardian=_count(db, children.where(~_has_guardian())),
        staff=_count(db, staff),
        open_invitations=_count(db, invitations),
    )


# --- groups ----------------------------------------------------------------------------------


def _validate_group_name(db: Session, kita: Kita, name: str, group_id: uuid.UUID | None) -> str:
    errors: dict[str, object] = {}
    name = _clean_text(name, "name", errors, max_length=NAME_MAX)
    if not errors:
        same_name = db.scalars(
            select(Group.id).where(Group.kita_id == kita.id, Group.name == name)
        ).first()
        if same_name is not None and same_name != group_id:
            errors["name"] = _l("A group with this name already exists in this Kita.")
    if errors:
        raise ValidationError(errors)
    return name


def create_group(db: Session, *, actor: Actor, kita: Kita, name: str) -> Group:
    """Add a group to the Kita; names are unique within a Kita."""
    _require_manager(actor, kita)
    group = Group(id=uuid.uuid4(), kita_id=kita.id, name=_validate_group_name(db, kita, name, None))
    db.add(group)
    db.flush()
    audit.record(
        db,
        action="group.created",
        actor_id=actor.id,
        object_type="group",
        object_id=group.id,
        kita_id=kita.id,
    )
    return group


def rename_group(db: Session, *, actor: Actor, group: Group, name: str) -> None:
    """Give the group a new name, unique within its Kita."""
    _require_manager(actor, group.kita)
    group.name = _validate_group_name(db, group.kita, name, group.id)
    db.flush()
    audit.record(
        db,
        action="group.renamed",
        actor_id=actor.id,
        object_type="group",
        object_id=group.id,
        kita_id=group.kita_id,
    )


def delete_group(db: Session, *, actor: Actor, group: Group, now: datetime) -> None:
    """Delete an empty group: refused while any child is in it.

    Educators lose the assignment, and open invitations naming the group are revoked because
    they would now admit someone without the group they were meant for.
    """
    _require_manager(actor, group.kita)
    children = _count(db, select(Child.id).where(Child.group_id == group.id))
    if children:
        raise ValidationError(
            {},
            _ln(
                "The group still has %(num)d child. Move the child to another group first.",
                "The group still has %(num)d children. Move them to another group first.",
                children,
            ),
        )
    db.execute(
        update(Invitation)
        .where(Invitation.group_id == group.id, _open_invitation(now))
        .values(revoked_at=now)
    )
    db.execute(update(Invitation).where(Invitation.group_id == group.id).values(group_id=None))
    db.execute(delete(GroupAssignment).where(GroupAssignment.group_id == group.id))
    group_id, kita_id = group.id, group.kita_id
    db.delete(group)
    db.flush()
    audit.record(
        db,
        action="group.deleted",
        actor_id=actor.id,
        object_type="group",
        object_id=group_id,
        kita_id=kita_id,
        at=now,
    )


# --- staff -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StaffMember:
    user: User
    memberships: list[Membership]
    groups: list[Group]
    may_switch_account: bool


def list_staff(db: Session, *, actor: Actor, kita: Kita) -> list[StaffMember]:
    """People with a staff or council role in the Kita, by name, with their groups there."""
    _require_manager(actor, kita)
    rows = db.execute(
        select(User, Membership)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.kita_id == kita.id, Membership.role.in_(STAFF_PAGE_ROLES))
        .order_by(User.display_name, User.email, Membership.role)
    )
    users: dict[uuid.UUID, User] = {}
    memberships: dict[uuid.UUID, list[Membership]] = {}
    for user, membership in rows:
        users[user.id] = user
        memberships.setdefault(user.id, []).append(membership)
    groups: dict[uuid.UUID, list[Group]] = {}
    if users:
        for user_id, group in db.execute(
            select(GroupAssignment.user_id, Group)
            .join(Group, GroupAssignment.group_id == Group.id)
            .where(Group.kita_id == kita.id, GroupAssignment.user_id.in_(list(users)))
            .order_by(Group.name)
        ):
            groups.setdefault(user_id, []).append(group)
    switchable = accounts_actor_may_switch(db, actor, list(users))
    return [
        StaffMember(user, memberships[user_id], groups.get(user_id, []), user_id in switchable)
        for user_id, user in users.items()
    ]


def assigned_group_ids(db: Session, membership: Membership) -> set[uuid.UUID]:
    """The groups of the membership's Kita that its holder is assigned to."""
    return set(
        db.scalars(
            select(GroupAssignment.group_id)
            .join(Group, GroupAssignment.group_id == Group.id)
            .where(
                GroupAssignment.user_id == membership.user_id,
                Group.kita_id == membership.kita_id,
            )
        )
    )


def set_educator_groups(
    db: Session, *, actor: Actor, membership: Membership, group_ids: Collection[uuid.UUID]
) -> None:
    """Replace the educator's group assignments in this Kita (other Kitas stay untouched)."""
    kita = membership.kita
    _require_manager(actor, kita)
    if membership.role not in TEACHING_ROLES:
        raise ValidationError({}, _l("Only educators and leaders are assigned to groups."))
    kita_groups = set(db.scalars(select(Group.id).where(Group.kita_id == kita.id)))
    wanted = set(group_ids)
    if not wanted <= kita_groups:
        raise ValidationError({"groups": _l("Please choose groups of this Kita.")})
    current = set(
        db.scalars(
            select(GroupAssignment.group_id).where(
                GroupAssignment.user_id == membership.user_id,
                GroupAssignment.group_id.in_(kita_groups),
            )
        )
    )
    if current - wanted:
        db.execute(
            delete(GroupAssignment).where(
                GroupAssignment.user_id == membership.user_id,
                GroupAssignment.group_id.in_(current - wanted),
            )
        )
    for group_id in wanted - current:
        db.add(GroupAssignment(user_id=membership.user_id, group_id=group_id))
    db.flush()
    audit.record(
        db,
        action="membership.groups_changed",
        actor_id=actor.id,
        object_type="membership",
        object_id=membership.id,
        kita_id=kita.id,
        detail=str(len(wanted)),
    )


def remove_membership(db: Session, *, actor: Actor, membership: Membership) -> None:
    """End a staff or council role in the Kita.

    A leader cannot remove her own leader role when it is her last one (she would lock herself
    out of the administration). Without a teaching role left in the Kita, the person's group
    assignments there go too. Parents' roles end on the children pages, not here.
    """
    kita = membership.kita
    _require_manager(actor, kita)
    if membership.role not in STAFF_PAGE_ROLES:
        raise NotFoundError()
    if (
        membership.user_id == actor.id
        and membership.role is Role.LEADER
        and not actor.is_provider_admin
        and sum(1 for roles in actor.roles.values() if Role.LEADER in roles) <= 1
    ):
        raise ValidationError({}, _l("You cannot remove your own last leader role."))
    membership_id, user_id, role = membership.id, membership.user_id, membership.role
    db.delete(membership)
    db.flush()
    still_teaching = db.scalars(
        select(Membership.id).where(
            Membership.user_id == user_id,
            Membership.kita_id == kita.id,
            Membership.role.in_(TEACHING_ROLES),
        )
    ).first()
    if still_teaching is None:
        db.execute(
            delete(GroupAssignment).where(
                GroupAssignment.user_id == user_id,
                GroupAssignment.group_id.in_(select(Group.id).where(Group.kita_id == kita.id)),
            )
        )
    audit.record(
        db,
        action="membership.removed",
        actor_id=actor.id,
        object_type="membership",
        object_id=membership_id,
        kita_id=kita.id,
        detail=role.value,
    )


def set_member_active(db: Session, *, actor: Actor, kita: Kita, user: User, active: bool) -> None:
    """Disable (ending every session at once) or re-enable the account of a Kita member.

    Allowed only when the actor manages every Kita the account belongs to (see
    ``kita.access.accounts_actor_may_switch``); otherwise 403 with an explanation.
    """
    _require_manager(actor, kita)
    if user.id not in accounts_actor_may_switch(db, actor, [user.id]):
        raise ForbiddenError(
            _l(
                "This account also belongs to a Kita you do not manage, or it is your own. "
                "Please ask the provider's administration."
            )
        )
    if user.is_active == active:
        return
    set_account_active(db, actor_id=actor.id, user=user, active=active)


# --- children --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildInput:
    first_name: str
    last_name: str
    birth_date: date | None = None
    group_id: uuid.UUID | None = None
    entry_date: date | None = None
    leave_date: date | None = None


@dataclass(frozen=True)
class ChildRow:
    child: Child
    guardians: int


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _name_matches(term: str) -> ColumnElement[bool]:
    """Case-insensitive substring match of one search word against first or last name.

    SQLite's ``lower()`` (and PostgreSQL's in a C locale) folds ASCII letters only, so the word
    is also tried with its first letter or all letters in capitals: "öz" finds "Özil".
    """
    variants = {v.translate(_ASCII_LOWER) for v in (term.lower(), term.capitalize(), term.upper())}
    conditions = [
        func.lower(column).contains(variant, autoescape=True)
        for column in (Child.first_name, Child.last_name)
        for variant in sorted(variants)
    ]
    return or_(*conditions)


def list_children(
    db: Session,
    *,
    kita: Kita,
    search: str = "",
    group_id: uuid.UUID | None = None,
    without_group: bool = False,
    page: int = 1,
) -> Page[ChildRow]:
    """The Kita's children by name, 50 per page; every search word must match a name."""
    query = select(Child).where(Child.kita_id == kita.id)
    for term in search.split()[:5]:
        query = query.where(_name_matches(term))
    if without_group:
        query = query.where(Child.group_id.is_(None))
    elif group_id is not None:
        query = query.where(Child.group_id == group_id)
    total = _count(db, query)
    page = max(1, min(page, math.ceil(total / PAGE_SIZE) or 1))
    children = db.scalars(
        query.order_by(Child.last_name, Child.first_name, Child.id)
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    ).all()
    counts: dict[uuid.UUID, int] = {}
    if children:
        counts = {
            child_id: count
            for child_id, count in db.execute(
                select(GuardianLink.child_id, func.count())
                .where(GuardianLink.child_id.in_([c.id for c in children]))
                .group_by(GuardianLink.child_id)
            )
        }
    rows = [ChildRow(child, int(counts.get(child.id, 0))) for child in children]
    return Page(rows, page, total)


def _validate_child(db: Session, kita: Kita, data: ChildInput, today: date) -> ChildInput:
    errors: dict[str, object] = {}
    first_name = _clean_text(data.first_name, "first_name", errors, max_length=NAME_MAX)
    last_name = _clean_text(data.last_name, "last_name", errors, max_length=NAME_MAX)
    if data.group_id is not None:
        group = db.get(Group, data.group_id)
        if group is None or group.kita_id != kita.id:
            errors["group_id"] = _l("Please choose a group of this Kita.")
    latest = date(today.year + 10, 12, 31)
    for name in ("birth_date", "entry_date", "leave_date"):
        value = getattr(data, name)
        if value is not None and not EARLIEST_DATE <= value <= latest:
            errors[name] = _l("Please check the date: the year is not plausible.")
    if "birth_date" not in errors and data.birth_date is not None and data.birth_date > today:
        errors["birth_date"] = _l("The birth date cannot be in the future.")
    if (
        not errors.keys() & {"birth_date", "entry_date"}
        and data.birth_date is not None
        and data.entry_date is not None
        and data.entry_date < data.birth_date
    ):
        errors["entry_date"] = _l("The entry date cannot be before the birth date.")
    if (
        not errors.keys() & {"entry_date", "leave_date"}
        and data.entry_date is not None
        and data.leave_date is not None
        and data.leave_date < data.entry_date
    ):
        errors["leave_date"] = _l("The leave date cannot be before the entry date.")
    if errors:
        raise ValidationError(errors)
    return ChildInput(
        first_name=first_name,
        last_name=last_name,
        birth_date=data.birth_date,
        group_id=data.group_id,
        entry_date=data.entry_date,
        leave_date=data.leave_date,
    )


def create_child(db: Session, *, actor: Actor, kita: Kita, data: ChildInput, today: date) -> Child:
    """Add a child to the Kita (optionally to one of its groups)."""
    _require_manager(actor, kita)
    clean = _validate_child(db, kita, data, today)
    child = Child(
        id=uuid.uuid4(),
        kita_id=kita.id,
        group_id=clean.group_id,
        first_name=clean.first_name,
        last_name=clean.last_name,
        birth_date=clean.birth_date,
        entry_date=clean.entry_date,
        leave_date=clean.leave_date,
    )
    db.add(child)
    db.flush()
    audit.record(
        db,
        action="child.created",
        actor_id=actor.id,
        object_type="child",
        object_id=child.id,
        kita_id=kita.id,
    )
    return child


def update_child(db: Session, *, actor: Actor, child: Child, data: ChildInput, today: date) -> None:
    """Change a child's names, dates or group."""
    _require_manager(actor, child.kita)
    clean = _validate_child(db, child.kita, data, today)
    child.first_name, child.last_name = clean.first_name, clean.last_name
    child.birth_date, child.group_id = clean.birth_date, clean.group_id
    child.entry_date, child.leave_date = clean.entry_date, clean.leave_date
    db.flush()
    audit.record(
        db,
        action="child.updated",
        actor_id=actor.id,
        object_type="child",
        object_id=child.id,
        kita_id=child.kita_id,
    )


def list_guardians(db: Session, child: Child) -> list[GuardianLink]:
    """The child's guardians, by name."""
    return list(
        db.scalars(
            select(GuardianLink)
            .join(User, GuardianLink.user_id == User.id)
            .where(GuardianLink.child_id == child.id)
            .order_by(User.display_name, User.email)
        )
    )


def update_guardian_link(
    db: Session,
    *,
    actor: Actor,
    link: GuardianLink,
    relation: Relation | None,
    has_custody: bool,
    may_pick_up: bool,
) -> None:
    """Change a guardian's relation to the child, custody and pick-up permission."""
    _require_manager(actor, link.child.kita)
    if relation is None:
        raise ValidationError({"relation": _l("Please choose the relation to the child.")})
    link.relation, link.has_custody, link.may_pick_up = relation, has_custody, may_pick_up
    db.flush()
    audit.record(
        db,
        action="guardian.updated",
        actor_id=actor.id,
        object_type="guardian_link",
        object_id=link.id,
        kita_id=link.child.kita_id,
    )


def remove_guardian_link(db: Session, *, actor: Actor, link: GuardianLink) -> None:
    """Unlink a guardian from the child; the parent role in the Kita ends with the last child."""
    kita = link.child.kita
    _require_manager(actor, kita)
    link_id, user_id, child = link.id, link.user_id, link.child
    child.guardian_links.remove(link)
    db.flush()
    other_child = db.scalars(
        select(GuardianLink.id)
        .join(Child, GuardianLink.child_id == Child.id)
        .where(GuardianLink.user_id == user_id, Child.kita_id == kita.id)
    ).first()
    if other_child is None:
        db.execute(
            delete(Membership).where(
                Membership.user_id == user_id,
                Membership.kita_id == kita.id,
                Membership.role == Role.PARENT,
            )
        )
    audit.record(
        db,
        action="guardian.removed",
        actor_id=actor.id,
        object_type="guardian_link",
        object_id=link_id,
        kita_id=kita.id,
    )


# --- invitations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InvitationRow:
    invitation: Invitation
    status: str
    child: Child | None


def _status_condition(status: str, now: datetime) -> ColumnElement[bool]:
    if status == "revoked":
        return Invitation.revoked_at.is_not(None)
    if status == "redeemed":
        return and_(Invitation.revoked_at.is_(None), Invitation.redeemed_at.is_not(None))
    if status == "expired":
        return and_(
            Invitation.revoked_at.is_(None),
            Invitation.redeemed_at.is_(None),
            Invitation.expires_at <= now,
        )
    return _open_invitation(now)


def list_invitations(
    db: Session,
    *,
    kita: Kita,
    now: datetime,
    status: str | None = None,
    child_id: uuid.UUID | None = None,
    page: int = 1,
) -> Page[InvitationRow]:
    """The Kita's invitations, newest first, 50 per page, optionally by status or child."""
    query = select(Invitation).where(Invitation.kita_id == kita.id)
    if status is not None:
        if status not in INVITATION_STATUSES:
            raise ValidationError({"status": _l("Please choose one of the offered options.")})
        query = query.where(_status_condition(status, now))
    if child_id is not None:
        query = query.where(Invitation.child_id == child_id)
    total = _count(db, query)
    page = max(1, min(page, math.ceil(total / PAGE_SIZE) or 1))
    invitations = db.scalars(
        query.order_by(Invitation.created_at.desc(), Invitation.id)
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    ).all()
    child_ids = {i.child_id for i in invitations if i.child_id is not None}
    children = (
        {c.id: c for c in db.scalars(select(Child).where(Child.id.in_(child_ids)))}
        if child_ids
        else {}
    )
    rows = [
        InvitationRow(i, i.status(now), children.get(i.child_id) if i.child_id else None)
        for i in invitations
    ]
    return Page(rows, page, total)
