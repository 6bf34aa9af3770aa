"""The one access policy: who may do what to which object, and queries scoped to an actor.

Views never load a Kita, group, child, invitation or membership by id themselves: they call the
``get_*`` functions here, which answer ``NotFoundError`` (404) both when the object does not exist
and when the actor may not see it, so ids cannot be probed.

Rules (PRODUCT.md, "Access"):
- a provider admin manages every Kita of the provider but does not read child content (except
  a child's documentation, read-only, for an hour after recording a reason: break-glass);
- a Kita leader manages her Kita and sees all its children;
- an educator sees the children of her groups;
- a parent sees only her own children;
- council members and caretakers see no child records;
- development documentation: the child's educators and the Kita's leaders read and write it,
  guardians with custody read the entries shared with the family.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    false,
    literal,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.orm import Session

from kita.errors import NotFoundError
from kita.models.accounts import STAFF_ROLES, GroupAssignment, Invitation, Membership, Role, User
from kita.models.documentation import (
    BreakGlassGrant,
    DocumentationEntry,
    DocumentationPhoto,
    DocumentationTemplate,
)
from kita.models.imports import CsvImport
from kita.models.organisation import Child, Group, GuardianLink, Kita


class Action(enum.StrEnum):
    VIEW = "view"
    MANAGE = "manage"


@dataclass(frozen=True)
class Actor:
    """A logged-in user with the facts the policy needs, loaded once per request."""

    user: User
    roles: Mapping[uuid.UUID, frozenset[Role]] = field(default_factory=dict)
    group_ids: frozenset[uuid.UUID] = frozenset()
    child_ids: frozenset[uuid.UUID] = frozenset()

    @property
    def id(self) -> uuid.UUID:
        return self.user.id

    @property
    def admin_provider_id(self) -> uuid.UUID | None:
        return self.user.admin_of_provider_id

    @property
    def is_provider_admin(self) -> bool:
        return self.user.admin_of_provider_id is not None

    def has_role(self, kita_id: uuid.UUID, *roles: Role) -> bool:
        held = self.roles.get(kita_id, frozenset())
        return any(role in held for role in roles)

    def has_any_role(self, *roles: Role) -> bool:
        return any(self.has_role(kita_id, *roles) for kita_id in self.roles)

    @property
    def needs_second_factor(self) -> bool:
        """Staff and admins must use TOTP (PRODUCT.md, capability 1)."""
        return self.is_provider_admin or self.has_any_role(*STAFF_ROLES)

    @property
    def is_parent(self) -> bool:
        return self.has_any_role(Role.PARENT)

    @property
    def may_administer(self) -> bool:
        return self.is_provider_admin or self.has_any_role(Role.LEADER)


def load_actor(db: Session, user: User) -> Actor:
    """Collect roles, group assignments and children of ``user`` in one round trip."""
    facts = union_all(
        select(literal("role"), Membership.kita_id, type_coerce(Membership.role, String)).where(
            Membership.user_id == user.id
        ),
        select(literal("group"), GroupAssignment.group_id, literal("", String)).where(
            GroupAssignment.user_id == user.id
        ),
        select(literal("child"), GuardianLink.child_id, literal("", String)).where(
            GuardianLink.user_id == user.id
        ),
    )
    roles: dict[uuid.UUID, set[Role]] = {}
    group_ids: set[uuid.UUID] = set()
    child_ids: set[uuid.UUID] = set()
    for kind, raw_id, role in db.execute(facts):
        # The UNION takes the first SELECT's column types; be lenient about the driver's form.
        object_id = raw_id if isinstance(raw_id, uuid.UUID) else uuid.UUID(str(raw_id))
        if kind == "role":
            roles.setdefault(object_id, set()).add(Role(role))
        elif kind == "group":
            group_ids.add(object_id)
        else:
            child_ids.add(object_id)
    return Actor(
        user=user,
        roles={kita_id: frozenset(held) for kita_id, held in roles.items()},
        group_ids=frozenset(group_ids),
        child_ids=frozenset(child_ids),
    )


# --- decisions -------------------------------------------------------------------------------


def may_manage_kita(actor: Actor, kita: Kita) -> bool:
    """Leaders of the Kita and its provider's admins manage groups, staff, children, invites."""
    if actor.admin_provider_id is not None and actor.admin_provider_id == kita.provider_id:
        return True
    return actor.has_role(kita.id, Role.LEADER)


