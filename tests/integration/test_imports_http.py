"""CSV import over HTTP: upload → preview → commit, refusals, and who gets a 404."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from kita.models.accounts import Invitation, Role, User
from kita.models.audit import AuditEvent
from kita.models.imports import CsvImport
from kita.models.organisation import Child, Kita
from kita.services.imports import parse_csv
from kita.services.invitations import find_open_invitation
from tests.conftest import csrf_token, post_form
from tests.factories import make_child, make_group, make_kita, make_provider, make_user

GOOD = (
    "Vorname;Nachname;Geburtsdatum;Gruppe;guardian_name;guardian_email;guardian_relation\n"
    "Mia;Beispiel;14.03.2021;Sonne;Anna Beispiel;anna@example.org;Mutter\n"
    "Mia;Beispiel;14.03.2021;Sonne;Deniz Beispiel;;Vater\n"
    "Emil;Muster;2020-11-02;Sonne;;;\n"
).encode("cp1252")


def count(db: Session, model: type[Any]) -> int:
    db.rollback()  # see what the requests committed
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


def base(kita: Kita) -> str:
    return f"/admin/kitas/{kita.id}/import/"


def upload(client: FlaskClient, kita: Kita, raw: bytes, name: str = "kinder.csv") -> Any:
    """POST a multipart upload. The body is built here: the test client would spool a large
    body to a temporary file that it never closes (a ResourceWarning, an error in this suite)."""
    boundary = "kita-test-boundary-7f3a"
    token = csrf_token(client, base(kita))
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n'
            f"{token}\r\n--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + raw
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return client.post(
        base(kita), data=body, content_type=f"multipart/form-data; boundary={boundary}"
    )


@pytest.fixture
def kita(db: Session) -> Kita:
    kita = make_kita(db)
    make_group(db, kita, name="Sonne")
    return kita


@pytest.fixture
def leader(db: Session, kita: Kita) -> User:
    return make_user(db, roles=[(kita, Role.LEADER)], locale="en")


def test_upload_preview_commit(
    client: FlaskClient, db: Session, login: Any, kita: Kita, leader: User
) -> None:
    login(leader)
    form = client.get(base(kita))
    assert form.status_code == 200
    page = form.get_data(as_text=True)
    assert 'enctype="multipart/form-data"' in page
    assert "child_first_name" in page and "geburtsdatum" in page

    response = upload(client, kita, GOOD)
    assert response.status_code == 302
    csv_import = db.scalars(select(CsvImport)).one()
    assert response.headers["Location"].endswith(f"/import/{csv_import.id}")
    assert csv_import.kita_id == kita.id and csv_import.content.startswith("Vorname;")
    assert count(db, Child) == 0  # nothing is created by an upload

    preview = client.get(response.headers["Location"])
    assert preview.status_code == 200
    text = preview.get_data(as_text=True)
    assert "Deniz Beispiel" in text
    assert re.search(r"Children to create</dt><dd>2<", text)
    assert re.search(r"Guardians to invite</dt><dd>2<", text)
    assert re.search(r"Rows with errors</dt><dd>0<", text)
    commit_path = f"{base(kita)}{csv_import.id}/commit"
    assert f'action="{commit_path}"' in text

    result = post_form(client, commit_path, {}, token_from=response.headers["Location"])
    assert result.status_code == 200
    body = result.get_data(as_text=True)
    assert "2 children were created." in body and "2 invitations were created." in body
    assert body.count("<svg") == 2
    tokens = re.findall(r"https://kita\.test/join/([A-Za-z0-9_\-]+)", body)
    assert len(tokens) == 2

    db.rollback()
    children = db.scalars(select(Child).where(Child.kita_id == kita.id)).all()
    assert sorted(c.first_name for c in children) == ["Emil", "Mia"]
    mia = next(c for c in children if c.first_name == "Mia")
    invitations = db.scalars(select(Invitation)).all()
    assert {(i.child_id, i.relation, i.email) for i in invitations} == {
        (mia.id, "mother", "anna@example.org"),
        (mia.id, "father", None),
    }
    now = datetime.now(UTC)
    assert {find_open_invitation(db, token=t, now=now).id for t in tokens} == {
        i.id for i in invitations
    }
    stored = db.get(CsvImport, csv_import.id)
    assert stored is not None and stored.content == "" and stored.committed_at is not None
    assert db.scalars(
        select(AuditEvent.detail).where(AuditEvent.action == "imports.committed")
    ).one() == ("rows=3 children=2 invitations=2")

    # The links are shown once: the import cannot be opened or committed again.
    assert client.get(response.headers["Location"]).status_code == 409
    again = post_form(client, commit_path, {}, token_from=base(kita))
    assert again.status_code == 409
    assert "already been carried out" in again.get_data(as_text=True)
    assert (count(db, Child), count(db, Invitation)) == (2, 2)


def test_preview_shows_row_errors_and_commit_is_refused(
    client: FlaskClient, db: Session, login: Any, kita: Kita, leader: User
) -> None:
    make_child(db, make_group(db, kita, name="Mond"), first_name="Ida", last_name="Muster")
    raw = (
        b"child_first_name,child_last_name,birth_date,group,Notizen\n"
        b"Ida,Muster,01.05.2021,Mond,\n"  # already exists (the factory's birth date)
        b"Ole,Muster,2021-13-01,Wolke,\n"
    )
    login(leader)
    response = upload(client, kita, raw)
    assert response.status_code == 302
    preview = client.get(response.headers["Location"])
    text = preview.get_data(as_text=True)
    assert "This child already exists in this Kita." in text
    assert "Please enter a date like 2021-03-14 or 14.03.2021." in text
    assert "This Kita has no group called “Wolke”." in text
    assert "These columns are not known and will be ignored: Notizen" in text
    assert re.search(r"Rows with errors</dt><dd>2<", text)
    assert "/commit" not in text
    only_errors = client.get(response.headers["Location"] + "?show=errors&page=7")
    assert only_errors.status_code == 200
    csv_import = db.scalars(select(CsvImport)).one()
    refused = post_form(
        client, f"{base(kita)}{csv_import.id}/commit", {}, token_from=response.headers["Location"]
    )
    assert refused.status_code == 422
    assert "Nothing was imported" in refused.get_data(as_text=True)
    assert (count(db, Child), count(db, Invitation)) == (1, 0)
    stored = db.get(CsvImport, csv_import.id)
    assert stored is not None and stored.committed_at is None


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (b"x" * (2 * 1024 * 1024 + 10), 413, "larger than 2 MB"),
        (b"x" * (6 * 1024 * 1024), 413, "The upload is too large."),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", 422, "not a text file"),
        (b"Name;Alter\nMia;4\n", 422, "Required columns are missing"),
        (b"", 422, "The file is empty"),
    ],
)
def test_unusable_upload_gives_a_clear_message_and_stores_nothing(
    client: FlaskClient,
    db: Session,
    login: Any,
    kita: Kita,
    leader: User,
    raw: bytes,
    status: int,
    message: str,
) -> None:
    login(leader)
    response = upload(client, kita, raw)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert count(db, CsvImport) == 0
    assert count(db, AuditEvent) == 0


def test_upload_without_a_file(
    client: FlaskClient, db: Session, login: Any, kita: Kita, leader: User
) -> None:
    login(leader)
    response = post_form(client, base(kita), {}, token_from=base(kita))
    assert response.status_code == 422
    assert count(db, CsvImport) == 0


def test_example_file_can_be_imported_as_it_is(
    client: FlaskClient, db: Session, login: Any, kita: Kita, leader: User
) -> None:
    login(leader)
    response = client.get(f"{base(kita)}example.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    parsed = parse_csv(response.data)
    assert parsed.ok and parsed.delimiter == ";"
    assert {row.group_name for row in parsed.rows} == {"Sonne"}


def test_expired_upload_is_refused_and_erased(
    client: FlaskClient, db: Session, login: Any, kita: Kita, leader: User
) -> None:
    login(leader)
    location = upload(client, kita, GOOD).headers["Location"]
    db.execute(update(CsvImport).values(created_at=datetime.now(UTC) - timedelta(hours=25)))
    db.commit()
    assert client.get(location).status_code == 410
    response = post_form(client, f"{location}/commit", {}, token_from=base(kita))
    assert response.status_code == 410
    assert "older than 24 hours" in response.get_data(as_text=True)
    db.rollback()
    stored = db.scalars(select(CsvImport)).one()
    assert stored.content == "" and stored.committed_at is None
    assert count(db, Child) == 0


def _stored_import(db: Session, kita: Kita) -> CsvImport:
    author = make_user(db, roles=[(kita, Role.LEADER)])
    csv_import = CsvImport(kita_id=kita.id, created_by_id=author.id, content=GOOD.decode("cp1252"))
    db.add(csv_import)
    db.commit()
    return csv_import


@pytest.mark.parametrize("who", ["other_leader", "educator", "parent", "other_admin"])
def test_others_get_404(client: FlaskClient, db: Session, login: Any, kita: Kita, who: str) -> None:
    csv_import = _stored_import(db, kita)
    other = make_kita(db)
    group = make_group(db, kita)
    users = {
        "other_leader": lambda: make_user(db, roles=[(other, Role.LEADER)]),
        "educator": lambda: make_user(db, roles=[(kita, Role.EDUCATOR)], groups=[group]),
        "parent": lambda: make_user(
            db, roles=[(kita, Role.PARENT)], children=[make_child(db, group)]
        ),
        "other_admin": lambda: make_user(db, admin_of=make_provider(db)),
    }
    login(users[who]())
    children_before = count(db, Child)
    token_page = "/account"
    paths = [base(kita), f"{base(kita)}example.csv", f"{base(kita)}{csv_import.id}"]
    for path in paths:
        assert client.get(path).status_code == 404, path
    assert upload(client, kita, GOOD).status_code == 404
    commit = post_form(client, f"{base(kita)}{csv_import.id}/commit", {}, token_from=token_page)
    assert commit.status_code == 404
    assert count(db, Child) == children_before
    assert count(db, Invitation) == 0
    assert count(db, CsvImport) == 1


def test_leader_of_another_kita_cannot_reach_the_import_through_her_own_kita(
    client: FlaskClient, db: Session, login: Any, kita: Kita
) -> None:
    csv_import = _stored_import(db, kita)
    other = make_kita(db)
    make_group(db, other, name="Sonne")
    login(make_user(db, roles=[(other, Role.LEADER)]))
    assert client.get(f"{base(other)}{csv_import.id}").status_code == 404
    response = post_form(client, f"{base(other)}{csv_import.id}/commit", {}, token_from=base(other))
    assert response.status_code == 404
    assert (count(db, Child), count(db, Invitation)) == (0, 0)
    stored = db.get(CsvImport, csv_import.id)
    assert stored is not None and stored.committed_at is None and stored.content


def test_provider_admin_may_import(client: FlaskClient, db: Session, login: Any) -> None:
    provider = make_provider(db)
    kita = make_kita(db, provider)
    make_group(db, kita, name="Sonne")
    login(make_user(db, admin_of=provider, locale="en"))
    location = upload(client, kita, GOOD).headers["Location"]
    result = post_form(client, f"{location}/commit", {}, token_from=location)
    assert result.status_code == 200
    assert (count(db, Child), count(db, Invitation)) == (2, 2)


def test_anonymous_visitors_are_sent_to_the_login(client: FlaskClient, kita: Kita) -> None:
    response = client.get(base(kita))
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]
