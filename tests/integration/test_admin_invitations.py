"""Invitations over HTTP: the list with status filter and pages, revoking, and the printable
QR sheet of a group whose codes can be redeemed."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.access import load_actor
from kita.models.accounts import Invitation, Role, User
from kita.models.audit import AuditEvent
from kita.models.organisation import Group, GuardianLink, Kita, Relation
from kita.services import invitations
from kita.services.invitations import InvitationRequest
from tests.conftest import post_form
from tests.factories import make_child, make_group, make_kita, make_user

JOIN_RE = re.compile(r"https://kita\.test/join/([A-Za-z0-9_-]+)")


def audit_actions(db: Session) -> list[str]:
    db.rollback()  # see what the requests committed
    return list(db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


@pytest.fixture
def kita(db: Session) -> Kita:
    return make_kita(db, name="Kita Sonnenschein")


@pytest.fixture
def group(db: Session, kita: Kita) -> Group:
    return make_group(db, kita, name="Sonne")


@pytest.fixture
def leader(db: Session, kita: Kita) -> User:
    return make_user(db, roles=[(kita, Role.LEADER)], locale="en")


def issue(db: Session, leader: User, kita: Kita, *, now: datetime | None = None) -> Invitation:
    issued = invitations.create_invitation(
        db,
        actor=load_actor(db, leader),
        kita=kita,
        request=InvitationRequest(role=Role.CARETAKER, email="hm@example.org"),
        now=now or datetime.now(UTC),
        days=14,
    )
    db.commit()
    return issued.invitation


def test_list_filters_by_status_and_pages(
    client: FlaskClient, db: Session, login: Any, kita: Kita, leader: User
) -> None:
    for _ in range(51):
        issue(db, leader, kita)
    old = issue(db, leader, kita, now=datetime.now(UTC) - timedelta(days=30))
    login(leader)
    base = f"/admin/kitas/{kita.id}/invitations"
    page = client.get(base).get_data(as_text=True)
    assert "Page 1 of 2" in page
    expired = client.get(f"{base}?status=expired").get_data(as_text=True)
    assert "Expired" in expired and "Page 1" not in expired
    assert expired.count("hm@example.org") == 1
    assert str(old.id) not in client.get(f"{base}?status=open&page=2").get_data(as_text=True)
    assert client.get(f"{base}?status=bogus").status_code == 422
    assert "No invitations with this status." in client.get(f"{base}?status=revoked").get_data(
        as_text=True
    )


def test_open_invitation_is_revoked_after_confirmation(
    client: FlaskClient, db: Session, login: Any, kita: Kita, leader: User
) -> None:
    invitation = issue(db, leader, kita)
    login(leader)
    base = f"/admin/kitas/{kita.id}/invitations"
    path = f"{base}/{invitation.id}/revoke"
    assert post_form(client, path, {}, token_from=base).status_code == 422
    db.rollback()
    db.refresh(invitation)
    assert invitation.revoked_at is None
    assert post_form(client, path, {"confirm": "yes"}, token_from=base).status_code == 302
    db.rollback()
    db.refresh(invitation)
    assert invitation.revoked_at is not None
    again = post_form(client, path, {"confirm": "yes"}, token_from=base)
    assert again.status_code == 422
    assert "Only open invitations can be revoked." in again.get_data(as_text=True)
    assert audit_actions(db) == ["invitation.created", "invitation.revoked"]


def test_invitation_of_another_kita_is_not_found(
    client: FlaskClient, db: Session, login: Any, kita: Kita, leader: User
) -> None:
    other = make_kita(db)
    foreign = issue(db, make_user(db, roles=[(other, Role.LEADER)]), other)
    login(leader)
    response = post_form(
        client,
        f"/admin/kitas/{kita.id}/invitations/{foreign.id}/revoke",
        {"confirm": "yes"},
        token_from="/admin/",
    )
    assert response.status_code == 404
    db.rollback()
    db.refresh(foreign)
    assert foreign.revoked_at is None


def test_group_sheet_issues_codes_that_can_be_redeemed(
    app: Flask, client: FlaskClient, db: Session, login: Any, kita: Kita, group: Group, leader: User
) -> None:
    alone = make_child(db, group, first_name="Mia", last_name="Allein")
    second = make_child(db, group, first_name="Emil", last_name="Zweit")
    cared = make_child(db, group, first_name="Lina", last_name="Versorgt")
    make_user(db, roles=[(kita, Role.PARENT)], children=[cared])
    older = invitations.create_invitation(
        db,
        actor=load_actor(db, leader),
        kita=kita,
        request=InvitationRequest(role=Role.PARENT, child_id=alone.id, relation=Relation.MOTHER),
        now=datetime.now(UTC),
        days=14,
    ).invitation
    db.commit()
    login(leader)
    base = f"/admin/kitas/{kita.id}/invitations"
    response = post_form(
        client, f"{base}/group-sheet", {"group_id": str(group.id)}, token_from=base
    )
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'class="qr-sheet"' in page
    assert "Mia Allein" in page and "Emil Zweit" in page and "Lina Versorgt" not in page
    assert "Kita Sonnenschein" in page
    tokens = JOIN_RE.findall(page)
    assert len(tokens) == 2
    db.rollback()
    db.refresh(older)
    assert older.revoked_at is not None  # only the printed code works
    assert db.scalar(select(func.count()).select_from(Invitation)) == 3
    # A family redeems its card: the account is linked to that child.
    family = app.test_client()
    token = tokens[0]
    joined = post_form(
        family,
        f"/join/{token}",
        {
            "display_name": "Anna Allein",
            "email": "anna@example.org",
            "password": "a long enough password",
            "password_repeat": "a long enough password",
            "locale": "de",
        },
        token_from=f"/join/{token}",
    )
    assert joined.status_code == 302
    db.rollback()
    user = db.scalars(select(User).where(User.email == "anna@example.org")).one()
    linked = db.scalars(select(GuardianLink.child_id).where(GuardianLink.user_id == user.id)).all()
    assert linked in ([alone.id], [second.id])
    # The code works once.
    assert family.get(f"/join/{token}").status_code == 410
    # A new sheet replaces the remaining child's open invitation and skips the linked child.
    again = post_form(client, f"{base}/group-sheet", {"group_id": str(group.id)}, token_from=base)
    assert len(JOIN_RE.findall(again.get_data(as_text=True))) == 1
    db.rollback()
    now = datetime.now(UTC)
    statuses = sorted(i.status(now) for i in db.scalars(select(Invitation)))
    assert statuses == ["open", "redeemed", "revoked", "revoked"]
    assert audit_actions(db).count("invitation.group_sheet") == 2


def test_group_sheet_for_a_group_of_another_kita_is_refused(
    client: FlaskClient, db: Session, login: Any, kita: Kita, group: Group, leader: User
) -> None:
    foreign = make_group(db, make_kita(db))
    make_child(db, foreign)
    login(leader)
    base = f"/admin/kitas/{kita.id}/invitations"
    for value, message in [
        (str(foreign.id), "Please choose a group of this Kita."),
        ("", "Please choose one of the offered options."),
        ("not-a-uuid", "Please choose one of the offered options."),
    ]:
        response = post_form(client, f"{base}/group-sheet", {"group_id": value}, token_from=base)
        assert response.status_code == 422
        assert message in response.get_data(as_text=True)
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Invitation)) == 0
    assert audit_actions(db) == []


def test_empty_group_sheet_says_so(
    client: FlaskClient, db: Session, login: Any, kita: Kita, group: Group, leader: User
) -> None:
    login(leader)
    base = f"/admin/kitas/{kita.id}/invitations"
    response = post_form(
        client, f"{base}/group-sheet", {"group_id": str(group.id)}, token_from=base
    )
    assert response.status_code == 200
    assert "Nothing to print." in response.get_data(as_text=True)
