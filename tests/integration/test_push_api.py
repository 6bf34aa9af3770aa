"""The push API (/api/v1/push/...) and the notification settings page, with bad input."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.config import KitaConfig
from kita.models.accounts import User
from kita.models.messaging import NotificationSettings, PushDelivery, PushSubscription
from kita.push.vapid import b64url, load_vapid_key
from kita.services import notify
from tests.conftest import csrf_token, login_as
from tests.factories import make_user

EMULATOR = "http://localhost:7777"
P256DH = "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"
AUTH = "tBHItJI5svbpez7KI4CCXg"


@pytest.fixture
def config(config: KitaConfig) -> KitaConfig:
    return dataclasses.replace(config, push_allowed_origins=(EMULATOR,))


def _subscription(endpoint: str | None = None) -> dict[str, Any]:
    return {
        "endpoint": endpoint or f"{EMULATOR}/notify/{uuid.uuid4().hex}",
        "expirationTime": None,
        "keys": {"p256dh": P256DH, "auth": AUTH},
    }


def _api(
    client: FlaskClient, method: str, path: str, body: object = None, raw: str | None = None
) -> Any:
    token = client.get("/api/v1/session").get_json()["csrf_token"]
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    return client.open(
        path,
        method=method,
        data=data,
        headers={"X-CSRFToken": token, "Content-Type": "application/json"},
    )


@pytest.fixture
def parent(db: Session, client: FlaskClient, app: Flask) -> User:
    user = make_user(db, locale="tr")
    login_as(client, app, user)
    return user


def _count(db: Session) -> int:
    db.rollback()
    return int(db.scalar(select(func.count()).select_from(PushSubscription)) or 0)


def test_the_public_key_is_the_instance_vapid_key(
    client: FlaskClient, parent: User, config: KitaConfig
) -> None:
    response = client.get("/api/v1/push/key")
    assert response.status_code == 200
    key = load_vapid_key(config.vapid_key_path)
    assert response.get_json() == {"publicKey": b64url(key.public_bytes)}


def test_subscribe_twice_and_unsubscribe(client: FlaskClient, db: Session, parent: User) -> None:
    body = _subscription()
    first = _api(client, "POST", "/api/v1/push/subscriptions", body)
    again = _api(client, "POST", "/api/v1/push/subscriptions", body)

    assert first.status_code == 201 and again.status_code == 200
    assert first.get_json()["id"] == again.get_json()["id"]
    assert _count(db) == 1
    row = db.scalars(select(PushSubscription)).one()
    assert (row.user_id, row.endpoint, len(row.p256dh), len(row.auth)) == (
        parent.id,
        body["endpoint"],
        65,
        16,
    )

    gone = _api(client, "DELETE", "/api/v1/push/subscriptions", {"endpoint": body["endpoint"]})
    assert gone.status_code == 204 and _count(db) == 0
    # Unknown endpoints answer the same: nothing to learn from it.
    assert (
        _api(
            client, "DELETE", "/api/v1/push/subscriptions", {"endpoint": body["endpoint"]}
        ).status_code
        == 204
    )


def test_an_endpoint_moves_to_the_person_now_logged_in_with_nothing_of_the_other(
    app: Flask, db: Session
) -> None:
    body = _subscription()
    first_user, second_user = make_user(db), make_user(db)
    first, second = app.test_client(), app.test_client()
    login_as(first, app, first_user)
    login_as(second, app, second_user)
    assert _api(first, "POST", "/api/v1/push/subscriptions", body).status_code == 201
    old = db.scalars(select(PushSubscription)).one()
    message_id = uuid.uuid4()
    notify.enqueue(
        db,
        message_id=message_id,
        kind="conversation",
        category="conversation",
        recipients=[notify.Recipient(first_user.id, "de")],
        url=f"/conversations/{message_id}",
        now=old.created_at,
    )
    db.commit()

    moved = _api(second, "POST", "/api/v1/push/subscriptions", body)

    assert moved.status_code == 201
    db.rollback()
    row = db.scalars(select(PushSubscription)).one()
    assert row.user_id == second_user.id and row.id != old.id
    # The first person's pending notification does not go to the second person's device.
    assert db.scalar(select(func.count()).select_from(PushDelivery)) == 0
    # Deleting by endpoint never touches another person's subscription.
    assert _api(first, "DELETE", "/api/v1/push/subscriptions", body).status_code == 204
    assert _count(db) == 1


@pytest.mark.parametrize(
    ("raw", "status", "field"),
    [
        ("{not json", 400, None),
        ("[]", 400, None),
        (json.dumps({"endpoint": 5, "keys": {}}), 422, "endpoint"),
        (json.dumps(_subscription("https://push.evil.example/x")), 422, "endpoint"),
        (json.dumps(_subscription("http://fcm.googleapis.com/fcm/send/x")), 422, "endpoint"),
        (json.dumps(_subscription("https://127.0.0.1/push")), 422, "endpoint"),
        (json.dumps({"endpoint": f"{EMULATOR}/notify/1"}), 422, "keys"),
        (
            json.dumps({**_subscription(), "keys": {"p256dh": "AAAA", "auth": AUTH}}),
            422,
            "keys.p256dh",
        ),
        (
            json.dumps({**_subscription(), "keys": {"p256dh": P256DH, "auth": "!!"}}),
            422,
            "keys.auth",
        ),
        (json.dumps({**_subscription(), "pad": "x" * 5000}), 422, "subscription"),
    ],
)
def test_bad_subscriptions_get_clear_json_errors_and_store_nothing(
    client: FlaskClient, db: Session, parent: User, raw: str, status: int, field: str | None
) -> None:
    response = _api(client, "POST", "/api/v1/push/subscriptions", raw=raw)
    assert response.status_code == status
    body = response.get_json()
    assert body["message"]
    if field is not None:
        assert field in body["fields"]
    assert _count(db) == 0


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=40),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(
                st.sampled_from(["endpoint", "keys", "p256dh", "auth", "x"]), children, max_size=4
            )
        ),
        max_leaves=12,
    )
)
def test_no_subscription_body_causes_a_server_error(
    client: FlaskClient, parent: User, body: object
) -> None:
    response = _api(client, "POST", "/api/v1/push/subscriptions", raw=json.dumps(body))
    assert response.status_code in {400, 422}


def test_unsubscribe_needs_an_endpoint(client: FlaskClient, parent: User) -> None:
    response = _api(client, "DELETE", "/api/v1/push/subscriptions", {"endpoint": ["x"]})
    assert response.status_code == 422 and "endpoint" in response.get_json()["fields"]


def test_without_csrf_token_nothing_is_stored(
    client: FlaskClient, db: Session, parent: User
) -> None:
    response = client.post("/api/v1/push/subscriptions", json=_subscription())
    assert response.status_code == 400 and _count(db) == 0


# --- the settings page -------------------------------------------------------------------------


def _read_in_english(db: Session, parent: User) -> None:
    """The settings page tests name English texts; the API tests' parent reads Turkish."""
    parent.locale = "en"
    db.commit()


