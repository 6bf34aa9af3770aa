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
from kita.models import messaging
from kita.models.accounts import STAFF_ROLES, GroupAssignment, Invitation, Membership, Role, User
from kita.models.documentation import (
    BreakGlassGrant,
    DocumentationEntry,
    DocumentationPhoto,
    DocumentationTemplate,
)
from kita.models.imports import CsvImport
from kita.models.messaging import StaffPin, Tablet
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

    @property
    def sends_announcements(self) -> bool:
        """Writes announcements somewhere: provider admins, leaders, educators with a group."""
        return (
            self.is_provider_admin
            or self.has_any_role(Role.LEADER)
            or (self.has_any_role(Role.EDUCATOR) and bool(self.group_ids))
        )


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
    return _groups_where(_led_and_taught_groups(actor))


def _led_and_taught_groups(actor: Actor) -> list[ColumnElement[bool]]:
    """Conditions for the groups of the Kitas the actor leads and the groups she teaches."""
    conditions: list[ColumnElement[bool]] = []
    led = [kita_id for kita_id, roles in actor.roles.items() if Role.LEADER in roles]
    if led:
        conditions.append(Group.kita_id.in_(led))
    teaching = [kita_id for kita_id, roles in actor.roles.items() if Role.EDUCATOR in roles]
    if actor.group_ids and teaching:
        conditions.append(Group.id.in_(actor.group_ids) & Group.kita_id.in_(teaching))
    return conditions


def _groups_where(conditions: list[ColumnElement[bool]]) -> Select[Group]:
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


# --- shared staff tablets --------------------------------------------------------------------

#: Roles whose members may unlock a shared tablet of their Kita with a PIN.
TABLET_ROLES = (Role.LEADER, Role.EDUCATOR)


def get_tablet(db: Session, actor: Actor, kita: Kita, tablet_id: uuid.UUID) -> Tablet:
    """Load a tablet paired to ``kita``, which the actor manages; else 404 (also for a tablet
    of another Kita)."""
    tablet = db.get(Tablet, tablet_id)
    if tablet is None or tablet.kita_id != kita.id or not may_manage_kita(actor, kita):
        raise NotFoundError()
    return tablet


def may_use_tablet(actor: Actor, tablet: Tablet) -> bool:
    """Leaders and educators of the tablet's own Kita unlock it; nobody uses a revoked one."""
    return tablet.revoked_at is None and actor.has_role(tablet.kita_id, *TABLET_ROLES)


def tablet_staff(tablet: Tablet) -> Select[User]:
    """The people shown as tiles on a paired tablet: active leaders and educators of its Kita
    who have set a PIN, by name."""
    members = select(Membership.user_id).where(
        Membership.kita_id == tablet.kita_id, Membership.role.in_(TABLET_ROLES)
    )
    return (
        select(User)
        .join(StaffPin, StaffPin.user_id == User.id)
        .where(User.id.in_(members), User.is_active.is_(True))
        .order_by(User.display_name, User.id)
    )


# --- conversations ---------------------------------------------------------------------------
# A conversation is between the family of one child and a team, never a private person:
# - the family: the child's guardians WITH custody (as for the documentation: a guardian who
#   may only pick the child up does not read what the Kita and the parents discuss);
# - the group team: educators assigned to the conversation's group, and the Kita's leaders;
# - the Kita office: the Kita's leaders.
# Caretakers, council members and provider admins never see conversations.


class ConversationSide(enum.StrEnum):
    """Which side of a conversation an actor is on."""

    FAMILY = "family"
    STAFF = "staff"


def custodial_child_ids(db: Session, actor: Actor) -> frozenset[uuid.UUID]:
    """Children the actor is a guardian of with custody."""
    if not actor.child_ids:
        return frozenset()
    return frozenset(
        db.scalars(
            select(GuardianLink.child_id).where(
                GuardianLink.user_id == actor.id, GuardianLink.has_custody.is_(True)
            )
        )
    )


