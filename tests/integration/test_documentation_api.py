"""The JSON API over HTTP: idempotent PUTs, 409 on stale edits, 422 with field errors, consent
refusals, 404 for everyone who may not see the documentation, break-glass, photo uploads checked
by content, and an audit row for every read."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.crypto import KeyService
from kita.models.accounts import User
from kita.models.audit import AuditEvent
from kita.models.documentation import (
    ConsentPurpose,
    DocumentationEntry,
    DocumentationPhoto,
    DocumentationRevision,
)
from kita.services import consent, documentation
from tests.unit.test_documentation import World, act, build_world, consent_to

API = "/api/v1"


def png(size: tuple[int, int] = (320, 240)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "blue").save(buffer, "PNG")
    return buffer.getvalue()


def multipart(fields: dict[str, str], data: bytes, filename: str) -> tuple[bytes, str]:
    """A multipart body built in memory (the test client's own encoder spools big bodies to a
    temporary file it never closes)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Api:
    """A client logged in as one user, sending the CSRF token the API hands out."""

    def __init__(self, client: FlaskClient, login: Any) -> None:
        self.client, self.login, self.token = client, login, ""

    def as_user(self, user: User) -> Api:
        self.login(user)
        response = self.client.get(f"{API}/session")
        assert response.status_code == 200
        assert response.json is not None and response.json["user_id"] == str(user.id)
        self.token = response.json["csrf_token"]
        return self

    def put(self, entry_id: object, body: Any, **headers: str) -> Any:
        return self.client.put(
            f"{API}/observations/{entry_id}",
            json=body,
            headers={"X-CSRFToken": self.token, **headers},
        )

    def upload(self, entry_id: object, data: bytes, photo_id: object = None, **kw: Any) -> Any:
        fields = {"photo_id": str(photo_id)} if photo_id is not None else {}
        payload, content_type = multipart(fields, data, kw.pop("name", "photo.jpg"))
        return self.client.post(
            f"{API}/observations/{entry_id}/photos",
            data=payload,
            content_type=content_type,
            headers={"X-CSRFToken": self.token, **kw},
        )

    def get(self, path: str) -> Any:
        return self.client.get(f"{API}{path}")


@pytest.fixture
def world(db: Session) -> World:
    return build_world(db)


@pytest.fixture
def consented(db: Session, world: World) -> World:
    consent_to(db, world, ConsentPurpose.DOCUMENTATION, ConsentPurpose.PHOTOS_IN_DOCUMENTATION)
    return world


@pytest.fixture
def api(client: FlaskClient, login: Any) -> Api:
    return Api(client, login)


@pytest.fixture
def keys(app: Flask) -> KeyService:
    return app.extensions["kita"].keys  # type: ignore[no-any-return]


def body(child: object, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "child_id": str(child),
        "kind": "learning_story",
        "status": "draft",
        "title": "Am Wasser",
        "text": "Er hat ausprobiert, was schwimmt.",
        "areas": ["science_technology"],
        "dispositions": ["interested"],
        "template_values": {},
        "base_version": 0,
    }
    data.update(changes)
    return data


def counts(db: Session) -> tuple[int, int, int]:
    db.rollback()
    return tuple(  # type: ignore[return-value]
        int(db.scalar(select(func.count()).select_from(model)) or 0)
        for model in (DocumentationEntry, DocumentationRevision, DocumentationPhoto)
    )


def audit_count(db: Session, action: str | None = None) -> int:
    db.rollback()
    query = select(func.count()).select_from(AuditEvent)
    if action:
        query = query.where(AuditEvent.action == action)
    return int(db.scalar(query) or 0)


def make_entry(api: Api, w: World, **changes: Any) -> str:
    entry_id = str(uuid.uuid4())
    response = api.put(entry_id, body(w.child.id, **changes))
    assert response.status_code == 201, response.json
    return entry_id


# --- saving -----------------------------------------------------------------------------------


