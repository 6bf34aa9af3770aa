"""Generated bad input through every public form and the admin forms: never a server error,
never a partial write.

Each form gets a few hundred hypothesis examples (more than 500 in all). Counts of every table
are compared before and after each request: a request either changes nothing but the login
bookkeeping (failures, audit, sessions), or, where it succeeded, changes exactly what it should.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.access import load_actor
from kita.db import Base
from kita.models.accounts import Role
from kita.models.organisation import GuardianLink, Relation
from kita.services.accounts import request_password_reset
from kita.services.invitations import InvitationRequest, create_invitation
from tests.conftest import csrf_token
from tests.factories import make_child, make_group, make_kita, make_user

BOOKKEEPING = {"login_failures", "audit_events", "audit_head", "server_sessions"}
SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

nasty_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=200, max_size=3000),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "a@b",
            "@",
            "x" * 255 + "@example.org",
            "ä@ö.de",
            "' OR 1=1 --",
            "<script>alert(1)</script>",
            "%(name)s",
            "de",
            "xx",
            str(uuid.uuid4()),
            "2024-02-30",
            "../../etc/passwd",
            "\u202e",
            "٣٤٥",
        ]
    ),
)


def form_data(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Some of the expected fields (missing ones too), with hostile values and extra keys."""
    return st.fixed_dictionaries(
        {},
        optional={**{name: nasty_text for name in fields}, "extra": nasty_text},
    )


def _counts(db: Session) -> dict[str, int]:
    db.rollback()
    return {
        table.name: db.scalar(select(func.count()).select_from(table)) or 0
        for table in Base.metadata.sorted_tables
    }


def _changed(before: dict[str, int], after: dict[str, int]) -> set[str]:
    return {name for name in before if before[name] != after[name]} - BOOKKEEPING


def _post(client: FlaskClient, path: str, data: dict[str, Any], token: str) -> int:
    payload = dict(data)
    payload["csrf_token"] = token
    with client.post(path, data=payload) as response:
        return response.status_code


def test_login_form(client: FlaskClient, db: Session) -> None:
    make_user(db, email="known@example.org")
    token = csrf_token(client)

    @SETTINGS
    @given(form_data(["email", "password", "next"]))
    def check(data: dict[str, Any]) -> None:
        before = _counts(db)
        status = _post(client, "/login", data, token)
        assert status < 500
        assert _changed(before, _counts(db)) == set()

    check()


def test_invitation_redemption(client: FlaskClient, db: Session) -> None:
    kita = make_kita(db)
    child = make_child(db, make_group(db, kita))
    leader = make_user(db, roles=[(kita, Role.LEADER)])
    token_value = create_invitation(
        db,
        actor=load_actor(db, leader),
        kita=kita,
        request=InvitationRequest(role=Role.PARENT, child_id=child.id, relation=Relation.MOTHER),
        now=datetime.now(UTC),
        days=1,
    ).token
    db.commit()
    path = f"/join/{token_value}"
    token = csrf_token(client, path)

    @SETTINGS
    @given(form_data(["display_name", "email", "password", "password_repeat", "locale"]))
    def check(data: dict[str, Any]) -> None:
        before = _counts(db)
        status = _post(client, path, data, token)
        assert status < 500
        changed = _changed(before, _counts(db))
        # Either nothing, or the whole account: user, membership, guardian link, invitation used.
        assert changed in (set(), {"users", "memberships", "guardian_links"})

    check()


def test_password_reset_forms(client: FlaskClient, db: Session) -> None:
    user = make_user(db, email="reset@example.org")
    issued = request_password_reset(db, email=user.email, now=datetime.now(UTC), valid_minutes=60)
    assert issued is not None
    db.commit()
    path = f"/password/reset/{issued[1]}"
    token = csrf_token(client)

    @SETTINGS
    @given(
        form_data(["email"]),
        form_data(["password", "password_repeat"]),
        st.sampled_from([path, "/password/reset/bogus", "/password/reset/" + "x" * 300]),
    )
    def check(forgot: dict[str, Any], reset: dict[str, Any], target: str) -> None:
        before = _counts(db)
        assert _post(client, "/password/forgot", forgot, token) < 500
        changed = _changed(before, _counts(db))
        assert changed <= {"password_resets"}
        before = _counts(db)
        assert _post(client, target, reset, token) < 500
        assert _changed(before, _counts(db)) == set()

    check()


