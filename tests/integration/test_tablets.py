"""Shared staff tablets over HTTP: pairing stores only a hash and sets a device cookie, staff
unlock with a PIN (weak ones refused, five wrong ones block it until a normal login), a tablet
session is bound to its device and ends on lock, on idle and on revoke, and another Kita's
tablet cannot be used."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from kita.crypto import KeyKind, KeyNotFoundError
from kita.errors import ValidationError
from kita.models.accounts import Membership, Role, ServerSession, User
from kita.models.audit import AuditEvent
from kita.models.messaging import StaffPin, Tablet, TabletOutboxKey
from kita.models.organisation import Child, Kita
from kita.services import tablets
from tests.conftest import csrf_token, login_as, post_form
from tests.factories import PASSWORD, make_child, make_group, make_kita, make_user, totp_now

DEVICE = "__Host-kita_tablet"
SESSION = "__Host-kita_session"
PIN = "4826"


@dataclass
class Setup:
    kita: Kita
    child: Child
    leader: User
    educator: User
    parent: User
    tablet: Tablet
    device_token: str


def _fresh(db: Session) -> None:
    """See what requests wrote since (the session keeps loaded objects otherwise)."""
    db.rollback()
    db.expire_all()


def _audit(db: Session, action: str) -> int:
    _fresh(db)
    return int(
        db.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action))
        or 0
    )


def _pair(app: Flask, db: Session, kita: Kita, leader: User, name: str = "Tablet Käfer") -> str:
    """Pair through the leader's page; returns the device token the cookie carries."""
    client = app.test_client()
    login_as(client, app, leader)
    path = f"/admin/kitas/{kita.id}/tablets"
    response = post_form(client, path, {"name": name}, token_from=path)
    assert response.status_code == 302, response.get_data(as_text=True)
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(DEVICE))
    for flag in ("Secure", "HttpOnly", "Path=/", "Max-Age="):
        assert flag in header
    assert "Domain" not in header
    cookie = client.get_cookie(DEVICE)
    assert cookie is not None
    return cookie.value


def _set_pin(app: Flask, db: Session, user: User, pin: str = PIN) -> None:
    tablets.set_pin(db, app.extensions["kita"].hasher, user=user, pin=pin, now=datetime.now(UTC))
    db.commit()


def _device(app: Flask, token: str) -> FlaskClient:
    client = app.test_client()
    client.set_cookie(DEVICE, token)
    return client


def _unlock(client: FlaskClient, user: User, pin: str = PIN) -> object:
    path = f"/tablet/unlock/{user.id}"
    return post_form(client, path, {"pin": pin}, token_from="/tablet")


@pytest.fixture
def setup(app: Flask, db: Session) -> Setup:
    kita = make_kita(db)
    group = make_group(db, kita, name="Käfer")
    child = make_child(db, group, first_name="Mila")
    leader = make_user(db, name="Lena Leitung", roles=[(kita, Role.LEADER)])
    educator = make_user(db, name="Erika Muster", roles=[(kita, Role.EDUCATOR)], groups=[group])
    parent = make_user(db, name="Paula Eltern", roles=[(kita, Role.PARENT)], children=[child])
    token = _pair(app, db, kita, leader)
    _fresh(db)
    tablet = db.scalars(select(Tablet).where(Tablet.kita_id == kita.id)).one()
    _set_pin(app, db, educator)
    return Setup(kita, child, leader, educator, parent, tablet, token)


def test_pairing_stores_only_the_hash_and_lists_the_tablet(
    app: Flask, db: Session, setup: Setup
) -> None:
    assert setup.tablet.token_hash == hashlib.sha256(setup.device_token.encode()).digest()
    assert setup.tablet.name == "Tablet Käfer"
    assert setup.tablet.paired_by_id == setup.leader.id
    assert _audit(db, "tablet.paired") == 1
    leader = app.test_client()
    login_as(leader, app, setup.leader)
    page = leader.get(f"/admin/kitas/{setup.kita.id}/tablets").get_data(as_text=True)
    assert "Tablet Käfer" in page and setup.device_token not in page


