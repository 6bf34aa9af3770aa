"""Server-side sessions end at once on logout, password change and account disable, and expire
after the idle and absolute timeouts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from kita.models.accounts import Role, ServerSession, User
from kita.services.accounts import set_account_active
from tests.conftest import post_form
from tests.factories import PASSWORD, make_kita, make_user


def _login(client: FlaskClient, user: User) -> str:
    response = post_form(client, "/login", {"email": user.email, "password": PASSWORD})
    assert response.status_code == 302
    cookie = client.get_cookie("__Host-kita_session")
    assert cookie is not None
    return cookie.value


def _replay(app: Flask, token: str) -> int:
    other = app.test_client()
    other.set_cookie("__Host-kita_session", token)
    return other.get("/home").status_code


def test_cookie_is_host_prefixed_secure_httponly(client: FlaskClient, db: Session) -> None:
    user = make_user(db)
    response = post_form(client, "/login", {"email": user.email, "password": PASSWORD})
    header = response.headers["Set-Cookie"]
    assert header.startswith("__Host-kita_session=")
    for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
        assert flag in header
    assert "Domain" not in header


def test_login_issues_a_new_session_id(client: FlaskClient, db: Session) -> None:
    user = make_user(db)
    client.get("/login")  # anonymous session holding the CSRF token
    before = client.get_cookie("__Host-kita_session")
    assert before is not None
    after = _login(client, user)
    assert after != before.value


def test_password_change_ends_every_session(client: FlaskClient, app: Flask, db: Session) -> None:
    user = make_user(db)
    old = _login(client, user)
    second_device = app.test_client()
    other_token = _login(second_device, user)
    response = post_form(
        client,
        "/account",
        {
            "current_password": PASSWORD,
            "new_password": "a new long password",
            "new_password_repeat": "a new long password",
        },
        token_from="/account",
    )
    assert response.status_code == 200
    assert "Your new password is saved" in response.get_data(as_text=True)
    assert _replay(app, old) == 302
    assert _replay(app, other_token) == 302
    # The browser that changed it continues with a fresh session.
    assert client.get("/home").status_code == 200


def test_wrong_current_password_changes_nothing(client: FlaskClient, db: Session) -> None:
    user = make_user(db)
    _login(client, user)
    response = post_form(
        client,
        "/account",
        {
            "current_password": "not it at all",
            "new_password": "another long one",
            "new_password_repeat": "another long one",
        },
        token_from="/account",
    )
    assert response.status_code == 422
    assert "The current password is wrong" in response.get_data(as_text=True)
    db.rollback()
    db.expire_all()
    assert db.get(User, user.id).password_hash == user.password_hash  # type: ignore[union-attr]


def test_disabling_an_account_ends_its_sessions(
    client: FlaskClient, app: Flask, db: Session
) -> None:
    kita = make_kita(db)
    user = make_user(db, roles=[(kita, Role.PARENT)])
    token = _login(client, user)
    assert _replay(app, token) == 200
    set_account_active(db, actor_id=user.id, user=db.get(User, user.id), active=False)  # type: ignore[arg-type]
    db.commit()
    assert _replay(app, token) == 302
    assert (
        db.scalar(
            select(func.count()).select_from(ServerSession).where(ServerSession.user_id == user.id)
        )
        == 0
    )
    # and the password no longer works either
    again = post_form(app.test_client(), "/login", {"email": user.email, "password": PASSWORD})
    assert again.status_code == 401


@pytest.mark.parametrize(
    ("column", "age"),
    [("last_seen_at", timedelta(minutes=31)), ("created_at", timedelta(hours=12, minutes=1))],
)
def test_sessions_expire(
    client: FlaskClient, app: Flask, db: Session, column: str, age: timedelta
) -> None:
    user = make_user(db)
    token = _login(client, user)
    past = datetime.now(UTC) - age
    db.execute(update(ServerSession).values({column: past}))
    db.commit()
    assert _replay(app, token) == 302
    assert (
        db.scalar(
            select(func.count()).select_from(ServerSession).where(ServerSession.user_id == user.id)
        )
        == 0
    )


def test_recent_session_survives(client: FlaskClient, app: Flask, db: Session) -> None:
    user = make_user(db)
    token = _login(client, user)
    db.execute(update(ServerSession).values(last_seen_at=datetime.now(UTC) - timedelta(minutes=29)))
    db.commit()
    assert _replay(app, token) == 200