def may_staff_conversation(
    actor: Actor, kita_id: uuid.UUID, team: messaging.Team, group_id: uuid.UUID | None
) -> bool:
    """Leaders of the Kita answer for every team; educators for their groups' teams."""
    if actor.has_role(kita_id, Role.LEADER):
        return True
    return (
        team is messaging.Team.GROUP
        and group_id is not None
        and group_id in actor.group_ids
        and actor.has_role(kita_id, Role.EDUCATOR)
    )


def conversation_side(
    db: Session, actor: Actor, conversation: messaging.Conversation
) -> ConversationSide | None:
    """The actor's side of the conversation, or None when it is not visible to them."""
    if conversation.child_id in actor.child_ids and conversation.child_id in custodial_child_ids(
        db, actor
    ):
        return ConversationSide.FAMILY
    if may_staff_conversation(
        actor, conversation.kita_id, conversation.team, conversation.group_id
    ):
        return ConversationSide.STAFF
    return None


def get_conversation(
    db: Session, actor: Actor, conversation_id: uuid.UUID, *, staff: bool = False
) -> tuple[messaging.Conversation, ConversationSide]:
    """Load a conversation the actor takes part in (``staff``: on the team's side); else 404
    (another family's conversation, another group's team, council, caretakers, admins)."""
    conversation = db.get(messaging.Conversation, conversation_id)
    side = conversation_side(db, actor, conversation) if conversation is not None else None
    if conversation is None or side is None or (staff and side is not ConversationSide.STAFF):
        raise NotFoundError()
    return conversation, side


def get_conversation_attachment(
    db: Session, actor: Actor, conversation_id: uuid.UUID, attachment_id: uuid.UUID
) -> tuple[messaging.Attachment, messaging.Conversation, ConversationSide]:
    """Load an attachment of a message in a conversation the actor takes part in; else 404
    (also when the attachment belongs to another conversation or to an announcement)."""
    conversation, side = get_conversation(db, actor, conversation_id)
    attachment = db.get(messaging.Attachment, attachment_id)
    message = (
        db.get(messaging.ConversationMessage, attachment.message_id)
        if attachment is not None and attachment.message_id is not None
        else None
    )
    if attachment is None or message is None or message.conversation_id != conversation.id:
        raise NotFoundError()
    return attachment, conversation, side


def visible_conversations(db: Session, actor: Actor) -> Select[messaging.Conversation]:
    """Conversations the actor takes part in (either side), newest activity first."""
    conditions: list[ColumnElement[bool]] = []
    custodial = custodial_child_ids(db, actor)
    if custodial:
        conditions.append(messaging.Conversation.child_id.in_(custodial))
    led = [kita_id for kita_id, roles in actor.roles.items() if Role.LEADER in roles]
    if led:
        conditions.append(messaging.Conversation.kita_id.in_(led))
    teaching = [kita_id for kita_id, roles in actor.roles.items() if Role.EDUCATOR in roles]
    if actor.group_ids and teaching:
        conditions.append(
            (messaging.Conversation.team == messaging.Team.GROUP)
            & messaging.Conversation.group_id.in_(actor.group_ids)
            & messaging.Conversation.kita_id.in_(teaching)
        )
    return (
        select(messaging.Conversation)
        .where(or_(*conditions) if conditions else false())
        .order_by(messaging.Conversation.last_message_at.desc(), messaging.Conversation.id)
    )


# --- announcements: parents' feed, attachments, reach ----------------------------------------
# A parent sees an announcement only through the recipient row written when it was sent (one
# per guardian, siblings deduplicated), and only once it is sent (drafts and scheduled ones
# never; recalled ones as "recalled", without content). Staff see an announcement's attachments
# and reach as laid out in may_view_announcement_as_staff and may_view_reach.

#: Statuses a recipient may see.
RECEIVED_STATUSES = (messaging.AnnouncementStatus.SENT, messaging.AnnouncementStatus.RECALLED)


