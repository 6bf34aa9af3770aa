"""Which pages the service worker may keep for offline reading (pwa/sw.js obeys the
``X-Kita-Cache`` header): only a parent's home feed, never a staff member's pages, never any
other page, and never longer than the session can live; pages without a session tell the
worker to drop every kept copy."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import update
from sqlalchemy.orm import Session

from kita.config import KitaConfig
from kita.models.accounts import Role, ServerSession, User
from kita.models.organisation import Child, Kita
from tests.conftest import login_as
from tests.factories import make_child, make_group, make_kita, make_user

MARK = re.compile(r"^private-feed; max-age=(\d+)$")


def _family(db: Session) -> tuple[Kita, Child, User]:
    kita = make_kita(db)
    child = make_child(db, make_group(db, kita))
    parent = make_user(db, roles=[(kita, Role.PARENT)], children=[child])
    return kita, child, parent


def test_a_parents_home_feed_may_be_kept_for_the_sessions_lifetime(
    client: FlaskClient, app: Flask, db: Session, config: KitaConfig
) -> None:
    _kita, child, parent = _family(db)
    login_as(client, app, parent)
    response = client.get("/home")
    assert response.status_code == 200
    assert child.first_name in response.get_data(as_text=True)
    match = MARK.match(response.headers.get("X-Kita-Cache", ""))
    assert match, response.headers.get("X-Kita-Cache")
    lifetime = config.session_absolute_hours * 3600
    assert lifetime - 60 <= int(match.group(1)) <= lifetime
    # Browsers and proxies still must not store it: only the worker keeps its own copy.
    assert response.headers["Cache-Control"] == "no-store"


def test_the_copy_ends_with_the_session(
    client: FlaskClient, app: Flask, db: Session, config: KitaConfig
) -> None:
    _kita, _child, parent = _family(db)
    login_as(client, app, parent)
    # A session made almost its absolute lifetime ago (still alive: the idle time is fresh).
    born = datetime.now(UTC) - timedelta(hours=config.session_absolute_hours, minutes=-2)
    db.execute(
        update(ServerSession).where(ServerSession.user_id == parent.id).values(created_at=born)
    )
    db.commit()
    match = MARK.match(client.get("/home").headers.get("X-Kita-Cache", ""))
    assert match
    assert 0 < int(match.group(1)) <= 120


def test_other_pages_and_staff_pages_are_never_kept(
    client: FlaskClient, app: Flask, db: Session
) -> None:
    kita, child, parent = _family(db)
    login_as(client, app, parent)
    account = client.get("/account")
    assert account.status_code == 200
    assert "X-Kita-Cache" not in account.headers

    # Staff work on shared devices: not even their home page is marked, also when they are a
    # parent in the Kita as well.
    for roles in ([(kita, Role.LEADER)], [(kita, Role.EDUCATOR), (kita, Role.PARENT)]):
        staff = make_user(db, roles=roles, children=[child])
        login_as(client, app, staff)
        response = client.get("/home")
        assert response.status_code == 200
        assert "X-Kita-Cache" not in response.headers


def test_pages_without_a_session_tell_the_worker_to_drop_its_copies(
    client: FlaskClient, app: Flask, db: Session
) -> None:
    login_page = client.get("/login")
    assert login_page.status_code == 200
    assert login_page.headers["X-Kita-Cache"] == "drop"
    # An expired or ended session lands on the login page, which says the same.
    redirected = client.get("/home", follow_redirects=True)
    assert redirected.request.path == "/login"
    assert redirected.headers["X-Kita-Cache"] == "drop"
    # Files and JSON carry no mark.
    for path in ("/static/app.js", "/manifest.webmanifest"):
        response = client.get(path)
        response.close()  # a static file is streamed from disk
        assert response.status_code == 200
        assert "X-Kita-Cache" not in response.headers
