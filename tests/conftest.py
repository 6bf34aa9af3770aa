"""Shared fixtures. Every test runs against SQLite; with KITA_TEST_DATABASE_URL set the same
suite runs against PostgreSQL (one schema per xdist worker, tables truncated between tests)."""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from kita import create_app, migrations
from kita.audit import GENESIS
from kita.config import KitaConfig
from kita.crypto import generate_master_key_value
from kita.db import Base, Database
from kita.models.accounts import ServerSession, User
from kita.push.vapid import ensure_vapid_key
from kita.sessions import _hash
from tests.libretranslate_fake import libretranslate  # noqa: F401 (fixture)

PG_URL = os.environ.get("KITA_TEST_DATABASE_URL", "")
TEST_SECRET = "test-secret-key-" + "x" * 32
MASTER_KEY = generate_master_key_value()


def _with_search_path(url: str, schema: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def database_template(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Iterator[str]:
    """A migrated database: a SQLite file to copy per test, or a PostgreSQL schema."""
    if PG_URL:
        # One schema per process: parallel runs on one server must not share tables.
        schema = f"kita_test_{worker_id}_{os.getpid()}"
        admin = create_engine(PG_URL)
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = _with_search_path(PG_URL, schema)
        migrations.upgrade(url)
        yield url
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()
    else:
        path = tmp_path_factory.mktemp("template") / "template.sqlite3"
        migrations.upgrade(f"sqlite:///{path}")
        yield str(path)


def reset_postgres(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        conn.execute(
            text("INSERT INTO audit_head (id, count, last_id, hash) VALUES (1, 0, 0, :h)"),
            {"h": GENESIS},
        )
    engine.dispose()


@pytest.fixture
def database_url(database_template: str, tmp_path: Path) -> str:
    """A fresh, migrated, empty database for one test."""
    if PG_URL:
        reset_postgres(database_template)
        return database_template
    target = tmp_path / "kita.sqlite3"
    shutil.copyfile(database_template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> KitaConfig:
    return KitaConfig(
        instance_path=tmp_path / "instance",
        secret_key=TEST_SECRET,
        database_url=database_url,
        testing=True,
        password_hashing="test",
        base_url="https://kita.test",
        master_key=MASTER_KEY,
    )


class EnglishClient(FlaskClient):
    """Test clients read English unless a test asks for another language: assertions name the
    English source strings, while the app's own default stays German."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"


def close_app(application: Flask) -> None:
    state = application.extensions["kita"]
    state.database.dispose()
    state.keys.keystore.close()


@pytest.fixture
def app(config: KitaConfig) -> Iterator[Flask]:
    ensure_vapid_key(config.vapid_key_path)  # `kita init` makes it outside the tests
    application = create_app(config)
    application.test_client_class = EnglishClient
    yield application
    close_app(application)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def database(app: Flask) -> Database:
    return app.extensions["kita"].database  # type: ignore[no-any-return]


@pytest.fixture
def db(database: Database) -> Iterator[Session]:
    """A session for arranging and asserting. Factories commit; call ``db.rollback()`` before
    reading what a request wrote, then ``db.expire_all()`` (a session keeps loaded objects)."""
    session = database.session()
    yield session
    session.rollback()
    session.close()


# --- helpers ---------------------------------------------------------------------------------

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    """Fetch a page and return the CSRF token of its first form."""
    response = client.get(path)
    match = CSRF_RE.search(response.get_data(as_text=True))
    assert match, f"no CSRF token on {path} (status {response.status_code})"
    return match.group(1)


def post_form(
    client: FlaskClient,
    path: str,
    data: dict[str, Any],
    *,
    token_from: str | None = None,
    **kwargs: Any,
) -> Any:
    """POST a form with a valid CSRF token taken from ``token_from`` (default: the login page)."""
    payload = dict(data)
    payload["csrf_token"] = csrf_token(client, token_from or "/login")
    return client.post(path, data=payload, **kwargs)


def login_as(client: FlaskClient, app: Flask, user: User) -> None:
    """Create a logged-in server-side session for ``user`` directly (no password, no TOTP)."""
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    database: Database = app.extensions["kita"].database
    with database.transaction() as session:
        session.add(
            ServerSession(
                id=_hash(token),
                user_id=user.id,
                data={"uid": str(user.id)},
                created_at=now,
                last_seen_at=now,
            )
        )
    client.set_cookie(app.config["SESSION_COOKIE_NAME"], token)


@pytest.fixture
def login(client: FlaskClient, app: Flask) -> Any:
    def _login(user: User) -> None:
        login_as(client, app, user)

    return _login