def get_received_announcement(
    db: Session, actor: Actor, announcement_id: uuid.UUID
) -> tuple[messaging.Announcement, messaging.AnnouncementRecipient]:
    """Load an announcement the actor received, with the actor's recipient row; else 404
    (another group's or Kita's announcement, a draft, a scheduled one, an unknown id)."""
    row = db.execute(
        select(messaging.Announcement, messaging.AnnouncementRecipient)
        .join(
            messaging.AnnouncementRecipient,
            messaging.AnnouncementRecipient.announcement_id == messaging.Announcement.id,
        )
        .where(
            messaging.Announcement.id == announcement_id,
            messaging.AnnouncementRecipient.user_id == actor.id,
            messaging.Announcement.status.in_(RECEIVED_STATUSES),
        )
    ).first()
    if row is None:
        raise NotFoundError()
    return row[0], row[1]


def _announcement_targets(
    db: Session, announcement: messaging.Announcement
) -> list[messaging.AnnouncementTarget]:
    return list(
        db.scalars(
            select(messaging.AnnouncementTarget).where(
                messaging.AnnouncementTarget.announcement_id == announcement.id
            )
        )
    )


def may_view_announcement_as_staff(
    db: Session, actor: Actor, announcement: messaging.Announcement
) -> bool:
    """The author, admins of the announcement's provider, and leaders and educators of a Kita
    it was addressed to (the Kita's staff: they get asked about it)."""
    if announcement.author_id == actor.id:
        return True
    if actor.admin_provider_id is not None and actor.admin_provider_id == announcement.provider_id:
        return True
    return any(
        actor.has_role(target.kita_id, Role.LEADER, Role.EDUCATOR)
        for target in _announcement_targets(db, announcement)
    )


def may_view_reach(db: Session, actor: Actor, announcement: messaging.Announcement) -> bool:
    """Who sees which families read an announcement: its author, admins of its provider,
    leaders of a Kita it was addressed to, and educators of a group it was addressed to (a
    whole-Kita announcement addresses every group; one to a family addresses the child's
    group)."""
    if announcement.author_id == actor.id:
        return True
    if actor.admin_provider_id is not None and actor.admin_provider_id == announcement.provider_id:
        return True
    for target in _announcement_targets(db, announcement):
        if actor.has_role(target.kita_id, Role.LEADER):
            return True
        if not actor.has_role(target.kita_id, Role.EDUCATOR):
            continue
        group_id = target.group_id
        if target.child_id is not None:
            group_id = db.scalar(select(Child.group_id).where(Child.id == target.child_id))
        if target.group_id is None and target.child_id is None:
            in_kita = db.scalar(
                select(Group.id).where(
                    Group.kita_id == target.kita_id, Group.id.in_(actor.group_ids)
                )
            )
            if in_kita is not None:
                return True
        elif group_id is not None and group_id in actor.group_ids:
            return True
    return False


def get_reach_announcement(
    db: Session, actor: Actor, announcement_id: uuid.UUID
) -> messaging.Announcement:
    """Load an announcement whose reach (and not-reached letters) the actor may see; else 404."""
    announcement = db.get(messaging.Announcement, announcement_id)
    if announcement is None or not may_view_reach(db, actor, announcement):
        raise NotFoundError()
    return announcement


def get_announcement_attachment(
    db: Session, actor: Actor, announcement_id: uuid.UUID, attachment_id: uuid.UUID
) -> tuple[messaging.Announcement, messaging.Attachment]:
    """Load an attachment of an announcement for one of its recipients (not once recalled) or
    its staff (see ``may_view_announcement_as_staff``); else 404, also for an attachment of
    another announcement or of a conversation named under this announcement's URL."""
    attachment = db.get(messaging.Attachment, attachment_id)
    announcement = db.get(messaging.Announcement, announcement_id)
    if attachment is None or announcement is None or attachment.announcement_id != announcement.id:
        raise NotFoundError()
    if may_view_announcement_as_staff(db, actor, announcement):
        return announcement, attachment
    received = db.scalar(
        select(messaging.AnnouncementRecipient.id).where(
            messaging.AnnouncementRecipient.announcement_id == announcement.id,
            messaging.AnnouncementRecipient.user_id == actor.id,
        )
    )
    if received is None or announcement.status is not messaging.AnnouncementStatus.SENT:
        raise NotFoundError()
    return announcement, attachment