@pytest.mark.parametrize(
    ("name", "minutes", "field"),
    [
        ("", "", "name"),
        ("x" * 121, "", "name"),
        ("Tablet", "0", "lock_minutes"),
        ("Tablet", "abc", "lock_minutes"),
        ("Tablet", "241", "lock_minutes"),
    ],
)
def test_pairing_refuses_bad_input(
    app: Flask, db: Session, setup: Setup, name: str, minutes: str, field: str
) -> None:
    leader = app.test_client()
    login_as(leader, app, setup.leader)
    path = f"/admin/kitas/{setup.kita.id}/tablets"
    response = post_form(leader, path, {"name": name, "lock_minutes": minutes}, token_from=path)
    assert response.status_code == 422
    assert f'id="f-{field}-error"' in response.get_data(as_text=True)
    _fresh(db)
    assert db.scalar(select(func.count()).select_from(Tablet)) == 1


@pytest.mark.parametrize(
    "pin",
    [
        "0000",
        "1111",
        "1234",
        "4321",
        "7890",
        "1212",
        "123123",
        "1990",
        "2013",
        "2580",
        "123",
        "123456789",
        "12a4",
        "١٢٣٤٥",
        " 4826x",
        "",
    ],
)
def test_weak_or_malformed_pins_are_refused(
    app: Flask, db: Session, setup: Setup, pin: str
) -> None:
    client = app.test_client()
    login_as(client, app, setup.educator)
    response = post_form(
        client, "/account/pin", {"pin": pin, "pin_repeat": pin}, token_from="/account/pin"
    )
    assert response.status_code == 422
    assert 'id="f-pin-error"' in response.get_data(as_text=True)
    _fresh(db)
    stored = db.get_one(StaffPin, setup.educator.id)
    app.extensions["kita"].hasher.verify(stored.pin_hash, PIN)  # unchanged


def test_a_good_pin_is_stored_as_an_argon2_hash(app: Flask, db: Session, setup: Setup) -> None:
    client = app.test_client()
    login_as(client, app, setup.leader)
    data = {"pin": "583920", "pin_repeat": "583920"}
    response = post_form(client, "/account/pin", data, token_from="/account/pin")
    assert response.status_code == 200
    _fresh(db)
    stored = db.get_one(StaffPin, setup.leader.id)
    assert stored.pin_hash.startswith("$argon2id$") and "583920" not in stored.pin_hash
    mismatch = post_form(
        client, "/account/pin", {"pin": "583921", "pin_repeat": "583922"}, token_from="/account/pin"
    )
    assert mismatch.status_code == 422 and "not the same" in mismatch.get_data(as_text=True)


def test_people_who_cannot_use_tablets_have_no_pin_page(
    app: Flask, db: Session, setup: Setup
) -> None:
    client = app.test_client()
    login_as(client, app, setup.parent)
    assert client.get("/account/pin").status_code == 404


def test_the_tiles_show_first_names_of_staff_with_a_pin(
    app: Flask, db: Session, setup: Setup
) -> None:
    other_kita = make_kita(db)
    stranger = make_user(db, name="Sonja Fremd", roles=[(other_kita, Role.EDUCATOR)])
    _set_pin(app, db, stranger, "582914")
    make_user(db, name="Nina Ohnepin", roles=[(setup.kita, Role.EDUCATOR)])
    page = _device(app, setup.device_token).get("/tablet").get_data(as_text=True)
    assert "Erika" in page and "Muster" not in page
    for absent in ("Sonja", "Nina", "Lena", "Paula"):
        assert absent not in page
    # Without the device cookie the page explains pairing and names nobody.
    bare = app.test_client().get("/tablet").get_data(as_text=True)
    assert "not a paired tablet" in bare and "Erika" not in bare


def test_unlock_with_the_pin_opens_a_session_bound_to_the_tablet(
    app: Flask, db: Session, setup: Setup
) -> None:
    device = _device(app, setup.device_token)
    response = _unlock(device, setup.educator)
    assert response.status_code == 302 and response.headers["Location"].endswith("/tablet/today")
    today = device.get("/tablet/today")
    assert today.status_code == 200
    text = today.get_data(as_text=True)
    assert "Mila" in text and 'data-lock-seconds="300"' in text
    _fresh(db)
    rows = db.scalars(select(ServerSession).where(ServerSession.user_id == setup.educator.id))
    assert [row.data.get("tablet_id") for row in rows] == [str(setup.tablet.id)]
    assert _audit(db, "tablet.unlocked") == 1
    # The outbox key: 256 random bits, the same on every unlock of this person on this tablet.
    first = device.get("/api/v1/tablet/outbox-key")
    assert first.status_code == 200 and first.headers["Cache-Control"] == "no-store"
    key = base64.urlsafe_b64decode(first.json["key"] + "=")
    assert len(key) == 32
    assert device.get("/api/v1/tablet/outbox-key").json["key"] == first.json["key"]
    _fresh(db)
    stored = db.scalars(select(TabletOutboxKey)).one()
    assert key not in stored.key_ct  # stored encrypted only


