"""Invitations: families and staff join only by a single-use, expiring link (or its QR code)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import segno
from argon2 import PasswordHasher
from flask_babel import lazy_gettext as _l
from sqlalchemy import exists, or_, select, update
from sqlalchemy.orm import Session

from kita import audit
from kita.access import Actor, may_manage_kita
from kita.config import SUPPORTED_LOCALES
from kita.errors import InvitationError, NotFoundError, ValidationError
from kita.models.accounts import GroupAssignment, Invitation, Membership, Role, User
from kita.models.organisation import Child, Group, GuardianLink, Kita, Relation
from kita.services.accounts import (
    hash_token,
    normalise_email,
    validate_email,
    validate_password,
)


@dataclass(frozen=True)
class InvitationRequest:
    role: Role
    group_id: uuid.UUID | None = None
    child_id: uuid.UUID | None = None
    relation: Relation | None = None
    has_custody: bool = True
    may_pick_up: bool = True
    email: str | None = None
    locale: str | None = None


@dataclass(frozen=True)
class IssuedInvitation:
    invitation: Invitation
    token: str


def create_invitation(
    db: Session, *, actor: Actor, kita: Kita, request: InvitationRequest, now: datetime, days: int
) -> IssuedInvitation:
    """Issue an invitation: parents are invited for one child, educators for a group."""
    if not may_manage_kita(actor, kita):
        raise NotFoundError()
    errors: dict[str, object] = {}
    if request.role is Role.PARENT:
        child = db.get(Child, request.child_id) if request.child_id else None
        if child is None or child.kita_id != kita.id:
            errors["child_id"] = _l("Please choose a child of this Kita.")
        if request.relation is None:
            errors["relation"] = _l("Please choose the relation to the child.")
    elif request.child_id is not None:
        errors["child_id"] = _l("Only parents are invited for a child.")
    if request.group_id is not None:
        group = db.get(Group, request.group_id)
        if group is None or group.kita_id != kita.id:
            errors["group_id"] = _l("Please choose a group of this Kita.")
    if request.role is Role.EDUCATOR and request.group_id is None:
        errors["group_id"] = _l("Please choose the educator's group.")
    email = None
    if request.email:
        try:
            email = validate_email(request.email)
        except ValidationError as exc:
            errors.update(exc.fields)
    if request.locale is not None and request.locale not in SUPPORTED_LOCALES:
        errors["locale"] = _l("Please choose one of the offered languages.")
    if errors:
        raise ValidationError(errors)
    token = secrets.token_urlsafe(24)
    invitation = Invitation(
        id=uuid.uuid4(),
        kita_id=kita.id,
        role=request.role,
        group_id=request.group_id,
        child_id=request.child_id if request.role is Role.PARENT else None,
        relation=request.relation if request.role is Role.PARENT else None,
        has_custody=request.has_custody,
        may_pick_up=request.may_pick_up,
        email=email,
        locale=request.locale,
        token_hash=hash_token(token),
        created_by_id=actor.id,
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    db.add(invitation)
    db.flush()
    audit.record(
        db,
        action="invitation.created",
        actor_id=actor.id,
        object_type="invitation",
        object_id=invitation.id,
        kita_id=kita.id,
        detail=request.role.value,
        at=now,
    )
    return IssuedInvitation(invitation, token)


def revoke_invitation(db: Session, *, actor: Actor, invitation: Invitation, now: datetime) -> None:
    """Revoke an open invitation; used, expired or already revoked ones are left as they are."""
    if not may_manage_kita(actor, invitation.kita):
        raise NotFoundError()
    if invitation.status(now) != "open":
        raise ValidationError({}, _l("Only open invitations can be revoked."))
    invitation.revoked_at = now
    audit.record(
        db,
        action="invitation.revoked",
        actor_id=actor.id,
        object_type="invitation",
        object_id=invitation.id,
        kita_id=invitation.kita_id,
        at=now,
    )


def find_open_invitation(db: Session, *, token: str, now: datetime) -> Invitation:
    """The open invitation for ``token``; ``InvitationError`` otherwise."""
    if not token or len(token) > 128:
        raise InvitationError()
    invitation = db.scalars(
        select(Invitation).where(Invitation.token_hash == hash_token(token))
    ).first()
    if invitation is None or invitation.status(now) != "open":
        raise InvitationError()
    return invitation


@dataclass(frozen=True)
class NewAccount:
    display_name: str
    email: str
    password: str
    locale: str | None


def redeem_invitation(
    db: Session,
    hasher: PasswordHasher,
    *,
    token: str,
    now: datetime,
    existing_user: User | None = None,
    new_account: NewAccount | None = None,
) -> User:
    """Use an invitation: create the account (or extend a logged-in one) with the invited role.

    Single use is enforced with a guarded UPDATE, so two concurrent redemptions cannot both win.
    """
    invitation = find_open_invitation(db, token=token, now=now)
    if existing_user is None:
        if new_account is None:
            raise ValidationError({}, _l("Please fill in the form."))
        user = _create_user(db, hasher, new_account)
    else:
        user = existing_user
    claimed = db.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, Invitation.redeemed_at.is_(None))
        .values(redeemed_at=now, redeemed_by_id=user.id)
    )
    if not getattr(claimed, "rowcount", 0):
        raise InvitationError()
    _grant(db, user, invitation)
    audit.record(
        db,
        action="invitation.redeemed",
        actor_id=user.id,
        object_type="invitation",
        object_id=invitation.id,
        kita_id=invitation.kita_id,
        at=now,
    )
    return user


def check_new_account(db: Session, account: NewAccount) -> dict[str, object]:
    """Field errors for a new account (empty when it can be created)."""
    errors: dict[str, object] = {}
    name = account.display_name.strip()
    if not name:
        errors["display_name"] = _l("Please enter your name.")
    elif len(name) > 120:
        errors["display_name"] = _l("The name is too long.")
    email = ""
    try:
        email = validate_email(account.email)
    except ValidationError as exc:
        errors.update(exc.fields)
    try:
        validate_password(account.password, email=email)
    except ValidationError as exc:
        errors.update(exc.fields)
    if account.locale is not None and account.locale not in SUPPORTED_LOCALES:
        errors["locale"] = _l("Please choose one of the offered languages.")
    if email and db.scalars(select(User.id).where(User.email == email)).first() is not None:
        errors["email"] = _l(
            "This e-mail address already has an account. Please log in first and then open "
            "the invitation link again."
        )
    return errors


def _create_user(db: Session, hasher: PasswordHasher, account: NewAccount) -> User:
    errors = check_new_account(db, account)
    if errors:
        raise ValidationError(errors)
    name = account.display_name.strip()
    email = validate_email(account.email)
    user = User(
        id=uuid.uuid4(),
        email=normalise_email(email),
        display_name=name,
        password_hash=hasher.hash(account.password),
        locale=account.locale,
    )
    db.add(user)
    db.flush()
    return user


def _grant(db: Session, user: User, invitation: Invitation) -> None:
    has_role = db.scalars(
        select(Membership.id).where(
            Membership.user_id == user.id,
            Membership.kita_id == invitation.kita_id,
            Membership.role == invitation.role,
        )
    ).first()
    if has_role is None:
        db.add(Membership(user_id=user.id, kita_id=invitation.kita_id, role=invitation.role))
    if invitation.role is Role.PARENT and invitation.child_id is not None:
        linked = db.scalars(
            select(GuardianLink.id).where(
                GuardianLink.child_id == invitation.child_id, GuardianLink.user_id == user.id
            )
        ).first()
        if linked is None:
            db.add(
                GuardianLink(
                    child_id=invitation.child_id,
                    user_id=user.id,
                    relation=invitation.relation or Relation.GUARDIAN,
                    has_custody=invitation.has_custody,
                    may_pick_up=invitation.may_pick_up,
                )
            )
    if invitation.role in {Role.EDUCATOR, Role.LEADER} and invitation.group_id is not None:
        assigned = db.scalars(
            select(GroupAssignment.id).where(
                GroupAssignment.user_id == user.id, GroupAssignment.group_id == invitation.group_id
            )
        ).first()
        if assigned is None:
            db.add(GroupAssignment(user_id=user.id, group_id=invitation.group_id))
    db.flush()


@dataclass(frozen=True)
class SheetCard:
    """One card of a group's QR sheet: the child and the fresh invitation for the family."""

    child: Child
    issued: IssuedInvitation


