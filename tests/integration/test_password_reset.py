"""Password reset by e-mail token, received by a real SMTP server (aiosmtpd) on a free port."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kita import create_app
from kita.config import KitaConfig
from kita.models.accounts import PasswordReset, User
from tests.conftest import EnglishClient, close_app, post_form
from tests.factories import PASSWORD, make_user

LINK = re.compile(r"https://kita\.test(/password/reset/[\w-]+)")


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def inbox() -> Iterator[tuple[_Inbox, int]]:
    handler = _Inbox()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


@pytest.fixture
def mail_app(config: KitaConfig, inbox: tuple[_Inbox, int]) -> Iterator[Flask]:
    application = create_app(config.with_overrides(smtp_host="127.0.0.1", smtp_port=inbox[1]))
    application.test_client_class = EnglishClient
    yield application
    close_app(application)


def _request_reset(client: FlaskClient, email: str) -> str:
    response = post_form(client, "/password/forgot", {"email": email})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_reset_by_mail_sets_new_password_and_ends_sessions(
    mail_app: Flask, inbox: tuple[_Inbox, int], db: Session
) -> None:
    user = make_user(db, email="mama@example.org", name="Ayşe", locale="tr")
    old_device = mail_app.test_client()
    post_form(old_device, "/login", {"email": user.email, "password": PASSWORD})
    assert old_device.get("/home").status_code == 200

    client = mail_app.test_client()
    _request_reset(client, "MAMA@example.org ")
    messages = inbox[0].messages
    assert len(messages) == 1
    assert messages[0]["To"] == "mama@example.org"
    body = messages[0].get_payload(decode=True).decode()
    assert "Ayşe" in body
    match = LINK.search(body)
    assert match, body
    path = match.group(1)

    response = post_form(
        client,
        path,
        {"password": "brand new secret", "password_repeat": "brand new secret"},
        token_from=path,
    )
    assert response.status_code == 200
    assert old_device.get("/home").status_code == 302  # every session ended
    assert (
        post_form(client, "/login", {"email": user.email, "password": PASSWORD}).status_code == 401
    )
    ok = post_form(client, "/login", {"email": user.email, "password": "brand new secret"})
    assert ok.status_code == 302
    # The link is single-use.
    again = post_form(
        mail_app.test_client(),
        path,
        {"password": "third secret 123", "password_repeat": "third secret 123"},
        token_from="/login",
    )
    assert again.status_code == 410


def test_unknown_address_gets_the_same_answer_and_no_mail(
    mail_app: Flask, inbox: tuple[_Inbox, int], db: Session
) -> None:
    make_user(db, email="known@example.org")
    client = mail_app.test_client()
    unknown = _request_reset(client, "nobody@example.org")
    known = _request_reset(client, "known@example.org")
    assert "If an account exists" in unknown
    assert "If an account exists" in known
    assert len(inbox[0].messages) == 1


def test_expired_token_is_refused(mail_app: Flask, inbox: tuple[_Inbox, int], db: Session) -> None:
    user = make_user(db)
    client = mail_app.test_client()
    _request_reset(client, user.email)
    body = inbox[0].messages[0].get_payload(decode=True).decode()
    match = LINK.search(body)
    assert match
    db.execute(update(PasswordReset).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    db.commit()
    assert client.get(match.group(1)).status_code == 410
    response = post_form(
        client,
        match.group(1),
        {"password": "brand new secret", "password_repeat": "brand new secret"},
    )
    assert response.status_code == 410
    db.rollback()
    db.expire_all()
    stored = db.scalars(select(User).where(User.id == user.id)).one()
    assert stored.password_hash == user.password_hash


def test_without_smtp_the_link_goes_to_the_log(
    client: FlaskClient, db: Session, caplog: pytest.LogCaptureFixture
) -> None:
    user = make_user(db, email="dev@example.org", name="Ayşe Canary")
    with caplog.at_level("WARNING", logger="kita.mail"):
        _request_reset(client, user.email)
    assert "/password/reset/" in caplog.text
    assert "dev@example.org" not in caplog.text
    assert "Canary" not in caplog.text


def test_short_new_password_is_explained(
    mail_app: Flask, inbox: tuple[_Inbox, int], db: Session
) -> None:
    user = make_user(db)
    client = mail_app.test_client()
    _request_reset(client, user.email)
    match = LINK.search(inbox[0].messages[0].get_payload(decode=True).decode())
    assert match
    response = post_form(
        client,
        match.group(1),
        {"password": "short", "password_repeat": "short"},
        token_from=match.group(1),
    )
    assert response.status_code == 422
    assert "at least 10 characters" in response.get_data(as_text=True)