def test_the_outbox_key_is_only_handed_out_in_a_tablet_session(
    app: Flask, db: Session, setup: Setup
) -> None:
    desktop = app.test_client()
    login_as(desktop, app, setup.educator)
    assert desktop.get("/api/v1/tablet/outbox-key").status_code == 404
    # A leader with the device cookie but a normal session gets none either.
    leader = _device(app, setup.device_token)
    login_as(leader, app, setup.leader)
    assert leader.get("/api/v1/tablet/outbox-key").status_code == 404


def test_five_wrong_pins_block_the_pin_until_a_normal_login(
    app: Flask, db: Session, setup: Setup
) -> None:
    device = _device(app, setup.device_token)
    for left in (4, 3, 2, 1):
        response = _unlock(device, setup.educator, "9999")
        assert response.status_code == 401
        assert f"{left} attempts left" in response.get_data(as_text=True)
    blocked = _unlock(device, setup.educator, "9999")
    assert blocked.status_code == 423
    assert "blocked" in blocked.get_data(as_text=True)
    # Now even the right PIN is refused, and the PIN pad says why.
    assert _unlock(device, setup.educator).status_code == 423
    assert "blocked" in device.get(f"/tablet/unlock/{setup.educator.id}").get_data(as_text=True)
    assert _audit(db, "tablet.unlock_failed") == 4 and _audit(db, "tablet.pin_blocked") == 1
    _fresh(db)
    assert db.get_one(StaffPin, setup.educator.id).failed_attempts == 5

    # A normal login with password and second factor lifts the block.
    browser = app.test_client()
    post_form(browser, "/login", {"email": setup.educator.email, "password": PASSWORD})
    response = post_form(browser, "/login/code", {"code": totp_now()}, token_from="/login/code")
    assert response.status_code == 302
    assert _unlock(device, setup.educator).status_code == 302


def test_lock_ends_the_session_but_asks_to_keep_the_outbox(
    app: Flask, db: Session, setup: Setup
) -> None:
    device = _device(app, setup.device_token)
    _unlock(device, setup.educator)
    response = post_form(device, "/tablet/lock", {}, token_from="/tablet/today")
    assert response.status_code == 302 and response.headers["Location"].endswith("/tablet")
    # Caches go; storage (the encrypted outbox in IndexedDB) stays for the next unlock.
    assert response.headers["Clear-Site-Data"] == '"cache"'
    _fresh(db)
    count = select(func.count()).select_from(ServerSession)
    assert db.scalar(count.where(ServerSession.user_id == setup.educator.id)) == 0
    assert device.get("/tablet/today").status_code == 302
    assert _audit(db, "tablet.locked") == 1
    assert "Erika" in device.get("/tablet").get_data(as_text=True)


def test_an_idle_tablet_session_ends_sooner_than_a_normal_one(
    app: Flask, db: Session, setup: Setup
) -> None:
    device = _device(app, setup.device_token)
    _unlock(device, setup.educator)
    desktop = app.test_client()
    login_as(desktop, app, setup.leader)
    ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10)
    _fresh(db)  # a read snapshot older than the requests' writes cannot write on SQLite
    db.execute(update(ServerSession).values(last_seen_at=ten_minutes_ago))
    db.commit()
    response = device.get("/tablet/today")
    assert response.status_code == 302 and response.headers["Location"].endswith("/tablet")
    assert device.get("/api/v1/tablet/outbox-key").status_code == 401
    assert desktop.get("/home").status_code == 200  # 30 minutes for normal sessions
    _fresh(db)
    events = db.scalars(select(AuditEvent).where(AuditEvent.action == "tablet.locked")).all()
    assert [event.detail for event in events] == ["reason=idle"]


def test_a_tablet_session_does_not_work_without_its_device(
    app: Flask, db: Session, setup: Setup
) -> None:
    device = _device(app, setup.device_token)
    _unlock(device, setup.educator)
    stolen = device.get_cookie(SESSION)
    assert stolen is not None
    elsewhere = app.test_client()
    elsewhere.set_cookie(SESSION, stolen.value)
    assert elsewhere.get("/tablet/today").status_code == 302
    # The session is gone for the device as well.
    assert device.get("/tablet/today").status_code == 302