def may_view_kita(actor: Actor, kita: Kita) -> bool:
    return may_manage_kita(actor, kita) or kita.id in actor.roles


def may_edit_kita_settings(actor: Actor, kita: Kita) -> bool:
    """Only the provider's admins create Kitas and change their name and address."""
    return actor.admin_provider_id is not None and actor.admin_provider_id == kita.provider_id


def may_view_child(actor: Actor, child: Child) -> bool:
    """The child's record (name, group): managers, the child's educators, the child's guardians."""
    if child.id in actor.child_ids:
        return True
    if child.group_id is not None and child.group_id in actor.group_ids:
        return actor.has_role(child.kita_id, Role.EDUCATOR, Role.LEADER)
    return may_manage_kita(actor, child.kita)


def may_view_group(actor: Actor, group: Group) -> bool:
    if group.id in actor.group_ids and actor.has_role(group.kita_id, Role.EDUCATOR, Role.LEADER):
        return True
    return may_manage_kita(actor, group.kita)


# --- loaders: 404 unless visible -------------------------------------------------------------


def get_kita(db: Session, actor: Actor, kita_id: uuid.UUID, action: Action) -> Kita:
    """Load a Kita the actor may view (``VIEW``) or manage (``MANAGE``); else 404."""
    kita = db.get(Kita, kita_id)
    allowed = kita is not None and (
        may_manage_kita(actor, kita) if action is Action.MANAGE else may_view_kita(actor, kita)
    )
    if kita is None or not allowed:
        raise NotFoundError()
    return kita


def get_kita_settings(db: Session, actor: Actor, kita_id: uuid.UUID) -> Kita:
    """Load a Kita whose settings the actor may edit (provider admins only); else 404."""
    kita = db.get(Kita, kita_id)
    if kita is None or not may_edit_kita_settings(actor, kita):
        raise NotFoundError()
    return kita


def get_group(db: Session, actor: Actor, group_id: uuid.UUID, action: Action) -> Group:
    """Load a group the actor may view or manage; else 404."""
    group = db.get(Group, group_id)
    allowed = group is not None and (
        may_manage_kita(actor, group.kita)
        if action is Action.MANAGE
        else may_view_group(actor, group)
    )
    if group is None or not allowed:
        raise NotFoundError()
    return group


def get_child(db: Session, actor: Actor, child_id: uuid.UUID, action: Action) -> Child:
    """Load a child the actor may view or manage; else 404."""
    child = db.get(Child, child_id)
    allowed = child is not None and (
        may_manage_kita(actor, child.kita)
        if action is Action.MANAGE
        else may_view_child(actor, child)
    )
    if child is None or not allowed:
        raise NotFoundError()
    return child


def get_invitation(db: Session, actor: Actor, invitation_id: uuid.UUID) -> Invitation:
    """Load an invitation of a Kita the actor manages; else 404."""
    invitation = db.get(Invitation, invitation_id)
    if invitation is None or not may_manage_kita(actor, invitation.kita):
        raise NotFoundError()
    return invitation


def get_membership(db: Session, actor: Actor, membership_id: uuid.UUID) -> Membership:
    """Load a role membership in a Kita the actor manages; else 404."""
    membership = db.get(Membership, membership_id)
    if membership is None or not may_manage_kita(actor, membership.kita):
        raise NotFoundError()
    return membership


def get_csv_import(
    db: Session, actor: Actor, kita_id: uuid.UUID, import_id: uuid.UUID
) -> CsvImport:
    """Load a CSV upload of the Kita ``kita_id``, which the actor manages; else 404 (also when the
    upload belongs to another Kita)."""
    csv_import = db.get(CsvImport, import_id)
    kita = db.get(Kita, kita_id)
    if (
        csv_import is None
        or kita is None
        or csv_import.kita_id != kita.id
        or not may_manage_kita(actor, kita)
    ):
        raise NotFoundError()
    return csv_import


