"""Kitas and groups over HTTP: listing, creating, settings, the Kita page, group changes."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.models.accounts import Role, User
from kita.models.audit import AuditEvent
from kita.models.organisation import Group, Kita, Provider
from tests.conftest import post_form
from tests.factories import make_child, make_group, make_kita, make_provider, make_user


def audit_actions(db: Session) -> list[str]:
    db.rollback()  # see what the requests committed
    return list(db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


@pytest.fixture
def provider(db: Session) -> Provider:
    return make_provider(db)


@pytest.fixture
def kita(db: Session, provider: Provider) -> Kita:
    return make_kita(db, provider, name="Kita Sonnenschein")


@pytest.fixture
def leader(db: Session, kita: Kita) -> User:
    return make_user(db, roles=[(kita, Role.LEADER)], locale="en")


@pytest.fixture
def admin(db: Session, provider: Provider) -> User:
    return make_user(db, admin_of=provider, locale="en")


def test_index_lists_only_managed_kitas(
    client: FlaskClient, db: Session, login: Any, kita: Kita, leader: User
) -> None:
    make_kita(db, name="Kita Fremd")
    login(leader)
    page = client.get("/admin/").get_data(as_text=True)
    assert f'href="/admin/kitas/{kita.id}"' in page
    assert "Kita Fremd" not in page
    assert "Create a Kita" not in page


def test_provider_admin_creates_a_kita(
    client: FlaskClient, db: Session, login: Any, provider: Provider, admin: User
) -> None:
    login(admin)
    assert "Create a Kita" in client.get("/admin/").get_data(as_text=True)
    response = post_form(
        client,
        "/admin/kitas/new",
        {"name": "Kita Regenbogen", "address": "Weg 2", "default_locale": "ar"},
        token_from="/admin/kitas/new",
    )
    assert response.status_code == 302
    db.rollback()
    kita = db.scalars(select(Kita).where(Kita.name == "Kita Regenbogen")).one()
    assert (kita.provider_id, kita.address, kita.default_locale) == (provider.id, "Weg 2", "ar")
    assert response.headers["Location"].endswith(f"/admin/kitas/{kita.id}")
    assert audit_actions(db) == ["kita.created"]


def test_kita_form_rejects_bad_input_and_writes_nothing(
    client: FlaskClient, db: Session, login: Any, kita: Kita, admin: User
) -> None:
    login(admin)
    response = post_form(
        client,
        "/admin/kitas/new",
        {"name": "x" * 201, "address": "", "default_locale": "xx"},
        token_from="/admin/kitas/new",
    )
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "At most 200 characters are allowed." in page
    assert "Please choose one of the offered options." in page
    duplicate = post_form(
        client,
        "/admin/kitas/new",
        {"name": kita.name, "default_locale": "de"},
        token_from="/admin/kitas/new",
    )
    assert duplicate.status_code == 422
    assert "A Kita with this name already exists." in duplicate.get_data(as_text=True)
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Kita)) == 1
    assert audit_actions(db) == []


def test_provider_admin_edits_settings_and_leader_cannot(
    client: FlaskClient, db: Session, login: Any, kita: Kita, leader: User, admin: User
) -> None:
    login(leader)
    assert client.get(f"/admin/kitas/{kita.id}/settings").status_code == 404
    assert "/settings" not in client.get(f"/admin/kitas/{kita.id}").get_data(as_text=True)
    login(admin)
    path = f"/admin/kitas/{kita.id}/settings"
    assert 'value="Kita Sonnenschein"' in client.get(path).get_data(as_text=True)
    response = post_form(
        client,
        path,
        {"name": "Kita Mondschein", "address": "", "default_locale": "en"},
        token_from=path,
    )
    assert response.status_code == 302
    db.rollback()
    db.refresh(kita)
    assert (kita.name, kita.default_locale) == ("Kita Mondschein", "en")
    assert audit_actions(db) == ["kita.updated"]


def test_kita_page_summarises(
    client: FlaskClient, db: Session, login: Any, kita: Kita, leader: User
) -> None:
    group = make_group(db, kita, name="Sonne")
    child = make_child(db, group)
    make_child(db, group)
    make_user(db, roles=[(kita, Role.EDUCATOR)], groups=[group])
    make_user(db, roles=[(kita, Role.PARENT)], children=[child])
    login(leader)
    page = client.get(f"/admin/kitas/{kita.id}").get_data(as_text=True)
    assert "Sonne" in page
    assert "2 children" in page
    assert "1 child has no guardian in the app yet." in page
    assert f'href="/admin/kitas/{kita.id}/import/"' in page
    # Staff: the leader and the educator, not the parent.
    assert f'href="/admin/kitas/{kita.id}/staff">2</a>' in page


def test_groups_are_created_renamed_and_deleted(
    client: FlaskClient, db: Session, login: Any, kita: Kita, leader: User
) -> None:
    login(leader)
    base = f"/admin/kitas/{kita.id}/groups"
    assert "no groups yet" in client.get(base).get_data(as_text=True)
    assert post_form(client, base, {"name": "Sonne"}, token_from=base).status_code == 302
    db.rollback()
    group = db.scalars(select(Group).where(Group.kita_id == kita.id)).one()
    group_id = group.id
    path = f"{base}/{group_id}"
    assert post_form(client, path, {"name": "Mond"}, token_from=path).status_code == 302
    db.rollback()
    db.refresh(group)
    assert group.name == "Mond"
    # Without the confirmation nothing is deleted.
    unconfirmed = post_form(client, f"{path}/delete", {}, token_from=path)
    assert unconfirmed.status_code == 422
    assert "tick the box" in unconfirmed.get_data(as_text=True)
    assert db.get(Group, group_id) is not None
    deleted = post_form(client, f"{path}/delete", {"confirm": "yes"}, token_from=path)
    assert deleted.status_code == 302
    db.rollback()
    assert db.get(Group, group_id) is None
    assert audit_actions(db) == ["group.created", "group.renamed", "group.deleted"]


def test_group_with_children_is_not_deleted(
    client: FlaskClient, db: Session, login: Any, kita: Kita, leader: User
) -> None:
    group = make_group(db, kita, name="Sonne")
    make_child(db, group)
    make_child(db, group)
    login(leader)
    path = f"/admin/kitas/{kita.id}/groups/{group.id}"
    page = client.get(path).get_data(as_text=True)
    assert "Move the children to another group first." in page
    response = post_form(client, f"{path}/delete", {"confirm": "yes"}, token_from=path)
    assert response.status_code == 422
    assert "The group still has 2 children." in response.get_data(as_text=True)
    db.rollback()
    assert db.get(Group, group.id) is not None
    assert audit_actions(db) == []


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "This field is required."),
        ("x" * 121, "At most 120 characters are allowed."),
        ("Sonne", "A group with this name already exists in this Kita."),
    ],
)
def test_group_name_validation(
    client: FlaskClient,
    db: Session,
    login: Any,
    kita: Kita,
    leader: User,
    name: str,
    message: str,
) -> None:
    make_group(db, kita, name="Sonne")
    login(leader)
    base = f"/admin/kitas/{kita.id}/groups"
    response = post_form(client, base, {"name": name}, token_from=base)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Group)) == 1
    assert audit_actions(db) == []