def test_revoking_ends_tablet_sessions_and_makes_its_outboxes_unreadable(
    app: Flask, db: Session, setup: Setup
) -> None:
    device = _device(app, setup.device_token)
    _unlock(device, setup.educator)
    assert device.get("/api/v1/tablet/outbox-key").status_code == 200
    leader = app.test_client()
    login_as(leader, app, setup.leader)
    path = f"/admin/kitas/{setup.kita.id}/tablets"
    response = post_form(
        leader, f"{path}/{setup.tablet.id}/revoke", {"confirm": "yes"}, token_from=path
    )
    assert response.status_code == 302, response.headers.get("Location")
    assert response.headers["Location"].endswith(path)
    _fresh(db)
    assert db.get_one(Tablet, setup.tablet.id).revoked_at is not None
    count = select(func.count()).select_from(ServerSession)
    assert db.scalar(count.where(ServerSession.user_id == setup.educator.id)) == 0
    assert db.scalar(select(func.count()).select_from(TabletOutboxKey)) == 0
    with pytest.raises(KeyNotFoundError):
        app.extensions["kita"].keys.data_key(setup.tablet.id, KeyKind.GENERAL, create=False)
    assert device.get("/tablet/today").status_code == 302
    assert "not a paired tablet" in device.get("/tablet").get_data(as_text=True)
    assert _unlock(device, setup.educator).status_code == 302  # back to the pairing notice
    assert leader.get(path).status_code == 200 and _audit(db, "tablet.revoked") == 1
    # The leader's own session is untouched.
    assert leader.get("/home").status_code == 200


def test_another_kitas_tablet_cannot_be_used_or_revoked(
    app: Flask, db: Session, setup: Setup
) -> None:
    other_kita = make_kita(db)
    other_group = make_group(db, other_kita)
    other_educator = make_user(db, roles=[(other_kita, Role.EDUCATOR)], groups=[other_group])
    other_leader = make_user(db, roles=[(other_kita, Role.LEADER)])
    _set_pin(app, db, other_educator, "583920")
    device = _device(app, setup.device_token)
    assert device.get(f"/tablet/unlock/{other_educator.id}").status_code == 404
    assert _unlock(device, other_educator, "583920").status_code == 404
    assert _unlock(device, setup.parent, "583920").status_code == 404
    leader = app.test_client()
    login_as(leader, app, other_leader)
    own_path = f"/admin/kitas/{other_kita.id}/tablets"
    token = csrf_token(leader, own_path)
    for path in (
        f"/admin/kitas/{setup.kita.id}/tablets",
        f"/admin/kitas/{other_kita.id}/tablets/{setup.tablet.id}/revoke",
        f"/admin/kitas/{setup.kita.id}/tablets/{setup.tablet.id}/revoke",
    ):
        assert leader.post(path, data={"csrf_token": token, "confirm": "yes"}).status_code == 404
    _fresh(db)
    assert db.get_one(Tablet, setup.tablet.id).revoked_at is None


def test_pin_rules() -> None:
    for weak in ("0000", "9876", "8901", "2020", "121212", "11112222"[:4]):
        with pytest.raises(ValidationError):
            tablets.check_pin(weak)
    for good in ("4826", "583920", "70914382"):
        assert tablets.check_pin(good) == good


def test_leaving_the_kita_ends_the_tablet_session(app: Flask, db: Session, setup: Setup) -> None:
    device = _device(app, setup.device_token)
    _unlock(device, setup.educator)
    assert device.get("/tablet/today").status_code == 200
    _fresh(db)
    db.execute(delete(Membership).where(Membership.user_id == setup.educator.id))
    db.commit()
    response = device.get("/tablet/today")
    assert response.status_code == 302 and response.headers["Location"].endswith("/tablet")
    _fresh(db)
    events = db.scalars(select(AuditEvent).where(AuditEvent.action == "tablet.locked")).all()
    assert [event.detail for event in events] == ["reason=membership"]


def test_a_lock_after_the_server_ended_the_session_still_reaches_the_tiles(
    app: Flask, db: Session, setup: Setup
) -> None:
    device = _device(app, setup.device_token)
    _unlock(device, setup.educator)
    token = csrf_token(device, "/tablet/today")
    _fresh(db)
    db.execute(delete(ServerSession))
    db.commit()
    response = device.post("/tablet/lock", data={"csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/tablet")