def get_guardian_link(db: Session, actor: Actor, link_id: uuid.UUID) -> GuardianLink:
    """Load a guardian link of a child in a Kita the actor manages; else 404."""
    link = db.get(GuardianLink, link_id)
    if link is None or not may_manage_kita(actor, link.child.kita):
        raise NotFoundError()
    return link


def get_kita_member(db: Session, actor: Actor, kita: Kita, user_id: uuid.UUID) -> User:
    """Load a user holding a role in ``kita``, which the actor must manage; else 404."""
    if not may_manage_kita(actor, kita):
        raise NotFoundError()
    member = db.scalars(
        select(Membership.id).where(Membership.kita_id == kita.id, Membership.user_id == user_id)
    ).first()
    user = db.get(User, user_id) if member is not None else None
    if user is None:
        raise NotFoundError()
    return user


def accounts_actor_may_switch(
    db: Session, actor: Actor, user_ids: Collection[uuid.UUID]
) -> frozenset[uuid.UUID]:
    """Of ``user_ids``, the accounts the actor may disable and re-enable.

    Disabling locks a person out everywhere, so it is allowed only when every Kita the account
    belongs to (by a role or as a child's guardian) is managed by the actor: a leader cannot lock
    out staff of another Kita. Nobody switches their own account or a provider admin's here.
    """
    if not user_ids:
        return frozenset()
    belongs: dict[uuid.UUID, set[uuid.UUID]] = {user_id: set() for user_id in user_ids}
    for user_id, kita_id in db.execute(
        select(Membership.user_id, Membership.kita_id).where(Membership.user_id.in_(user_ids))
    ):
        belongs[user_id].add(kita_id)
    for user_id, kita_id in db.execute(
        select(GuardianLink.user_id, Child.kita_id)
        .join(Child, GuardianLink.child_id == Child.id)
        .where(GuardianLink.user_id.in_(user_ids))
    ):
        belongs[user_id].add(kita_id)
    all_kita_ids = {kita_id for held in belongs.values() for kita_id in held}
    kitas = {kita.id: kita for kita in db.scalars(select(Kita).where(Kita.id.in_(all_kita_ids)))}
    admins = set(
        db.scalars(
            select(User.id).where(User.id.in_(user_ids), User.admin_of_provider_id.is_not(None))
        )
    )
    return frozenset(
        user_id
        for user_id, kita_ids in belongs.items()
        if user_id != actor.id
        and user_id not in admins
        and kita_ids
        and all(may_manage_kita(actor, kitas[kita_id]) for kita_id in kita_ids)
    )


# --- development documentation ---------------------------------------------------------------


class DocumentationAccess(enum.StrEnum):
    """How an actor may use one child's development documentation."""

    #: The child's educators and the Kita's leaders: read and write everything.
    STAFF = "staff"
    #: A guardian with custody: read the entries shared with the family.
    FAMILY = "family"
    #: A provider admin with a valid break-glass grant: read everything, write nothing.
    BREAK_GLASS = "break_glass"


def may_write_documentation(actor: Actor, child: Child) -> bool:
    """Educators of the child's group and leaders of the child's Kita (not provider admins)."""
    if actor.has_role(child.kita_id, Role.LEADER):
        return True
    return (
        child.group_id is not None
        and child.group_id in actor.group_ids
        and actor.has_role(child.kita_id, Role.EDUCATOR)
    )


def is_custodial_guardian(db: Session, actor: Actor, child: Child) -> bool:
    """The actor is linked to the child as a guardian with custody."""
    if child.id not in actor.child_ids:
        return False
    custody = db.scalar(
        select(GuardianLink.has_custody).where(
            GuardianLink.child_id == child.id, GuardianLink.user_id == actor.id
        )
    )
    return custody is True


