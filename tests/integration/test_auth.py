"""Login, second factor, logout and session lifetime over HTTP, with database assertions."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.models.accounts import Role, ServerSession
from kita.models.audit import AuditEvent
from tests.conftest import post_form
from tests.factories import PASSWORD, make_child, make_group, make_kita, make_user, totp_now


def test_parent_logs_in_and_sees_own_child(client: FlaskClient, db: Session) -> None:
    kita = make_kita(db)
    child = make_child(db, make_group(db, kita), first_name="Aylin")
    parent = make_user(db, roles=[(kita, Role.PARENT)], children=[child])
    response = post_form(client, "/login", {"email": parent.email, "password": PASSWORD})
    assert response.status_code == 302
    home = client.get("/home", follow_redirects=True).get_data(as_text=True)
    assert "Aylin Muster" in home
    assert db.scalar(select(func.count()).select_from(ServerSession)) == 1
    actions = db.scalars(select(AuditEvent.action)).all()
    assert "login.succeeded" in actions


def test_wrong_password_is_refused_and_audited(client: FlaskClient, db: Session) -> None:
    parent = make_user(db, email="p@example.org")
    response = post_form(client, "/login", {"email": "p@example.org", "password": "wrong" * 3})
    assert response.status_code == 401
    assert "password is wrong" in response.get_data(as_text=True)
    assert client.get("/home").status_code == 302
    assert db.scalars(select(AuditEvent.action)).all() == ["login.failed"]
    assert parent.id  # the account still exists and is untouched


def test_staff_need_the_second_factor(client: FlaskClient, db: Session) -> None:
    kita = make_kita(db)
    leader = make_user(db, roles=[(kita, Role.LEADER)])
    response = post_form(client, "/login", {"email": leader.email, "password": PASSWORD})
    assert response.headers["Location"].endswith("/login/code")
    # Not logged in yet: the home page sends back to the login.
    assert client.get("/home").status_code == 302
    wrong = post_form(client, "/login/code", {"code": "000000"})
    assert wrong.status_code == 401
    ok = post_form(client, "/login/code", {"code": totp_now()})
    assert ok.status_code == 302
    assert client.get("/home").status_code == 200


def test_totp_code_cannot_be_replayed(client: FlaskClient, app: Flask, db: Session) -> None:
    kita = make_kita(db)
    leader = make_user(db, roles=[(kita, Role.LEADER)])
    code = totp_now()
    post_form(client, "/login", {"email": leader.email, "password": PASSWORD})
    assert post_form(client, "/login/code", {"code": code}).status_code == 302
    other = app.test_client()
    post_form(other, "/login", {"email": leader.email, "password": PASSWORD})
    assert post_form(other, "/login/code", {"code": code}).status_code == 401


def test_logout_kills_the_old_cookie(client: FlaskClient, app: Flask, db: Session) -> None:
    parent = make_user(db)
    post_form(client, "/login", {"email": parent.email, "password": PASSWORD})
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    assert cookie is not None
    stolen = cookie.value
    response = post_form(client, "/logout", {}, token_from="/home")
    assert response.headers["Clear-Site-Data"] == '"cache", "storage"'
    replay = app.test_client()
    replay.set_cookie(app.config["SESSION_COOKIE_NAME"], stolen)
    assert replay.get("/home").status_code == 302
    assert (
        db.scalar(
            select(func.count())
            .select_from(ServerSession)
            .where(ServerSession.user_id == parent.id)
        )
        == 0
    )