def test_put_creates_replays_updates_and_refuses_stale_edits(
    api: Api, db: Session, consented: World
) -> None:
    w = consented
    api.as_user(w.educator)
    entry_id = uuid.uuid4()
    created = api.put(entry_id, body(w.child.id))
    assert created.status_code == 201
    assert created.headers["Location"].endswith(f"/api/v1/observations/{entry_id}")
    assert created.json["version"] == 1 and created.json["title"] == "Am Wasser"
    assert created.json["areas"] == ["science_technology"]
    assert counts(db) == (1, 1, 0)

    replay = api.put(entry_id, body(w.child.id))
    assert (replay.status_code, replay.json["version"]) == (200, 1)
    assert counts(db) == (1, 1, 0)

    changed = body(w.child.id, text="Zweite Fassung", base_version=1)
    updated = api.put(entry_id, changed, **{"Idempotency-Key": str(entry_id)})
    assert (updated.status_code, updated.json["version"]) == (200, 2)
    again = api.put(entry_id, changed)
    assert (again.status_code, again.json["version"]) == (200, 2)
    assert counts(db) == (1, 2, 0)

    stale = api.put(entry_id, body(w.child.id, text="Meine Fassung", base_version=1))
    assert stale.status_code == 409
    assert stale.json["error"] == "StaleEditError" and stale.json["current_version"] == 2
    mismatch = api.put(
        entry_id,
        body(w.child.id, text="x", base_version=2),
        **{"Idempotency-Key": str(uuid.uuid4())},
    )
    assert mismatch.status_code == 400
    current = api.get(f"/observations/{entry_id}")
    assert (current.json["text"], current.json["version"]) == ("Zweite Fassung", 2)
    assert counts(db) == (1, 2, 0)
    row = db.get(DocumentationEntry, entry_id)
    assert row is not None and b"Zweite" not in row.content_ct


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"child_id": "not-a-uuid"}, "child_id"),
        ({"child_id": None}, "child_id"),
        ({"text": "x" * 20_001}, "text"),
        ({"title": "t" * 201}, "title"),
        ({"title": 5}, "title"),
        ({"areas": "movement"}, "areas"),
        ({"areas": ["movement", 3]}, "areas"),
        ({"areas": ["flying"]}, "areas"),
        ({"dispositions": ["lazy"]}, "dispositions"),
        ({"kind": "poem"}, "kind"),
        ({"base_version": "1"}, "base_version"),
        ({"base_version": -1}, "base_version"),
        ({"observed_on": "31.12.2024"}, "observed_on"),
        ({"template_id": "123"}, "template_id"),
        ({"template_values": ["a"]}, "template_values"),
        ({"template_values": {"a": {"b": 1}}}, "template_values"),
        ({"template_values": {"a": "b"}}, "template_values"),
    ],
)
def test_invalid_bodies_answer_422_with_field_errors(
    api: Api, db: Session, consented: World, changes: dict[str, Any], field: str
) -> None:
    api.as_user(consented.educator)
    response = api.put(uuid.uuid4(), body(consented.child.id, **changes))
    assert response.status_code == 422, response.json
    assert response.json["error"] == "ValidationError"
    assert field in response.json["fields"] and response.json["fields"][field]
    assert counts(db) == (0, 0, 0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELDS = (
    "child_id",
    "kind",
    "status",
    "title",
    "text",
    "areas",
    "dispositions",
    "template_id",
    "template_values",
    "observed_on",
    "base_version",
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(broken=st.dictionaries(st.sampled_from(FIELDS), json_values, min_size=1, max_size=4))
def test_generated_bodies_never_cause_a_server_error(
    api: Api, db: Session, consented: World, broken: dict[str, Any]
) -> None:
    if not api.token:
        api.as_user(consented.educator)
    entry_id = uuid.uuid4()
    response = api.put(entry_id, body(consented.child.id, **broken))
    assert response.status_code in {201, 400, 404, 422}, response.get_data(as_text=True)
    db.rollback()
    stored = db.get(DocumentationEntry, entry_id) is not None
    assert stored == (response.status_code == 201)


def test_invalid_template_values_over_http(api: Api, db: Session, consented: World) -> None:
    w = consented
    template = documentation.ensure_default_templates(db, w.kita)[0]
    db.commit()
    api.as_user(w.educator)
    response = api.put(
        uuid.uuid4(),
        body(
            w.child.id,
            template_id=str(template.id),
            template_values={"engagement": 9, "setting": "moon", "nope": "x"},
        ),
    )
    assert response.status_code == 422
    assert set(response.json["fields"]) == {
        "template_values.engagement",
        "template_values.setting",
        "template_values.nope",
    }
    ok = api.put(
        uuid.uuid4(),
        body(
            w.child.id,
            template_id=str(template.id),
            template_values={"engagement": 4, "setting": "outdoors"},
        ),
    )
    assert ok.status_code == 201 and ok.json["template_values"] == {
        "engagement": 4,
        "setting": "outdoors",
    }


def test_malformed_requests_get_clear_4xx(
    api: Api, client: FlaskClient, db: Session, consented: World
) -> None:
    api.as_user(consented.educator)
    headers = {"X-CSRFToken": api.token}
    url = f"{API}/observations/{uuid.uuid4()}"
    cases = [
        client.put(url, data="title=x", headers=headers, content_type="text/plain"),
        client.put(url, data="{not json", headers=headers, content_type="application/json"),
        client.put(url, json=["a", "list"], headers=headers),
        client.put(url, json="just a string", headers=headers),
    ]
    for response in cases:
        assert response.status_code == 400 and response.is_json
        assert "JSON object" in response.json["message"]
    for path in ("/observations/not-a-uuid", "/photos/123", "/children/xyz/timeline"):
        response = client.get(f"{API}{path}")
        assert response.status_code == 404 and response.is_json
    assert client.put(f"{API}/observations/1234", json={}, headers=headers).status_code == 404
    assert counts(db) == (0, 0, 0)


def test_csrf_and_login_are_required(
    api: Api, client: FlaskClient, db: Session, consented: World
) -> None:
    # Anonymous: reads answer 401; writes fail the CSRF check first (no session, no token).
    response = client.put(f"{API}/observations/{uuid.uuid4()}", json=body(consented.child.id))
    assert response.status_code == 400 and response.json["error"] == "CSRFError"
    for path in ("/session", f"/children/{consented.child.id}/timeline"):
        anonymous = client.get(f"{API}{path}")
        assert anonymous.status_code == 401 and anonymous.json["error"] == "Unauthorized"
    api.as_user(consented.educator)
    no_token = client.put(f"{API}/observations/{uuid.uuid4()}", json=body(consented.child.id))
    assert no_token.status_code == 400 and no_token.json["error"] == "CSRFError"
    wrong = api.put(uuid.uuid4(), body(consented.child.id), **{"X-CSRFToken": "forged"})
    assert wrong.status_code == 400
    assert counts(db) == (0, 0, 0)


# --- consent ----------------------------------------------------------------------------------


def test_consent_refusals_over_http(api: Api, db: Session, world: World) -> None:
    w = world
    api.as_user(w.educator)
    refused = api.put(uuid.uuid4(), body(w.child.id))
    assert refused.status_code == 403 and refused.json["error"] == "ConsentRequiredError"
    assert "closed" in refused.json["message"]
    assert counts(db) == (0, 0, 0)

    consent_to(db, w, ConsentPurpose.DOCUMENTATION)
    entry_id = make_entry(api, w)
    photo = api.upload(entry_id, png(), uuid.uuid4())
    assert photo.status_code == 403 and "Photos" in photo.json["message"]

    consent.withdraw_consent(
        db, actor=act(db, w.parent), child=w.child, purpose=ConsentPurpose.DOCUMENTATION
    )
    db.commit()
    assert api.put(entry_id, body(w.child.id, text="neu", base_version=1)).status_code == 403
    assert api.put(uuid.uuid4(), body(w.child.id)).status_code == 403
    assert counts(db) == (1, 1, 0)
    # Reading stays possible after withdrawal.
    assert api.get(f"/observations/{entry_id}").status_code == 200


# --- access -----------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["other_educator", "other_parent", "council", "admin", "caretaker"])
def test_outsiders_get_404_everywhere(api: Api, db: Session, consented: World, who: str) -> None:
    w = consented
    api.as_user(w.educator)
    entry_id = make_entry(api, w, status="final")
    photo_id = uuid.uuid4()
    assert api.upload(entry_id, png(), photo_id).status_code == 201
    db.rollback()
    documentation.share_entry(
        db, actor=act(db, w.educator), entry_id=uuid.UUID(entry_id), shared=True
    )
    db.commit()
    before = audit_count(db)

    api.as_user(getattr(w, who))
    responses = [
        api.get(f"/observations/{entry_id}"),
        api.get(f"/photos/{photo_id}"),
        api.get(f"/children/{w.child.id}/timeline"),
        api.put(entry_id, body(w.child.id, text="fremd", base_version=1)),
        api.put(uuid.uuid4(), body(w.child.id)),
        api.upload(entry_id, png(), uuid.uuid4()),
        api.client.post(
            f"{API}/observations/{entry_id}/share",
            json={"shared": False},
            headers={"X-CSRFToken": api.token},
        ),
    ]
    assert [r.status_code for r in responses] == [404] * len(responses)
    assert all(r.is_json and "Traceback" not in r.get_data(as_text=True) for r in responses)
    assert counts(db) == (1, 1, 1)
    assert audit_count(db) == before


def test_break_glass_over_http(api: Api, db: Session, keys: KeyService, consented: World) -> None:
    w = consented
    api.as_user(w.educator)
    entry_id = make_entry(api, w)
    photo_id = uuid.uuid4()
    assert api.upload(entry_id, png(), photo_id).status_code == 201
    db.rollback()
    documentation.break_glass(
        db,
        actor=act(db, w.admin),
        keys=keys,
        child=w.child,
        reason="Beschwerde der Eltern, Prüfung durch den Träger (Vorgang 12)",
    )
    db.commit()
    api.as_user(w.admin)
    assert api.get(f"/observations/{entry_id}").status_code == 200
    assert api.get(f"/photos/{photo_id}").status_code == 200
    assert api.get(f"/children/{w.child.id}/timeline").json["total"] == 1
    assert api.put(entry_id, body(w.child.id, text="admin", base_version=1)).status_code == 404
    db.rollback()
    reads = db.scalars(
        select(AuditEvent).where(AuditEvent.actor_id == w.admin.id).order_by(AuditEvent.id)
    ).all()
    assert [e.action for e in reads] == [
        "documentation.break_glass",
        "documentation.read",
        "documentation.photo_read",
        "documentation.list",
    ]
    assert all(e.detail.startswith("break_glass") for e in reads[1:])


def test_every_read_leaves_one_audit_row(api: Api, db: Session, consented: World) -> None:
    w = consented
    api.as_user(w.leader)
    entry_id = make_entry(api, w)
    photo_id = uuid.uuid4()
    assert api.upload(entry_id, png(), photo_id).status_code == 201
    for path, action in (
        (f"/observations/{entry_id}", "documentation.read"),
        (f"/photos/{photo_id}", "documentation.photo_read"),
        (f"/children/{w.child.id}/timeline", "documentation.list"),
    ):
        before = audit_count(db, action)
        assert api.get(path).status_code == 200
        assert audit_count(db, action) == before + 1, path
    event = db.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
    assert event is not None
    assert (event.actor_id, event.object_type, event.object_id) == (
        w.leader.id,
        "child",
        str(w.child.id),
    )


def test_the_family_sees_only_shared_entries(api: Api, db: Session, consented: World) -> None:
    w = consented
    api.as_user(w.educator)
    internal = make_entry(api, w, title="intern", status="final")
    shared = make_entry(api, w, title="geteilt", status="final")
    share = api.client.post(
        f"{API}/observations/{shared}/share",
        json={"shared": True},
        headers={"X-CSRFToken": api.token},
    )
    assert share.status_code == 200 and share.json["shared_with_family_at"]
    draft = make_entry(api, w, title="entwurf")
    refused = api.client.post(
        f"{API}/observations/{draft}/share",
        json={"shared": True},
        headers={"X-CSRFToken": api.token},
    )
    assert refused.status_code == 422
    api.as_user(w.parent)
    timeline = api.get(f"/children/{w.child.id}/timeline")
    assert [e["title"] for e in timeline.json["entries"]] == ["geteilt"]
    assert api.get(f"/observations/{shared}").status_code == 200
    assert api.get(f"/observations/{internal}").status_code == 404
    assert api.put(shared, body(w.child.id, status="final", base_version=1)).status_code == 404


def test_timeline_filters_over_http(api: Api, db: Session, consented: World) -> None:
    w = consented
    api.as_user(w.educator)
    make_entry(api, w, title="a", areas=["media"], observed_on="2024-03-01")
    make_entry(api, w, title="b", areas=["ecology"], observed_on="2024-03-05")
    base = f"/children/{w.child.id}/timeline"
    assert [e["title"] for e in api.get(f"{base}?area=media").json["entries"]] == ["a"]
    period = api.get(f"{base}?since=2024-03-02&until=2024-03-31").json
    assert [e["title"] for e in period["entries"]] == ["b"]
    assert api.get(f"{base}?author={w.leader.id}").json["total"] == 0
    bad = api.get(f"{base}?since=yesterday&author=me&area=cooking")
    assert bad.status_code == 422 and set(bad.json["fields"]) == {"since", "author"}
    assert api.get(f"{base}?area=cooking").status_code == 422
    assert api.get(f"{base}?page=-3").json["page"] == 1


# --- photos -----------------------------------------------------------------------------------


def test_photo_upload_is_checked_by_content(api: Api, db: Session, consented: World) -> None:
    w = consented
    api.as_user(w.educator)
    entry_id = make_entry(api, w)
    photo_id = uuid.uuid4()
    uploaded = api.upload(entry_id, png((2000, 1000)), photo_id, name="IMG_0001.jpg")
    assert uploaded.status_code == 201
    assert (uploaded.json["width"], uploaded.json["height"]) == (1600, 800)
    again = api.upload(entry_id, png((2000, 1000)), photo_id)
    assert again.status_code == 200 and again.json["id"] == str(photo_id)
    assert counts(db) == (1, 1, 1)

    served = api.get(f"/photos/{photo_id}")
    assert served.status_code == 200 and served.mimetype == "image/jpeg"
    assert served.headers["Cache-Control"] == "no-store"
    assert Image.open(io.BytesIO(served.data)).format == "JPEG"
    entry = api.get(f"/observations/{entry_id}").json
    assert [p["id"] for p in entry["photos"]] == [str(photo_id)]

    text = api.upload(entry_id, b"just some text, honestly\n" * 40, uuid.uuid4(), name="x.jpg")
    assert text.status_code == 422 and "file" in text.json["fields"]
    too_big = api.upload(entry_id, b"\xff" * (10 * 1024 * 1024 + 1), uuid.uuid4())
    assert too_big.status_code == 422 and "10 MB" in too_big.json["fields"]["file"]
    far_too_big = api.upload(entry_id, b"\xff" * (11 * 1024 * 1024), uuid.uuid4())
    assert far_too_big.status_code == 413 and far_too_big.is_json
    no_id = api.upload(entry_id, png())
    assert no_id.status_code == 422 and "photo_id" in no_id.json["fields"]
    by_header = api.upload(entry_id, png(), **{"Idempotency-Key": str(uuid.uuid4())})
    assert by_header.status_code == 201
    no_file = api.client.post(
        f"{API}/observations/{entry_id}/photos",
        data={"photo_id": str(uuid.uuid4())},
        headers={"X-CSRFToken": api.token},
    )
    assert no_file.status_code == 422 and "file" in no_file.json["fields"]
    assert counts(db) == (1, 1, 2)
