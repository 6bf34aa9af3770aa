"""Staff and roles over HTTP: the list, group assignments, removing roles, disabling accounts
(which ends their sessions), and staff invitations whose link is shown once and works."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.models.accounts import (
    GroupAssignment,
    Invitation,
    Membership,
    Role,
    ServerSession,
    User,
)
from kita.models.audit import AuditEvent
from kita.models.organisation import Group, Kita, Provider
from kita.services.accounts import hash_token
from tests.conftest import login_as, post_form
from tests.factories import make_child, make_group, make_kita, make_provider, make_user

JOIN_RE = re.compile(r"https://kita\.test/join/([A-Za-z0-9_-]+)")


def audit_actions(db: Session) -> list[str]:
    db.rollback()  # see what the requests committed
    return list(db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


def membership_of(db: Session, user: User, kita: Kita, role: Role) -> Membership:
    return db.scalars(
        select(Membership).where(
            Membership.user_id == user.id, Membership.kita_id == kita.id, Membership.role == role
        )
    ).one()


@pytest.fixture
def provider(db: Session) -> Provider:
    return make_provider(db)


@pytest.fixture
def kita(db: Session, provider: Provider) -> Kita:
    return make_kita(db, provider)


@pytest.fixture
def group(db: Session, kita: Kita) -> Group:
    return make_group(db, kita, name="Sonne")


@pytest.fixture
def leader(db: Session, kita: Kita) -> User:
    return make_user(db, roles=[(kita, Role.LEADER)], name="Lea Leitung", locale="en")


@pytest.fixture
def educator(db: Session, kita: Kita, group: Group) -> User:
    return make_user(db, roles=[(kita, Role.EDUCATOR)], groups=[group], name="Eda Erzieherin")


def test_staff_list_shows_roles_and_groups_but_no_parents(
    client: FlaskClient,
    db: Session,
    login: Any,
    kita: Kita,
    group: Group,
    leader: User,
    educator: User,
) -> None:
    make_user(db, roles=[(kita, Role.CARETAKER)], name="Hans Hausmeister")
    make_user(db, roles=[(kita, Role.PARENT)], children=[make_child(db, group)], name="Paula")
    login(leader)
    page = client.get(f"/admin/kitas/{kita.id}/staff").get_data(as_text=True)
    for text in ("Lea Leitung", "Eda Erzieherin", "Hans Hausmeister", "Caretaker", "Sonne"):
        assert text in page
    assert "Paula" not in page
    educator_membership = membership_of(db, educator, kita, Role.EDUCATOR)
    assert f"/staff/{educator_membership.id}/groups" in page


def test_educator_groups_are_changed(
    client: FlaskClient,
    db: Session,
    login: Any,
    kita: Kita,
    group: Group,
    leader: User,
    educator: User,
) -> None:
    mond = make_group(db, kita, name="Mond")
    foreign = make_group(db, make_kita(db))
    path = (
        f"/admin/kitas/{kita.id}/staff/{membership_of(db, educator, kita, Role.EDUCATOR).id}/groups"
    )
    login(leader)
    assert "Sonne" in client.get(path).get_data(as_text=True)
    refused = post_form(client, path, {"groups": [str(foreign.id)]}, token_from=path)
    assert refused.status_code == 422
    assert "Please choose groups of this Kita." in refused.get_data(as_text=True)
    response = post_form(client, path, {"groups": [str(mond.id)]}, token_from=path)
    assert response.status_code == 302
    db.rollback()
    assigned = db.scalars(
        select(GroupAssignment.group_id).where(GroupAssignment.user_id == educator.id)
    ).all()
    assert assigned == [mond.id]
    assert audit_actions(db) == ["membership.groups_changed"]


def test_role_is_removed_after_confirmation(
    client: FlaskClient, db: Session, login: Any, kita: Kita, leader: User, educator: User
) -> None:
    membership = membership_of(db, educator, kita, Role.EDUCATOR)
    membership_id = membership.id
    path = f"/admin/kitas/{kita.id}/staff/{membership_id}/remove"
    login(leader)
    staff_page = f"/admin/kitas/{kita.id}/staff"
    assert post_form(client, path, {}, token_from=staff_page).status_code == 422
    db.rollback()
    assert db.get(Membership, membership_id) is not None
    response = post_form(client, path, {"confirm": "yes"}, token_from=staff_page)
    assert response.status_code == 302
    db.rollback()
    assert db.get(Membership, membership_id) is None
    assert (
        db.scalars(select(GroupAssignment).where(GroupAssignment.user_id == educator.id)).all()
        == []
    )
    assert audit_actions(db) == ["membership.removed"]


def test_leader_cannot_remove_her_own_last_leader_role(
    client: FlaskClient, db: Session, login: Any, kita: Kita, leader: User
) -> None:
    membership_id = membership_of(db, leader, kita, Role.LEADER).id
    login(leader)
    staff_page = f"/admin/kitas/{kita.id}/staff"
    response = post_form(
        client,
        f"/admin/kitas/{kita.id}/staff/{membership_id}/remove",
        {"confirm": "yes"},
        token_from=staff_page,
    )
    assert response.status_code == 422
    assert "You cannot remove your own last leader role." in response.get_data(as_text=True)
    db.rollback()
    assert db.get(Membership, membership_id) is not None


def test_disabling_an_account_ends_its_session_at_once(
    app: Flask,
    client: FlaskClient,
    db: Session,
    login: Any,
    kita: Kita,
    leader: User,
    educator: User,
) -> None:
    educator_client = app.test_client()
    login_as(educator_client, app, educator)
    assert educator_client.get("/home").status_code == 200
    login(leader)
    staff_page = f"/admin/kitas/{kita.id}/staff"
    path = f"/admin/kitas/{kita.id}/accounts/{educator.id}/active"
    # Disabling needs the confirmation.
    assert post_form(client, path, {"active": "0"}, token_from=staff_page).status_code == 422
    assert educator_client.get("/home").status_code == 200
    response = post_form(client, path, {"active": "0", "confirm": "yes"}, token_from=staff_page)
    assert response.status_code == 302
    assert educator_client.get("/home").status_code == 302
    db.rollback()
    db.refresh(educator)
    assert educator.is_active is False
    owned = select(func.count()).select_from(ServerSession)
    assert db.scalar(owned.where(ServerSession.user_id == educator.id)) == 0
    assert "Disabled" in client.get(staff_page).get_data(as_text=True)
    enabled = post_form(client, path, {"active": "1"}, token_from=staff_page)
    assert enabled.status_code == 302
    db.rollback()
    db.refresh(educator)
    assert educator.is_active is True
    assert audit_actions(db) == ["account.disabled", "account.enabled"]


def test_leader_cannot_disable_staff_of_another_kita(
    client: FlaskClient, db: Session, login: Any, provider: Provider, kita: Kita, leader: User
) -> None:
    other = make_kita(db, provider)
    shared = make_user(db, roles=[(kita, Role.EDUCATOR), (other, Role.EDUCATOR)])
    login(leader)
    staff_page = f"/admin/kitas/{kita.id}/staff"
    assert f"/accounts/{shared.id}/active" not in client.get(staff_page).get_data(as_text=True)
    response = post_form(
        client,
        f"/admin/kitas/{kita.id}/accounts/{shared.id}/active",
        {"active": "0", "confirm": "yes"},
        token_from=staff_page,
    )
    assert response.status_code == 403
    db.rollback()
    db.refresh(shared)
    assert shared.is_active is True
    # The provider's admin manages both Kitas and may.
    login(make_user(db, admin_of=provider))
    response = post_form(
        client,
        f"/admin/kitas/{kita.id}/accounts/{shared.id}/active",
        {"active": "0", "confirm": "yes"},
        token_from=staff_page,
    )
    assert response.status_code == 302
    db.rollback()
    db.refresh(shared)
    assert shared.is_active is False


def test_account_outside_the_kita_is_not_found(
    client: FlaskClient, db: Session, login: Any, kita: Kita, leader: User
) -> None:
    stranger = make_user(db, roles=[(make_kita(db), Role.EDUCATOR)])
    login(leader)
    response = post_form(
        client,
        f"/admin/kitas/{kita.id}/accounts/{stranger.id}/active",
        {"active": "0", "confirm": "yes"},
        token_from="/admin/",
    )
    assert response.status_code == 404
    db.rollback()
    db.refresh(stranger)
    assert stranger.is_active is True


def test_staff_invitation_is_shown_once_and_can_be_redeemed(
    app: Flask, client: FlaskClient, db: Session, login: Any, kita: Kita, group: Group, leader: User
) -> None:
    login(leader)
    path = f"/admin/kitas/{kita.id}/staff/invite"
    response = post_form(
        client,
        path,
        {"role": "educator", "group_id": str(group.id), "email": "neu@example.org", "locale": "tr"},
        token_from=path,
    )
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    match = JOIN_RE.search(page)
    assert match
    token = match.group(1)
    assert "<svg" in page
    db.rollback()
    invitation = db.scalars(select(Invitation)).one()
    assert invitation.token_hash == hash_token(token)
    assert (invitation.role, invitation.group_id, invitation.locale) == (
        Role.EDUCATOR,
        group.id,
        "tr",
    )
    # The list never shows the link again.
    assert token not in client.get(f"/admin/kitas/{kita.id}/invitations").get_data(as_text=True)
    newcomer = app.test_client()
    joined = post_form(
        newcomer,
        f"/join/{token}",
        {
            "display_name": "Neu",
            "email": "neu@example.org",
            "password": "a long enough password",
            "password_repeat": "a long enough password",
            "locale": "tr",
        },
        token_from=f"/join/{token}",
    )
    assert joined.status_code == 302
    db.rollback()
    user = db.scalars(select(User).where(User.email == "neu@example.org")).one()
    assert membership_of(db, user, kita, Role.EDUCATOR)
    assert db.scalars(
        select(GroupAssignment.group_id).where(GroupAssignment.user_id == user.id)
    ).all() == [group.id]


@pytest.mark.parametrize(
    ("data", "field_message"),
    [
        ({"role": "educator"}, "Please choose the educator's group."),
        ({"role": "parent"}, "Please choose one of the offered options."),
        ({"role": "caretaker", "email": "not-an-address"}, "Please enter a valid e-mail address."),
        ({"role": "caretaker", "locale": "xx"}, "Please choose one of the offered options."),
    ],
)
def test_staff_invitation_validation(
    client: FlaskClient,
    db: Session,
    login: Any,
    kita: Kita,
    leader: User,
    data: dict[str, str],
    field_message: str,
) -> None:
    login(leader)
    path = f"/admin/kitas/{kita.id}/staff/invite"
    response = post_form(client, path, data, token_from=path)
    assert response.status_code == 422
    assert field_message in response.get_data(as_text=True)
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Invitation)) == 0


def test_staff_invitation_with_a_group_of_another_kita_is_refused(
    client: FlaskClient, db: Session, login: Any, kita: Kita, leader: User
) -> None:
    foreign = make_group(db, make_kita(db))
    login(leader)
    path = f"/admin/kitas/{kita.id}/staff/invite"
    response = post_form(
        client, path, {"role": "educator", "group_id": str(foreign.id)}, token_from=path
    )
    assert response.status_code == 422
    assert "Please choose a group of this Kita." in response.get_data(as_text=True)
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Invitation)) == 0
