"""Organisation services without HTTP: validation, refusals, the account-switch rule, search and
pagination, and the group QR sheet."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.access import accounts_actor_may_switch, load_actor
from kita.errors import ForbiddenError, NotFoundError, ValidationError
from kita.models.accounts import GroupAssignment, Invitation, Membership, Role, ServerSession
from kita.models.audit import AuditEvent
from kita.models.organisation import Child, Group, GuardianLink, Kita, Relation
from kita.services import invitations, organisation
from kita.services.organisation import ChildInput, KitaInput
from tests.factories import make_child, make_group, make_kita, make_provider, make_user

NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
TODAY = NOW.date()


def actions(db: Session) -> list[str]:
    return list(db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


# --- Kitas -----------------------------------------------------------------------------------


def test_provider_admin_creates_a_kita_of_her_provider(db: Session) -> None:
    provider = make_provider(db)
    admin = load_actor(db, make_user(db, admin_of=provider))
    kita = organisation.create_kita(
        db, actor=admin, data=KitaInput("  Kita Regenbogen ", "Hauptstraße 1", "tr")
    )
    assert (kita.provider_id, kita.name, kita.default_locale) == (
        provider.id,
        "Kita Regenbogen",
        "tr",
    )
    assert actions(db) == ["kita.created"]


def test_kita_creation_is_for_provider_admins_only(db: Session) -> None:
    kita = make_kita(db)
    leader = load_actor(db, make_user(db, roles=[(kita, Role.LEADER)]))
    with pytest.raises(NotFoundError):
        organisation.create_kita(db, actor=leader, data=KitaInput("Neu", "", "de"))


def test_kita_validation_names_every_field(db: Session) -> None:
    provider = make_provider(db)
    make_kita(db, provider, name="Sonnenschein")
    admin = load_actor(db, make_user(db, admin_of=provider))
    with pytest.raises(ValidationError) as caught:
        organisation.create_kita(db, actor=admin, data=KitaInput("Sonnenschein", "x" * 301, "xx"))
    assert set(caught.value.fields) == {"name", "address", "default_locale"}
    assert db.scalar(select(func.count()).select_from(Kita)) == 1


def test_leader_cannot_change_kita_settings(db: Session) -> None:
    kita = make_kita(db, name="Alt")
    leader = load_actor(db, make_user(db, roles=[(kita, Role.LEADER)]))
    with pytest.raises(NotFoundError):
        organisation.update_kita_settings(
            db, actor=leader, kita=kita, data=KitaInput("Neu", "", "de")
        )
    assert kita.name == "Alt"


# --- groups ----------------------------------------------------------------------------------


def test_group_names_are_unique_per_kita(db: Session) -> None:
    kita = make_kita(db)
    make_group(db, kita, name="Sonne")
    make_group(db, make_kita(db), name="Mond")
    leader = load_actor(db, make_user(db, roles=[(kita, Role.LEADER)]))
    with pytest.raises(ValidationError) as caught:
        organisation.create_group(db, actor=leader, kita=kita, name="Sonne")
    assert set(caught.value.fields) == {"name"}
    # The same name in another Kita is fine.
    group = organisation.create_group(db, actor=leader, kita=kita, name="Mond")
    assert group.kita_id == kita.id


def test_group_with_children_cannot_be_deleted(db: Session) -> None:
    kita = make_kita(db)
    group = make_group(db, kita)
    make_child(db, group)
    leader = load_actor(db, make_user(db, roles=[(kita, Role.LEADER)]))
    with pytest.raises(ValidationError):
        organisation.delete_group(db, actor=leader, group=group, now=NOW)
    assert db.get(Group, group.id) is not None


def test_deleting_a_group_ends_assignments_and_open_invitations(db: Session) -> None:
    kita = make_kita(db)
    group = make_group(db, kita)
    educator = make_user(db, roles=[(kita, Role.EDUCATOR)], groups=[group])
    leader = load_actor(db, make_user(db, roles=[(kita, Role.LEADER)]))
    issued = invitations.create_invitation(
        db,
        actor=leader,
        kita=kita,
        request=invitations.InvitationRequest(role=Role.EDUCATOR, group_id=group.id),
        now=NOW,
        days=14,
    )
    organisation.delete_group(db, actor=leader, group=group, now=NOW)
    db.commit()
    assert db.get(Group, group.id) is None
    assert (
        db.scalars(select(GroupAssignment).where(GroupAssignment.user_id == educator.id)).all()
        == []
    )
    db.refresh(issued.invitation)
    assert issued.invitation.status(NOW) == "revoked"
    assert issued.invitation.group_id is None
    assert actions(db)[-1] == "group.deleted"


# --- staff -----------------------------------------------------------------------------------


def test_educator_groups_are_replaced_within_the_kita_only(db: Session) -> None:
    kita, other = make_kita(db), make_kita(db)
    sonne, mond, fremd = make_group(db, kita), make_group(db, kita), make_group(db, other)
    educator = make_user(
        db, roles=[(kita, Role.EDUCATOR), (other, Role.EDUCATOR)], groups=[sonne, fremd]
    )
    leader = load_actor(db, make_user(db, roles=[(kita, Role.LEADER)]))
    membership = db.scalars(
        select(Membership).where(Membership.user_id == educator.id, Membership.kita_id == kita.id)
    ).one()
    organisation.set_educator_groups(db, actor=leader, membership=membership, group_ids=[mond.id])
    assigned = set(
        db.scalars(select(GroupAssignment.group_id).where(GroupAssignment.user_id == educator.id))
    )
    assert assigned == {mond.id, fremd.id}
    with pytest.raises(ValidationError) as caught:
        organisation.set_educator_groups(
            db, actor=leader, membership=membership, group_ids=[fremd.id]
        )
    assert set(caught.value.fields) == {"groups"}


def test_leader_cannot_remove_her_own_last_leader_role(db: Session) -> None:
    kita = make_kita(db)
    user = make_user(db, roles=[(kita, Role.LEADER)])
    membership = db.scalars(select(Membership).where(Membership.user_id == user.id)).one()
    with pytest.raises(ValidationError):
        organisation.remove_membership(db, actor=load_actor(db, user), membership=membership)
    assert db.get(Membership, membership.id) is not None


def test_removing_the_educator_role_ends_group_assignments(db: Session) -> None:
    kita = make_kita(db)
    group = make_group(db, kita)
    educator = make_user(db, roles=[(kita, Role.EDUCATOR), (kita, Role.COUNCIL)], groups=[group])
    leader = load_actor(db, make_user(db, roles=[(kita, Role.LEADER)]))
    membership = db.scalars(
        select(Membership).where(
            Membership.user_id == educator.id, Membership.role == Role.EDUCATOR
        )
    ).one()
    organisation.remove_membership(db, actor=leader, membership=membership)
    roles = set(db.scalars(select(Membership.role).where(Membership.user_id == educator.id)))
    assert roles == {Role.COUNCIL}
    assert (
        db.scalars(select(GroupAssignment).where(GroupAssignment.user_id == educator.id)).all()
        == []
    )
    assert actions(db) == ["membership.removed"]


def test_parent_roles_are_not_removed_on_the_staff_pages(db: Session) -> None:
    kita = make_kita(db)
    parent = make_user(db, roles=[(kita, Role.PARENT)])
    leader = load_actor(db, make_user(db, roles=[(kita, Role.LEADER)]))
    membership = db.scalars(select(Membership).where(Membership.user_id == parent.id)).one()
    with pytest.raises(NotFoundError):
        organisation.remove_membership(db, actor=leader, membership=membership)


def test_accounts_a_leader_may_switch(db: Session) -> None:
    provider = make_provider(db)
    kita, other = make_kita(db, provider), make_kita(db, provider)
    leader_user = make_user(db, roles=[(kita, Role.LEADER)])
    leader = load_actor(db, leader_user)
    own = make_user(db, roles=[(kita, Role.EDUCATOR)])
    shared = make_user(db, roles=[(kita, Role.EDUCATOR), (other, Role.EDUCATOR)])
    guardian_elsewhere = make_user(
        db, roles=[(kita, Role.CARETAKER)], children=[make_child(db, make_group(db, other))]
    )
    admin_member = make_user(db, roles=[(kita, Role.COUNCIL)], admin_of=provider)
    ids = [own.id, shared.id, guardian_elsewhere.id, admin_member.id, leader_user.id]
    assert accounts_actor_may_switch(db, leader, ids) == {own.id}
    # The provider's admin manages both Kitas, so the shared educator is hers to switch.
    admin = load_actor(db, make_user(db, admin_of=provider))
    assert accounts_actor_may_switch(db, admin, ids) == {
        own.id,
        shared.id,
        guardian_elsewhere.id,
        leader_user.id,
    }


def test_disabling_ends_sessions_and_refuses_foreign_staff(db: Session) -> None:
    provider = make_provider(db)
    kita, other = make_kita(db, provider), make_kita(db, provider)
    leader = load_actor(db, make_user(db, roles=[(kita, Role.LEADER)]))
    own = make_user(db, roles=[(kita, Role.EDUCATOR)])
    shared = make_user(db, roles=[(kita, Role.EDUCATOR), (other, Role.EDUCATOR)])
    db.add(ServerSession(id=b"s" * 32, user_id=own.id, data={}))
    db.commit()
    organisation.set_member_active(db, actor=leader, kita=kita, user=own, active=False)
    assert own.is_active is False
    assert db.scalars(select(ServerSession).where(ServerSession.user_id == own.id)).all() == []
    with pytest.raises(ForbiddenError):
        organisation.set_member_active(db, actor=leader, kita=kita, user=shared, active=False)
    assert shared.is_active is True
    assert actions(db) == ["account.disabled"]


# --- children --------------------------------------------------------------------------------


def test_child_validation(db: Session) -> None:
    kita = make_kita(db)
    foreign_group = make_group(db, make_kita(db))
    leader = load_actor(db, make_user(db, roles=[(kita, Role.LEADER)]))
    bad = ChildInput(
        first_name="",
        last_name="x" * 121,
        birth_date=TODAY + timedelta(days=1),
        group_id=foreign_group.id,
    )
    with pytest.raises(ValidationError) as caught:
        organisation.create_child(db, actor=leader, kita=kita, data=bad, today=TODAY)
    assert set(caught.value.fields) == {"first_name", "last_name", "birth_date", "group_id"}
    dates = ChildInput(
        first_name="Mia",
        last_name="Beispiel",
        birth_date=date(2021, 5, 1),
        entry_date=date(2022, 8, 1),
        leave_date=date(2022, 7, 31),
    )
    with pytest.raises(ValidationError) as caught:
        organisation.create_child(db, actor=leader, kita=kita, data=dates, today=TODAY)
    assert set(caught.value.fields) == {"leave_date"}
    early = ChildInput(
        first_name="Mia", last_name="B", birth_date=date(2021, 5, 1), entry_date=date(2020, 1, 1)
    )
    with pytest.raises(ValidationError) as caught:
        organisation.create_child(db, actor=leader, kita=kita, data=early, today=TODAY)
    assert set(caught.value.fields) == {"entry_date"}
    implausible = ChildInput(first_name="Mia", last_name="B", birth_date=date(202, 5, 1))
    with pytest.raises(ValidationError) as caught:
        organisation.create_child(db, actor=leader, kita=kita, data=implausible, today=TODAY)
    assert set(caught.value.fields) == {"birth_date"}
    assert db.scalar(select(func.count()).select_from(Child)) == 0


def test_search_is_case_insensitive_also_beyond_ascii(db: Session) -> None:
    kita = make_kita(db)
    group = make_group(db, kita)
    make_child(db, group, first_name="Özlem", last_name="Yılmaz")
    make_child(db, group, first_name="Emil", last_name="Müller")
    make_child(db, group, first_name="Ana", last_name="100%")

    def names(search: str) -> list[str]:
        page = organisation.list_children(db, kita=kita, search=search)
        return [row.child.first_name for row in page.items]

    assert names("özlem") == ["Özlem"]
    assert names("ÖZL") == ["Özlem"]
    assert names("MÜLLER emil") == ["Emil"]
    assert names("müll") == ["Emil"]
    assert names("%") == ["Ana"]  # LIKE wildcards are matched literally
    assert names("nobody") == []


def test_children_are_paginated_by_fifty(db: Session) -> None:
    kita = make_kita(db)
    group = make_group(db, kita)
    db.add_all(
        Child(kita_id=kita.id, group_id=group.id, first_name="Kind", last_name=f"N{n:03d}")
        for n in range(51)
    )
    db.add(Child(kita_id=kita.id, first_name="Ohne", last_name="Gruppe"))
    db.commit()
    first = organisation.list_children(db, kita=kita, group_id=group.id)
    second = organisation.list_children(db, kita=kita, group_id=group.id, page=2)
    assert (first.total, first.pages, len(first.items), len(second.items)) == (51, 2, 50, 1)
    assert second.items[0].child.last_name == "N050"
    assert not second.has_next and second.has_previous
    loose = organisation.list_children(db, kita=kita, without_group=True)
    assert [row.child.last_name for row in loose.items] == ["Gruppe"]


def test_removing_the_last_child_link_ends_the_parent_role(db: Session) -> None:
    kita = make_kita(db)
    group = make_group(db, kita)
    first, second = make_child(db, group), make_child(db, group)
    parent = make_user(db, roles=[(kita, Role.PARENT)], children=[first, second])
    leader = load_actor(db, make_user(db, roles=[(kita, Role.LEADER)]))
    links = db.scalars(select(GuardianLink).where(GuardianLink.user_id == parent.id)).all()
    organisation.remove_guardian_link(db, actor=leader, link=links[0])
    assert db.scalars(select(Membership.role).where(Membership.user_id == parent.id)).all() == [
        Role.PARENT
    ]
    organisation.remove_guardian_link(db, actor=leader, link=links[1])
    assert db.scalars(select(Membership).where(Membership.user_id == parent.id)).all() == []
    assert db.scalars(select(GuardianLink).where(GuardianLink.user_id == parent.id)).all() == []


# --- invitations -----------------------------------------------------------------------------


def test_invitation_list_filters_by_status(db: Session) -> None:
    kita = make_kita(db)
    leader = load_actor(db, make_user(db, roles=[(kita, Role.LEADER)]))
    request = invitations.InvitationRequest(role=Role.CARETAKER)
    issued = [
        invitations.create_invitation(db, actor=leader, kita=kita, request=request, now=NOW, days=d)
        for d in (14, 14, 14)
    ]
    invitations.revoke_invitation(db, actor=leader, invitation=issued[0].invitation, now=NOW)
    issued[1].invitation.redeemed_at = NOW
    later = NOW + timedelta(days=20)
    fresh = invitations.create_invitation(
        db, actor=leader, kita=kita, request=request, now=later, days=14
    )

    def listed(status: str) -> set[object]:
        page = organisation.list_invitations(db, kita=kita, now=later, status=status)
        return {row.invitation.id for row in page.items}

    assert listed("revoked") == {issued[0].invitation.id}
    assert listed("redeemed") == {issued[1].invitation.id}
    assert listed("expired") == {issued[2].invitation.id}
    assert listed("open") == {fresh.invitation.id}
    assert organisation.list_invitations(db, kita=kita, now=later).total == 4


def test_group_sheet_invites_children_without_guardian(db: Session) -> None:
    kita = make_kita(db)
    group = make_group(db, kita)
    alone = make_child(db, group, first_name="Alone")
    cared = make_child(db, group, first_name="Cared")
    left = make_child(db, group, first_name="Left")
    left.leave_date = TODAY - timedelta(days=1)
    db.commit()
    make_user(db, roles=[(kita, Role.PARENT)], children=[cared])
    leader = load_actor(db, make_user(db, roles=[(kita, Role.LEADER)]))
    older = invitations.create_invitation(
        db,
        actor=leader,
        kita=kita,
        request=invitations.InvitationRequest(
            role=Role.PARENT, child_id=alone.id, relation=Relation.MOTHER
        ),
        now=NOW,
        days=14,
    )
    cards = invitations.issue_group_sheet(db, actor=leader, group=group, now=NOW, days=14)
    assert [card.child.id for card in cards] == [alone.id]
    assert older.invitation.status(NOW) == "revoked"
    found = invitations.find_open_invitation(db, token=cards[0].issued.token, now=NOW)
    assert (found.child_id, found.role) == (alone.id, Role.PARENT)
    open_for_alone = db.scalars(
        select(Invitation).where(Invitation.child_id == alone.id, Invitation.revoked_at.is_(None))
    ).all()
    assert len(open_for_alone) == 1
    assert actions(db)[-3:] == [
        "invitation.revoked",
        "invitation.created",
        "invitation.group_sheet",
    ]


def test_group_sheet_of_another_kita_is_refused(db: Session) -> None:
    kita = make_kita(db)
    foreign = make_group(db, make_kita(db))
    make_child(db, foreign)
    leader = load_actor(db, make_user(db, roles=[(kita, Role.LEADER)]))
    with pytest.raises(NotFoundError):
        invitations.issue_group_sheet(db, actor=leader, group=foreign, now=NOW, days=14)
    assert db.scalar(select(func.count()).select_from(Invitation)) == 0
