"""Joining by invitation: single use, expiring, revocable; parents get their child linked."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.access import load_actor
from kita.errors import NotFoundError, ValidationError
from kita.models.accounts import GroupAssignment, Invitation, Membership, Role, User
from kita.models.organisation import GuardianLink, Relation
from kita.services.invitations import InvitationRequest, create_invitation, revoke_invitation
from tests.conftest import post_form
from tests.factories import make_child, make_group, make_kita, make_user


def _issue(db: Session, leader: User, kita: object, **kwargs: object) -> str:
    request = InvitationRequest(**kwargs)  # type: ignore[arg-type]
    issued = create_invitation(
        db,
        actor=load_actor(db, leader),
        kita=kita,  # type: ignore[arg-type]
        request=request,
        now=datetime.now(UTC),
        days=14,
    )
    db.commit()
    return issued.token


def _account(email: str = "new@example.org", locale: str = "ar") -> dict[str, str]:
    return {
        "display_name": "Nour Haddad",
        "email": email,
        "locale": locale,
        "password": "a long password",
        "password_repeat": "a long password",
    }


def test_parent_joins_and_is_linked_to_the_child(client: FlaskClient, db: Session) -> None:
    kita = make_kita(db)
    child = make_child(db, make_group(db, kita), first_name="Omar")
    leader = make_user(db, roles=[(kita, Role.LEADER)])
    token = _issue(
        db,
        leader,
        kita,
        role=Role.PARENT,
        child_id=child.id,
        relation=Relation.FATHER,
        may_pick_up=False,
    )
    page = client.get(f"/join/{token}")
    assert page.status_code == 200
    assert kita.name in page.get_data(as_text=True)
    response = post_form(client, f"/join/{token}", _account(), token_from=f"/join/{token}")
    assert response.status_code == 302
    user = db.scalars(select(User).where(User.email == "new@example.org")).one()
    assert user.locale == "ar"
    link = db.scalars(select(GuardianLink).where(GuardianLink.user_id == user.id)).one()
    assert (link.child_id, link.relation, link.may_pick_up) == (child.id, Relation.FATHER, False)
    home = client.get("/home")
    assert 'dir="rtl"' in home.get_data(as_text=True)
    assert "Omar" in home.get_data(as_text=True)
    # Single use: a second visitor gets "no longer valid".
    assert client.get(f"/join/{token}").status_code == 410


def test_expired_and_revoked_invitations_are_refused(client: FlaskClient, db: Session) -> None:
    kita = make_kita(db)
    leader = make_user(db, roles=[(kita, Role.LEADER)])
    expired = _issue(db, leader, kita, role=Role.COUNCIL)
    invitation = db.scalars(select(Invitation)).one()
    invitation.expires_at = datetime.now(UTC) - timedelta(minutes=1)
    db.commit()
    revoked = _issue(db, leader, kita, role=Role.COUNCIL)
    second = db.scalars(select(Invitation).where(Invitation.id != invitation.id)).one()
    revoke_invitation(db, actor=load_actor(db, leader), invitation=second, now=datetime.now(UTC))
    db.commit()
    for token in (expired, revoked, "made-up-token"):
        response = client.get(f"/join/{token}")
        assert response.status_code == 410
        assert "no longer valid" in response.get_data(as_text=True)
    assert db.scalar(select(func.count()).select_from(User)) == 1


def test_educator_invitation_assigns_the_group_and_asks_for_totp(
    client: FlaskClient, db: Session
) -> None:
    kita = make_kita(db)
    group = make_group(db, kita)
    leader = make_user(db, roles=[(kita, Role.LEADER)])
    token = _issue(db, leader, kita, role=Role.EDUCATOR, group_id=group.id)
    response = post_form(
        client, f"/join/{token}", _account("edu@example.org", "de"), token_from=f"/join/{token}"
    )
    assert response.headers["Location"].endswith("/account/two-factor")
    user = db.scalars(select(User).where(User.email == "edu@example.org")).one()
    assert db.scalars(
        select(GroupAssignment.group_id).where(GroupAssignment.user_id == user.id)
    ).all() == [group.id]
    # Until TOTP is set up, every page leads to the enrolment.
    assert client.get("/home").headers["Location"].endswith("/account/two-factor")


def test_logged_in_parent_adds_a_second_child(
    client: FlaskClient, app: Flask, db: Session, login: object
) -> None:
    kita = make_kita(db)
    group = make_group(db, kita)
    first, second = make_child(db, group), make_child(db, group)
    parent = make_user(db, roles=[(kita, Role.PARENT)], children=[first])
    leader = make_user(db, roles=[(kita, Role.LEADER)])
    token = _issue(db, leader, kita, role=Role.PARENT, child_id=second.id, relation=Relation.MOTHER)
    login(parent)  # type: ignore[operator]
    response = post_form(client, f"/join/{token}", {}, token_from=f"/join/{token}")
    assert response.status_code == 302
    children = set(
        db.scalars(select(GuardianLink.child_id).where(GuardianLink.user_id == parent.id))
    )
    assert children == {first.id, second.id}
    # no duplicate membership
    assert (
        db.scalar(
            select(func.count()).select_from(Membership).where(Membership.user_id == parent.id)
        )
        == 1
    )


def test_taken_email_and_bad_fields_are_explained_and_nothing_is_used(
    client: FlaskClient, db: Session
) -> None:
    kita = make_kita(db)
    leader = make_user(db, roles=[(kita, Role.LEADER)], email="taken@example.org")
    token = _issue(db, leader, kita, role=Role.COUNCIL)
    data = _account("taken@example.org") | {"password_repeat": "different"}
    response = post_form(client, f"/join/{token}", data, token_from=f"/join/{token}")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "already has an account" in body
    assert "not the same" in body
    db.rollback()
    db.expire_all()
    assert db.scalars(select(Invitation.redeemed_at)).one() is None
    assert db.scalar(select(func.count()).select_from(User)) == 1


def test_only_managers_of_the_kita_may_invite(db: Session) -> None:
    kita, other = make_kita(db), make_kita(db)
    outsider = make_user(db, roles=[(other, Role.LEADER)])
    educator = make_user(db, roles=[(kita, Role.EDUCATOR)])
    for actor in (outsider, educator):
        with pytest.raises(NotFoundError):
            _issue(db, actor, kita, role=Role.COUNCIL)


def test_parent_invitation_needs_a_child_of_this_kita(db: Session) -> None:
    kita, other = make_kita(db), make_kita(db)
    foreign_child = make_child(db, make_group(db, other))
    leader = make_user(db, roles=[(kita, Role.LEADER)])
    with pytest.raises(ValidationError) as caught:
        _issue(
            db, leader, kita, role=Role.PARENT, child_id=foreign_child.id, relation=Relation.MOTHER
        )
    assert "child_id" in caught.value.fields


def test_provider_admin_may_invite_for_every_kita_of_the_provider(db: Session) -> None:
    kita = make_kita(db)
    other_provider_kita = make_kita(db)
    admin = make_user(db, admin_of=kita.provider)
    assert _issue(db, admin, kita, role=Role.LEADER)
    with pytest.raises(NotFoundError):
        _issue(db, admin, other_provider_kita, role=Role.LEADER)


def test_password_login_after_joining(client: FlaskClient, app: Flask, db: Session) -> None:
    kita = make_kita(db)
    leader = make_user(db, roles=[(kita, Role.LEADER)])
    token = _issue(db, leader, kita, role=Role.COUNCIL)
    post_form(client, f"/join/{token}", _account("c@example.org"), token_from=f"/join/{token}")
    fresh = app.test_client()
    login = {"email": "c@example.org", "password": "a long password"}
    assert post_form(fresh, "/login", login).status_code == 302
    home = fresh.get("/home").get_data(as_text=True)
    assert "Nour Haddad</h1>" in home  # logged in as the new account, in its language (ar)
    assert 'lang="ar"' in home