def test_account_and_language_forms(
    app: Flask, client: FlaskClient, db: Session, login: Any
) -> None:
    user = make_user(db)
    login(user)
    token = csrf_token(client, "/account")

    @SETTINGS
    @given(
        form_data(["current_password", "new_password", "new_password_repeat"]),
        form_data(["locale", "next"]),
    )
    def check(account: dict[str, Any], language: dict[str, Any]) -> None:
        before = _counts(db)
        assert _post(client, "/account", account, token) < 500
        assert _post(client, "/language", language, token) < 500
        assert _changed(before, _counts(db)) == set()

    check()


# --- CSV import and the admin forms ---------------------------------------------------------

ADMIN_SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CHILD_FIELDS = ["first_name", "last_name", "birth_date", "entry_date", "leave_date", "group_id"]
INVITE_FIELDS = ["role", "group_id", "email", "locale", "relation", "has_custody", "may_pick_up"]


def test_csv_upload(client: FlaskClient, db: Session, login: Any) -> None:
    kita = make_kita(db)
    make_group(db, kita, name="Sonnen")
    login(make_user(db, roles=[(kita, Role.LEADER)]))
    path = f"/admin/kitas/{kita.id}/import/"
    token = csrf_token(client, path)
    header = b"Vorname;Nachname;Geburtsdatum;Gruppe;Elternteil E-Mail\n"

    @SETTINGS
    @given(
        st.one_of(
            st.binary(max_size=3000),
            st.text(max_size=2000).map(str.encode),
            st.text(max_size=500).map(lambda t: header + t.encode("utf-8", "replace")),
        )
    )
    def check(raw: bytes) -> None:
        before = _counts(db)
        with client.post(
            path,
            data={"csrf_token": token, "file": (io.BytesIO(raw), "x.csv")},
            content_type="multipart/form-data",
        ) as response:
            assert response.status_code < 500
        # At most the upload itself is stored; never a child or an invitation.
        assert _changed(before, _counts(db)) <= {"csv_imports"}

    check()


def test_admin_forms(client: FlaskClient, db: Session, login: Any) -> None:
    kita = make_kita(db)
    group = make_group(db, kita)
    child = make_child(db, group)
    leader = make_user(db, roles=[(kita, Role.LEADER)])
    parent = make_user(db, roles=[(kita, Role.PARENT)], children=[child])
    link = db.scalars(select(GuardianLink).where(GuardianLink.user_id == parent.id)).one()
    login(leader)
    base = f"/admin/kitas/{kita.id}"
    token = csrf_token(client, f"{base}/children/new")
    # endpoint -> (fields, the tables a successful request may change)
    forms: dict[str, tuple[list[str], set[str]]] = {
        f"{base}/groups": (["name"], {"groups"}),
        f"{base}/groups/{group.id}": (["name"], set()),
        f"{base}/children/new": (CHILD_FIELDS, {"children"}),
        f"{base}/children/{child.id}/edit": (CHILD_FIELDS, set()),
        f"{base}/children/{child.id}/invite": (INVITE_FIELDS, {"invitations"}),
        f"{base}/children/{child.id}/guardians/{link.id}": (
            ["relation", "has_custody", "may_pick_up"],
            set(),
        ),
        f"{base}/staff/invite": (INVITE_FIELDS, {"invitations"}),
        f"{base}/groups/{group.id}/delete": (["confirm"], set()),
    }

    @ADMIN_SETTINGS
    @given(st.sampled_from(sorted(forms)), st.data())
    def check(path: str, data: st.DataObject) -> None:
        fields, may_change = forms[path]
        values = data.draw(form_data(fields))
        before = _counts(db)
        status = _post(client, path, values, token)
        assert status < 500
        changed = _changed(before, _counts(db))
        if status >= 400:
            assert changed == set(), (path, status)
        else:
            assert changed <= may_change, (path, changed)

    check()