def active_break_glass(
    db: Session, actor: Actor, child: Child, *, now: datetime | None = None
) -> BreakGlassGrant | None:
    """The actor's unexpired break-glass grant for the child, if the actor is an admin of the
    child's provider and recorded one."""
    if actor.admin_provider_id is None or actor.admin_provider_id != child.kita.provider_id:
        return None
    now = now or datetime.now(UTC)
    return db.scalars(
        select(BreakGlassGrant)
        .where(
            BreakGlassGrant.child_id == child.id,
            BreakGlassGrant.admin_id == actor.id,
            BreakGlassGrant.granted_at <= now,
            BreakGlassGrant.expires_at > now,
        )
        .order_by(BreakGlassGrant.expires_at.desc())
    ).first()


def documentation_access(
    db: Session, actor: Actor, child: Child, *, now: datetime | None = None
) -> DocumentationAccess | None:
    """How the actor may use the child's documentation, or None (council members, caretakers,
    other Kitas' staff, other families and provider admins without break-glass)."""
    if may_write_documentation(actor, child):
        return DocumentationAccess.STAFF
    if is_custodial_guardian(db, actor, child):
        return DocumentationAccess.FAMILY
    if active_break_glass(db, actor, child, now=now) is not None:
        return DocumentationAccess.BREAK_GLASS
    return None


def _documentation_scope(
    db: Session, actor: Actor, child: Child, write: bool, now: datetime | None
) -> DocumentationAccess:
    scope = documentation_access(db, actor, child, now=now)
    if scope is None or (write and scope is not DocumentationAccess.STAFF):
        raise NotFoundError()
    return scope


def get_documentation_child(
    db: Session,
    actor: Actor,
    child_id: uuid.UUID,
    *,
    write: bool = False,
    now: datetime | None = None,
) -> tuple[Child, DocumentationAccess]:
    """Load a child whose documentation the actor may read (``write``: write); else 404."""
    child = db.get(Child, child_id)
    if child is None:
        raise NotFoundError()
    return child, _documentation_scope(db, actor, child, write, now)


def get_documentation_entry(
    db: Session,
    actor: Actor,
    entry_id: uuid.UUID,
    *,
    write: bool = False,
    now: datetime | None = None,
) -> tuple[DocumentationEntry, DocumentationAccess]:
    """Load an entry the actor may read (``write``: change); else 404. Families see only
    entries shared with them."""
    entry = db.get(DocumentationEntry, entry_id)
    if entry is None:
        raise NotFoundError()
    scope = _documentation_scope(db, actor, entry.child, write, now)
    if scope is DocumentationAccess.FAMILY and entry.shared_with_family_at is None:
        raise NotFoundError()
    return entry, scope


def get_documentation_photo(
    db: Session, actor: Actor, photo_id: uuid.UUID, *, now: datetime | None = None
) -> tuple[DocumentationPhoto, DocumentationEntry, DocumentationAccess]:
    """Load a photo whose entry the actor may read; else 404."""
    photo = db.get(DocumentationPhoto, photo_id)
    if photo is None:
        raise NotFoundError()
    entry, scope = get_documentation_entry(db, actor, photo.entry_id, now=now)
    return photo, entry, scope


def may_document_group(actor: Actor, group: Group) -> bool:
    """Educators assigned to the group and leaders of its Kita: the people who write the
    documentation of its children (provider admins do not)."""
    if actor.has_role(group.kita_id, Role.LEADER):
        return True
    return group.id in actor.group_ids and actor.has_role(group.kita_id, Role.EDUCATOR)


def get_documentation_group(db: Session, actor: Actor, group_id: uuid.UUID) -> Group:
    """Load a group whose children's documentation the actor writes; else 404."""
    group = db.get(Group, group_id)
    if group is None or not may_document_group(actor, group):
        raise NotFoundError()
    return group


def get_guardian_child(db: Session, actor: Actor, child_id: uuid.UUID) -> Child:
    """Load a child the actor is a guardian of (with or without custody); else 404."""
    child = db.get(Child, child_id) if child_id in actor.child_ids else None
    if child is None:
        raise NotFoundError()
    return child