# --- announcements ---------------------------------------------------------------------------
# Who writes to whom: provider admins to every Kita of their provider (several at once),
# leaders to their Kita, its groups and families, educators to their own groups and the
# families of those groups (never the whole Kita). Caretakers, council members and parents
# send no announcements.


def may_announce_to_kita(actor: Actor, kita: Kita) -> bool:
    """The whole Kita as audience: its leaders and its provider's admins."""
    return may_manage_kita(actor, kita)


def may_announce_to_group(actor: Actor, group: Group) -> bool:
    """A group as audience: those who may write to the Kita, and the group's educators."""
    if may_announce_to_kita(actor, group.kita):
        return True
    return group.id in actor.group_ids and actor.has_role(group.kita_id, Role.EDUCATOR)


def may_announce_to_child(actor: Actor, child: Child) -> bool:
    """One family (the child's guardians) as audience: as for the child's group or Kita."""
    if may_announce_to_kita(actor, child.kita):
        return True
    return (
        child.group_id is not None
        and child.group_id in actor.group_ids
        and actor.has_role(child.kita_id, Role.EDUCATOR)
    )


def may_send_announcement(actor: Actor, kita: Kita) -> bool:
    """The actor may write announcements to (part of) this Kita."""
    return may_announce_to_kita(actor, kita) or (
        actor.has_role(kita.id, Role.EDUCATOR) and bool(actor.group_ids)
    )


def may_send_announcements(actor: Actor) -> bool:
    """The actor writes announcements somewhere (the staff message pages)."""
    return actor.sends_announcements


def may_manage_announcement(
    db: Session, actor: Actor, announcement: messaging.Announcement
) -> bool:
    """Provider admins of its provider; otherwise every part of its audience must be within
    the actor's reach (a leader's Kita, an educator's groups and their families)."""
    if actor.admin_provider_id is not None and actor.admin_provider_id == announcement.provider_id:
        return True
    targets = announcement.targets
    if not targets:
        return False
    for target in targets:
        if target.child_id is not None:
            child = db.get(Child, target.child_id)
            allowed = child is not None and may_announce_to_child(actor, child)
        elif target.group_id is not None:
            group = db.get(Group, target.group_id)
            allowed = group is not None and may_announce_to_group(actor, group)
        else:
            kita = db.get(Kita, target.kita_id)
            allowed = kita is not None and may_announce_to_kita(actor, kita)
        if not allowed:
            return False
    return True


def get_announcement_for_staff(
    db: Session, actor: Actor, announcement_id: uuid.UUID
) -> messaging.Announcement:
    """Load an announcement the actor may read, change, send and recall as staff; else 404
    (parents read announcements through the feed, never here)."""
    announcement = db.get(messaging.Announcement, announcement_id)
    if announcement is None or not may_manage_announcement(db, actor, announcement):
        raise NotFoundError()
    return announcement


def announceable_groups(actor: Actor) -> Select[Group]:
    """Groups the actor may write to, by Kita and name."""
    conditions = _led_and_taught_groups(actor)
    if actor.admin_provider_id is not None:
        conditions.append(
            Group.kita_id.in_(select(Kita.id).where(Kita.provider_id == actor.admin_provider_id))
        )
    return _groups_where(conditions)


def announceable_children(actor: Actor) -> Select[Child]:
    """Children whose families the actor may write to, by name."""
    conditions: list[ColumnElement[bool]] = []
    if actor.admin_provider_id is not None:
        conditions.append(
            Child.kita_id.in_(select(Kita.id).where(Kita.provider_id == actor.admin_provider_id))
        )
    led = [kita_id for kita_id, roles in actor.roles.items() if Role.LEADER in roles]
    if led:
        conditions.append(Child.kita_id.in_(led))
    teaching = [kita_id for kita_id, roles in actor.roles.items() if Role.EDUCATOR in roles]
    if actor.group_ids and teaching:
        conditions.append(Child.group_id.in_(actor.group_ids) & Child.kita_id.in_(teaching))
    return (
        select(Child)
        .where(or_(*conditions) if conditions else false())
        .order_by(Child.last_name, Child.first_name, Child.id)
    )
