"""Children and guardians over HTTP: the paginated, searchable list, creating and editing a child
with validation, guardian links, and inviting a guardian whose link creates the link."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.models.accounts import Invitation, Membership, Role, User
from kita.models.audit import AuditEvent
from kita.models.organisation import Child, Group, GuardianLink, Kita, Relation
from tests.conftest import post_form
from tests.factories import make_child, make_group, make_kita, make_user

JOIN_RE = re.compile(r"https://kita\.test/join/([A-Za-z0-9_-]+)")


def audit_actions(db: Session) -> list[str]:
    db.rollback()  # see what the requests committed
    return list(db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


@pytest.fixture
def kita(db: Session) -> Kita:
    return make_kita(db)


@pytest.fixture
def group(db: Session, kita: Kita) -> Group:
    return make_group(db, kita, name="Sonne")


@pytest.fixture
def leader(db: Session, kita: Kita) -> User:
    return make_user(db, roles=[(kita, Role.LEADER)], locale="en")


def test_list_is_paginated_searchable_and_filtered(
    client: FlaskClient, db: Session, login: Any, kita: Kita, group: Group, leader: User
) -> None:
    mond = make_group(db, kita, name="Mond")
    db.add_all(
        Child(kita_id=kita.id, group_id=group.id, first_name="Kind", last_name=f"Reihe{n:03d}")
        for n in range(55)
    )
    db.commit()
    make_child(db, mond, first_name="Özlem", last_name="Yılmaz")
    make_child(db, make_group(db, make_kita(db)), first_name="Fremd")
    login(leader)
    base = f"/admin/kitas/{kita.id}/children"
    first = client.get(base).get_data(as_text=True)
    assert "56 children" in first
    assert "Page 1 of 2" in first
    assert "Reihe049" in first and "Reihe050" not in first
    assert "Fremd" not in first
    second = client.get(f"{base}?page=2").get_data(as_text=True)
    assert "Reihe050" in second and "Yılmaz" in second
    found = client.get(f"{base}?q=%C3%B6zlem").get_data(as_text=True)  # "özlem"
    assert "Yılmaz" in found and "Reihe000" not in found
    by_group = client.get(f"{base}?group={mond.id}").get_data(as_text=True)
    assert "1 child" in by_group and "Reihe000" not in by_group
    assert "No child matches" in client.get(f"{base}?q=nobody").get_data(as_text=True)


def test_filter_by_a_group_of_another_kita_is_refused(
    client: FlaskClient, db: Session, login: Any, kita: Kita, group: Group, leader: User
) -> None:
    foreign = make_group(db, make_kita(db))
    make_child(db, foreign, first_name="Fremd")
    login(leader)
    response = client.get(f"/admin/kitas/{kita.id}/children?group={foreign.id}")
    assert response.status_code == 422
    assert "Fremd" not in response.get_data(as_text=True)


def test_child_is_created_and_edited(
    client: FlaskClient, db: Session, login: Any, kita: Kita, group: Group, leader: User
) -> None:
    login(leader)
    path = f"/admin/kitas/{kita.id}/children/new"
    response = post_form(
        client,
        path,
        {
            "first_name": "Mia",
            "last_name": "Beispiel",
            "birth_date": "2021-03-14",
            "group_id": str(group.id),
            "entry_date": "2022-08-01",
            "leave_date": "",
        },
        token_from=path,
    )
    assert response.status_code == 302
    db.rollback()
    child = db.scalars(select(Child)).one()
    assert (child.kita_id, child.group_id, child.birth_date, child.entry_date) == (
        kita.id,
        group.id,
        date(2021, 3, 14),
        date(2022, 8, 1),
    )
    edit = f"/admin/kitas/{kita.id}/children/{child.id}/edit"
    assert 'value="2021-03-14"' in client.get(edit).get_data(as_text=True)
    response = post_form(
        client,
        edit,
        {"first_name": "Mia", "last_name": "Muster", "group_id": "", "leave_date": "2025-07-31"},
        token_from=edit,
    )
    assert response.status_code == 302
    db.rollback()
    db.refresh(child)
    assert (child.last_name, child.group_id, child.birth_date, child.leave_date) == (
        "Muster",
        None,
        None,
        date(2025, 7, 31),
    )
    assert audit_actions(db) == ["child.created", "child.updated"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"first_name": "", "last_name": "B"}, "This field is required."),
        ({"first_name": "x" * 121, "last_name": "B"}, "At most 120 characters are allowed."),
        ({"first_name": "A", "last_name": "B", "birth_date": "31.03.2021"}, "like 2024-03-31"),
        (
            {"first_name": "A", "last_name": "B", "birth_date": "2999-01-01"},
            "not plausible",
        ),
        (
            {
                "first_name": "A",
                "last_name": "B",
                "entry_date": "2023-08-01",
                "leave_date": "2023-07-31",
            },
            "The leave date cannot be before the entry date.",
        ),
        ({"first_name": "A", "last_name": "B", "group_id": "nonsense"}, "offered options"),
    ],
)
def test_child_validation_writes_nothing(
    client: FlaskClient,
    db: Session,
    login: Any,
    kita: Kita,
    leader: User,
    data: dict[str, str],
    message: str,
) -> None:
    login(leader)
    path = f"/admin/kitas/{kita.id}/children/new"
    response = post_form(client, path, data, token_from=path)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Child)) == 0
    assert audit_actions(db) == []


def test_child_cannot_be_put_into_a_group_of_another_kita(
    client: FlaskClient, db: Session, login: Any, kita: Kita, group: Group, leader: User
) -> None:
    child = make_child(db, group)
    foreign = make_group(db, make_kita(db))
    login(leader)
    edit = f"/admin/kitas/{kita.id}/children/{child.id}/edit"
    response = post_form(
        client,
        edit,
        {"first_name": "A", "last_name": "B", "group_id": str(foreign.id)},
        token_from=edit,
    )
    assert response.status_code == 422
    assert "Please choose a group of this Kita." in response.get_data(as_text=True)
    db.rollback()
    db.refresh(child)
    assert child.group_id == group.id


def test_guardian_link_is_edited_and_removed(
    client: FlaskClient, db: Session, login: Any, kita: Kita, group: Group, leader: User
) -> None:
    child = make_child(db, group, first_name="Mia")
    parent = make_user(db, roles=[(kita, Role.PARENT)], children=[child], name="Anna Beispiel")
    link = db.scalars(select(GuardianLink).where(GuardianLink.user_id == parent.id)).one()
    link_id = link.id
    login(leader)
    page_path = f"/admin/kitas/{kita.id}/children/{child.id}"
    assert "Anna Beispiel" in client.get(page_path).get_data(as_text=True)
    path = f"{page_path}/guardians/{link_id}"
    bad = post_form(client, path, {"relation": "uncle"}, token_from=page_path)
    assert bad.status_code == 422
    response = post_form(
        client, path, {"relation": "guardian", "may_pick_up": "on"}, token_from=page_path
    )
    assert response.status_code == 302
    db.rollback()
    db.refresh(link)
    assert (link.relation, link.has_custody, link.may_pick_up) == (Relation.GUARDIAN, False, True)
    assert post_form(client, f"{path}/remove", {}, token_from=page_path).status_code == 422
    removed = post_form(client, f"{path}/remove", {"confirm": "yes"}, token_from=page_path)
    assert removed.status_code == 302
    db.rollback()
    assert db.get(GuardianLink, link_id) is None
    # Her only child in this Kita: the parent role ends with the link.
    assert db.scalars(select(Membership).where(Membership.user_id == parent.id)).all() == []
    assert audit_actions(db) == ["guardian.updated", "guardian.removed"]


def test_link_of_another_child_is_not_found(
    client: FlaskClient, db: Session, login: Any, kita: Kita, group: Group, leader: User
) -> None:
    child, sibling = make_child(db, group), make_child(db, group)
    parent = make_user(db, roles=[(kita, Role.PARENT)], children=[sibling])
    link = db.scalars(select(GuardianLink).where(GuardianLink.user_id == parent.id)).one()
    login(leader)
    response = post_form(
        client,
        f"/admin/kitas/{kita.id}/children/{child.id}/guardians/{link.id}/remove",
        {"confirm": "yes"},
        token_from="/admin/",
    )
    assert response.status_code == 404
    db.rollback()
    assert db.get(GuardianLink, link.id) is not None


def test_guardian_invitation_creates_the_link(
    app: Flask, client: FlaskClient, db: Session, login: Any, kita: Kita, group: Group, leader: User
) -> None:
    child = make_child(db, group, first_name="Mia")
    login(leader)
    path = f"/admin/kitas/{kita.id}/children/{child.id}/invite"
    missing = post_form(client, path, {"relation": ""}, token_from=path)
    assert missing.status_code == 422
    response = post_form(
        client,
        path,
        {"relation": "father", "may_pick_up": "on", "email": "", "locale": "ar"},
        token_from=path,
    )
    assert response.status_code == 200
    match = JOIN_RE.search(response.get_data(as_text=True))
    assert match
    token = match.group(1)
    family = app.test_client()
    joined = post_form(
        family,
        f"/join/{token}",
        {
            "display_name": "Deniz Beispiel",
            "email": "deniz@example.org",
            "password": "a long enough password",
            "password_repeat": "a long enough password",
            "locale": "ar",
        },
        token_from=f"/join/{token}",
    )
    assert joined.status_code == 302
    db.rollback()
    user = db.scalars(select(User).where(User.email == "deniz@example.org")).one()
    link = db.scalars(select(GuardianLink).where(GuardianLink.user_id == user.id)).one()
    assert (link.child_id, link.relation, link.has_custody, link.may_pick_up) == (
        child.id,
        Relation.FATHER,
        False,
        True,
    )
    assert db.scalar(select(func.count()).select_from(Invitation)) == 1
    assert "Deniz Beispiel" in client.get(f"/admin/kitas/{kita.id}/children/{child.id}").get_data(
        as_text=True
    )