def get_consent_records_child(db: Session, actor: Actor, child_id: uuid.UUID) -> Child:
    """Load a child of a Kita the actor leads, for filing consents handed in on paper; else
    404 (provider admins and educators included: only leaders file them)."""
    child = db.get(Child, child_id)
    if child is None or not actor.has_role(child.kita_id, Role.LEADER):
        raise NotFoundError()
    return child


def get_break_glass_child(db: Session, actor: Actor, child_id: uuid.UUID) -> Child:
    """Load a child of the actor's provider, for a provider admin's break-glass request;
    else 404."""
    child = db.get(Child, child_id)
    if (
        child is None
        or actor.admin_provider_id is None
        or actor.admin_provider_id != child.kita.provider_id
    ):
        raise NotFoundError()
    return child


def get_documentation_template(
    db: Session, actor: Actor, template_id: uuid.UUID
) -> DocumentationTemplate:
    """Load a documentation template of a Kita the actor manages; else 404."""
    template = db.get(DocumentationTemplate, template_id)
    kita = db.get(Kita, template.kita_id) if template is not None else None
    if template is None or kita is None or not may_manage_kita(actor, kita):
        raise NotFoundError()
    return template


# --- scoped queries --------------------------------------------------------------------------


def managed_kitas(actor: Actor) -> Select[Kita]:
    """Kitas the actor manages, by name."""
    conditions: list[ColumnElement[bool]] = []
    if actor.admin_provider_id is not None:
        conditions.append(Kita.provider_id == actor.admin_provider_id)
    led = [kita_id for kita_id, roles in actor.roles.items() if Role.LEADER in roles]
    if led:
        conditions.append(Kita.id.in_(led))
    return select(Kita).where(or_(*conditions) if conditions else false()).order_by(Kita.name)


def visible_children(actor: Actor) -> Select[Child]:
    """Children whose record the actor may see, by name."""
    conditions: list[ColumnElement[bool]] = []
    if actor.child_ids:
        conditions.append(Child.id.in_(actor.child_ids))
    if actor.group_ids:
        teaching = [k for k, roles in actor.roles.items() if roles & {Role.EDUCATOR, Role.LEADER}]
        conditions.append(Child.group_id.in_(actor.group_ids) & Child.kita_id.in_(teaching))
    led = [kita_id for kita_id, roles in actor.roles.items() if Role.LEADER in roles]
    if led:
        conditions.append(Child.kita_id.in_(led))
    if actor.admin_provider_id is not None:
        conditions.append(
            Child.kita_id.in_(select(Kita.id).where(Kita.provider_id == actor.admin_provider_id))
        )
    return (
        select(Child)
        .where(or_(*conditions) if conditions else false())
        .order_by(Child.last_name, Child.first_name)
    )


def documentation_groups(actor: Actor) -> Select[Group]:
    """Groups whose children's documentation the actor writes (see ``may_document_group``),
    by Kita and name."""
    conditions: list[ColumnElement[bool]] = []
    led = [kita_id for kita_id, roles in actor.roles.items() if Role.LEADER in roles]
    if led:
        conditions.append(Group.kita_id.in_(led))
    teaching = [kita_id for kita_id, roles in actor.roles.items() if Role.EDUCATOR in roles]
    if actor.group_ids and teaching:
        conditions.append(Group.id.in_(actor.group_ids) & Group.kita_id.in_(teaching))
    return (
        select(Group)
        .join(Kita, Kita.id == Group.kita_id)
        .where(or_(*conditions) if conditions else false())
        .order_by(Kita.name, Group.name, Group.id)
    )


def documentation_authors(child: Child) -> Select[User]:
    """The people who wrote entries of the child, by name (for the timeline's author filter;
    the caller has checked that the actor may read the child's documentation)."""
    authors = select(DocumentationEntry.author_id).where(DocumentationEntry.child_id == child.id)
    return select(User).where(User.id.in_(authors)).order_by(User.display_name, User.id)