def issue_group_sheet(
    db: Session, *, actor: Actor, group: Group, now: datetime, days: int
) -> list[SheetCard]:
    """Issue a fresh parent invitation for every child of the group that has no guardian yet.

    Children who have left are skipped. Older open parent invitations of those children are
    revoked first, so only the printed code works. Cards come in name order.
    """
    kita = group.kita
    if not may_manage_kita(actor, kita):
        raise NotFoundError()
    children = db.scalars(
        select(Child)
        .where(
            Child.group_id == group.id,
            ~exists().where(GuardianLink.child_id == Child.id),
            or_(Child.leave_date.is_(None), Child.leave_date >= now.date()),
        )
        .order_by(Child.last_name, Child.first_name, Child.id)
    ).all()
    if children:
        older = db.scalars(
            select(Invitation).where(
                Invitation.child_id.in_([child.id for child in children]),
                Invitation.role == Role.PARENT,
                Invitation.revoked_at.is_(None),
                Invitation.redeemed_at.is_(None),
                Invitation.expires_at > now,
            )
        ).all()
        for invitation in older:
            revoke_invitation(db, actor=actor, invitation=invitation, now=now)
    cards = [
        SheetCard(
            child,
            create_invitation(
                db,
                actor=actor,
                kita=kita,
                # The family's details are unknown when printing; the leader adjusts relation,
                # custody and pick-up on the child's page once the family has joined.
                request=InvitationRequest(
                    role=Role.PARENT, child_id=child.id, relation=Relation.GUARDIAN
                ),
                now=now,
                days=days,
            ),
        )
        for child in children
    ]
    audit.record(
        db,
        action="invitation.group_sheet",
        actor_id=actor.id,
        object_type="group",
        object_id=group.id,
        kita_id=kita.id,
        detail=str(len(cards)),
        at=now,
    )
    return cards


def qr_svg(url: str) -> str:
    """An inline SVG QR code for ``url`` (no external service, no image file)."""
    # A fixed mask skips segno's evaluation of all eight masks (8x faster for QR sheets of a
    # whole import); any mask gives a valid, readable code.
    return str(segno.make(url, error="m", mask=0).svg_inline(scale=4, border=2))