def test_settings_page_saves_preferences(client: FlaskClient, db: Session, parent: User) -> None:
    _read_in_english(db, parent)
    page = client.get("/settings/notifications")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and 'name="notify_event"' in text and 'name="quiet_from"' in text

    token = csrf_token(client, "/settings/notifications")
    saved = client.post(
        "/settings/notifications",
        data={
            "csrf_token": token,
            "notify_information": "on",
            "notify_closure": "on",
            "notify_health": "on",
            "notify_conversation": "on",
            "quiet_from": "21:30",
            "quiet_until": "06:45",
        },
        follow_redirects=True,
    )

    assert saved.status_code == 200
    assert "Your notification settings are saved." in saved.get_data(as_text=True)
    db.rollback()
    row = db.get(NotificationSettings, parent.id)
    assert row is not None and row.muted_categories == ["event"]
    assert (row.quiet_from.isoformat(), row.quiet_until.isoformat(), row.email_fallback) == (  # type: ignore[union-attr]
        "21:30:00",
        "06:45:00",
        False,
    )


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (
            {"quiet_from": "25:99", "quiet_until": "06:00"},
            "quiet_from",
            "Please enter a time like 21:30.",
        ),
        ({"quiet_from": "22:00"}, "quiet_until", "Please enter both the start and the end"),
        (
            {"quiet_from": "07:00", "quiet_until": "07:00"},
            "quiet_until",
            "must end at another time",
        ),
    ],
)
def test_settings_page_explains_bad_input(
    client: FlaskClient, db: Session, parent: User, data: dict[str, str], field: str, message: str
) -> None:
    _read_in_english(db, parent)
    token = csrf_token(client, "/settings/notifications")
    response = client.post("/settings/notifications", data={"csrf_token": token, **data})
    assert response.status_code == 422
    text = response.get_data(as_text=True)
    assert message in text and f'id="f-{field}-error"' in text
    db.rollback()
    assert db.get(NotificationSettings, parent.id) is None


def test_settings_page_refuses_a_missing_csrf_token(
    client: FlaskClient, db: Session, parent: User
) -> None:
    response = client.post(
        "/settings/notifications", data={"quiet_from": "22:00", "quiet_until": "06:00"}
    )
    assert response.status_code == 400
    db.rollback()
    assert db.get(NotificationSettings, parent.id) is None
