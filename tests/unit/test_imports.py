"""CSV import: the pure parser, the checks against a Kita, and the all-or-nothing commit."""

from __future__ import annotations

import codecs
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.access import load_actor
from kita.errors import NotFoundError
from kita.models.accounts import Invitation, Role
from kita.models.audit import AuditEvent
from kita.models.imports import CsvImport
from kita.models.organisation import Child, Group, Relation
from kita.services import imports
from kita.services.imports import (
    MAX_ROWS,
    ROW,
    ImportCommittedError,
    ImportExpiredError,
    ImportFileError,
    ImportRejectedError,
    ParsedImport,
    commit_import,
    create_import,
    erase_expired_imports,
    parse_csv,
    parse_date,
    preview_import,
    validate_against_kita,
)
from tests.factories import make_child, make_group, make_kita, make_provider, make_user

HEADER = "child_first_name,child_last_name,birth_date,group"
NOW = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def errors_of(parsed: ParsedImport) -> dict[int, dict[str, str]]:
    """Row number → column → message, as plain strings."""
    return {row.number: {k: str(v) for k, v in row.errors.items()} for row in parsed.error_rows}


def count(db: Session, model: type[Any]) -> int:
    return int(db.scalar(select(func.count()).select_from(model)) or 0)


# --- the parser ------------------------------------------------------------------------------


def test_comma_separated_utf8_with_english_headers() -> None:
    raw = (
        "child_first_name,child_last_name,birth_date,group,entry_date,guardian_name,"
        "guardian_email,guardian_relation,guardian_language,custody,may_pick_up\n"
        "Aylin,Yılmaz,2021-03-14,Sonne,2024-08-01,Elif Yılmaz,ELIF@example.org,mother,tr,yes,no\n"
    ).encode()
    parsed = parse_csv(raw)
    assert parsed.ok, errors_of(parsed)
    assert (parsed.delimiter, parsed.encoding) == (",", "utf-8")
    [row] = parsed.rows
    assert (row.number, row.first_name, row.last_name) == (2, "Aylin", "Yılmaz")
    assert (row.birth_date, row.entry_date, row.group_name) == (
        date(2021, 3, 14),
        date(2024, 8, 1),
        "Sonne",
    )
    assert row.guardian is not None
    assert row.guardian.email == "elif@example.org"
    assert row.guardian.relation is Relation.MOTHER
    assert row.guardian.locale == "tr"
    assert (row.guardian.has_custody, row.guardian.may_pick_up) == (True, False)
    assert (parsed.child_count, parsed.guardian_count, parsed.error_count) == (1, 1, 0)


def test_semicolon_windows_1252_and_german_aliases() -> None:
    text = (
        "VORNAME;Nachname;Geburtsdatum;Gruppe;Aufnahmedatum;Elternteil;E-Mail;Beziehung;"
        "Sprache;Sorgerecht;Abholberechtigt\r\n"
        "Jürgen;Müller;01.02.2020;Bären;1.8.2023;Jörg Müller;;Vater;DE;nein;ja\r\n"
    )
    parsed = parse_csv(text.encode("cp1252"))
    assert parsed.ok, errors_of(parsed)
    assert (parsed.delimiter, parsed.encoding) == (";", "windows-1252")
    [row] = parsed.rows
    assert (row.first_name, row.last_name, row.group_name) == ("Jürgen", "Müller", "Bären")
    assert (row.birth_date, row.entry_date) == (date(2020, 2, 1), date(2023, 8, 1))
    assert row.guardian is not None
    assert (row.guardian.name, row.guardian.email) == ("Jörg Müller", None)
    assert (row.guardian.relation, row.guardian.locale) == (Relation.FATHER, "de")
    assert (row.guardian.has_custody, row.guardian.may_pick_up) == (False, True)


@pytest.mark.parametrize(
    ("raw", "encoding"),
    [
        (codecs.BOM_UTF8 + f"{HEADER}\nÖzge,Şahin,2021-01-01,A\n".encode(), "utf-8"),
        (f"{HEADER}\nÖzge,Şahin,2021-01-01,A\n".encode(), "utf-8"),
        (f"{HEADER}\nÖzge,Sahin,2021-01-01,A\n".encode("latin-1"), "windows-1252"),
        (f"{HEADER}\nÖzge,Şahin,2021-01-01,A\n".encode("utf-16"), "utf-16"),
        (
            f"{HEADER}\n\x81zge,Sahin,2021-01-01,A\n".encode("latin-1"),
            "latin-1",
        ),
    ],
)
def test_encodings_and_byte_order_marks(raw: bytes, encoding: str) -> None:
    parsed = parse_csv(raw)
    assert parsed.encoding == encoding
    assert parsed.columns == ["child_first_name", "child_last_name", "birth_date", "group"]
    assert len(parsed.rows) == 1
    assert parsed.rows[0].last_name.endswith("ahin")


def test_tab_separated_text_is_read() -> None:
    parsed = parse_csv(HEADER.replace(",", "\t").encode() + b"\nMia\tB\t2021-01-01\tA\n")
    assert parsed.delimiter == "\t"
    assert parsed.ok


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-03-14", date(2021, 3, 14)),
        ("14.03.2021", date(2021, 3, 14)),
        ("4.3.2021", date(2021, 3, 4)),
        ("2021-02-30", None),
        ("31.04.2021", None),
        ("14.03.21", None),
        ("03/14/2021", None),
        ("2021-03-14T10:00", None),
        ("", None),
    ],
)
def test_date_formats(text: str, expected: date | None) -> None:
    assert parse_date(text) == expected


def test_missing_required_columns_give_one_clear_error() -> None:
    parsed = parse_csv(b"Vorname;Gruppe\nMia;Sonne\n")
    assert not parsed.rows
    [problem] = parsed.file_errors
    assert "child_last_name, birth_date" in str(problem)
    assert not parsed.ok


def test_unknown_columns_are_reported_and_ignored() -> None:
    parsed = parse_csv(f"{HEADER},Notizen,Allergien\nMia,B,2021-01-01,A,x,y\n".encode())
    assert parsed.unknown_columns == ["Notizen", "Allergien"]
    assert parsed.ok
    assert "Notizen" not in parsed.rows[0].values


def test_duplicate_columns_are_refused() -> None:
    parsed = parse_csv(f"{HEADER},Vorname\nMia,B,2021-01-01,A,Mia\n".encode())
    assert any("Vorname" in str(problem) for problem in parsed.file_errors)


def test_per_row_errors_name_row_and_column() -> None:
    raw = (
        f"{HEADER},entry_date,guardian_name,guardian_email,guardian_relation,"
        "guardian_language,custody,may_pick_up\n"
        "Mia,Beispiel,2021-01-01,A,,,,,,,\n"  # row 2: fine
        ",Beispiel,32.01.2021,A,,,,,,,\n"  # row 3: no first name, impossible date
        "\n"  # row 4: blank, skipped but counted
        "Emil,Muster,2021-01-01,,2020-01-01,Eva,not-an-email,tante,xx,vielleicht,no\n"  # row 5
        "Ida,Muster,2021-01-01,A,,,,mother,,,\n"  # row 6: details without a guardian
        "Ole,Muster,2021-01-01,A,,,,,,,,surplus\n"  # row 7: more values than columns
    ).encode()
    parsed = parse_csv(raw)
    errors = errors_of(parsed)
    assert set(errors) == {3, 5, 6, 7}
    assert errors[3] == {
        "child_first_name": "This field is required.",
        "birth_date": "Please enter a date like 2021-03-14 or 14.03.2021.",
    }
    assert set(errors[5]) == {
        "group",
        "entry_date",
        "guardian_email",
        "guardian_relation",
        "guardian_language",
        "custody",
    }
    assert errors[5]["entry_date"] == "The entry date is before the date of birth."
    assert "guardian_name" in errors[6]
    assert errors[7] == {ROW: "This row has more values than the header row has columns."}
    assert (parsed.error_count, parsed.child_count) == (4, 1)


def test_control_characters_and_long_names_are_refused() -> None:
    long_name = "A" * 121
    raw = f'{HEADER}\n"Mi\na",B,2021-01-01,A\n{long_name},B,2021-01-01,A\n'.encode()
    errors = errors_of(parse_csv(raw))
    assert errors[2]["child_first_name"] == "This field contains characters that are not allowed."
    # The quoted line break makes the next record row 3, as a spreadsheet shows it.
    assert errors[3]["child_first_name"] == "At most 120 characters are allowed."


def test_several_rows_of_one_child_add_guardians() -> None:
    raw = (
        f"{HEADER},guardian_name,guardian_email\n"
        "Mia,Beispiel,2021-01-01,A,Anna,anna@example.org\n"
        "mia, beispiel ,01.01.2021,a,Deniz,\n"
        "Mia,Beispiel,2021-01-01,B,Carla,\n"  # a different group for the same child
        "Mia,Beispiel,2021-01-01,A,Anna 2,ANNA@example.org\n"  # the same guardian again
        "Mia,Beispiel,2021-01-01,A,,\n"  # the same child without a guardian
        "Mia,Beispiel,2022-01-01,A,,\n"  # another child: other birth date
    ).encode()
    parsed = parse_csv(raw)
    errors = errors_of(parsed)
    assert errors[4] == {"group": "The same child has a different group in row 2."}
    assert errors[5] == {
        "guardian_email": "This guardian is already listed for the child in row 2."
    }
    assert errors[6] == {ROW: "This child already appears in row 2."}
    assert (parsed.child_count, parsed.guardian_count) == (2, 2)


def test_row_limit() -> None:
    body = "".join(f"Kind{n},B,2021-01-01,A\n" for n in range(MAX_ROWS + 1))
    parsed = parse_csv(f"{HEADER}\n{body}".encode())
    assert any("more than 2000 rows" in str(problem) for problem in parsed.file_errors)
    exactly = parse_csv(f"{HEADER}\n{body}".encode().rsplit(b"Kind", 1)[0])
    assert exactly.ok and len(exactly.rows) == MAX_ROWS


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "empty"),
        (b" \r\n\r\n", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "not a text file"),
        (b"x" * (imports.MAX_BYTES + 1), "larger than 2 MB"),
        (HEADER.encode() + b"\n", "no children"),
        (HEADER.encode() + b'\n"Mia,B,2021-01-01,A\n', ""),
    ],
)
def test_unusable_files_give_a_file_error(raw: bytes, fragment: str) -> None:
    parsed = parse_csv(raw)
    if fragment:
        assert parsed.file_errors, parsed
        assert fragment in str(parsed.file_errors[0])
    assert not parsed.ok


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    parsed = parse_csv(raw)
    assert isinstance(parsed, ParsedImport)
    assert parsed.file_errors or parsed.rows
    for row in parsed.rows:
        assert row.number >= 2
        assert all(isinstance(key, str) for key in row.errors)


cells = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([",", ";"]),
    st.lists(st.lists(cells, max_size=14), max_size=20),
    st.booleans(),
)
def test_arbitrary_rows_below_a_valid_header_never_raise(
    delimiter: str, rows: list[list[str]], bom: bool
) -> None:
    header = (
        HEADER.replace(",", delimiter)
        + delimiter
        + "guardian_email;custody".replace(";", delimiter)
    )
    text = "\n".join([header, *(delimiter.join(row) for row in rows)])
    parsed = parse_csv((codecs.BOM_UTF8 if bom else b"") + text.encode("utf-8"))
    if "\x00" not in text:  # a NUL makes it a binary file, refused as a whole
        assert parsed.columns[:4] == ["child_first_name", "child_last_name", "birth_date", "group"]
    assert parsed.file_errors or parsed.rows
    assert all(row.number >= 2 for row in parsed.rows)
    if parsed.ok:
        for row in parsed.rows:
            assert row.first_name and row.last_name and row.birth_date and row.group_name


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=500))
def test_arbitrary_text_never_raises(text: str) -> None:
    parsed = parse_csv(text.encode("utf-8"))
    assert parsed.file_errors or parsed.rows


# --- against the Kita ------------------------------------------------------------------------


def test_validation_resolves_groups_and_finds_existing_children(db: Session) -> None:
    kita = make_kita(db)
    sonne = make_group(db, kita, name="Sonne")
    other_kita_group = make_group(db, make_kita(db), name="Mond")
    make_child(db, sonne, first_name="Mia", last_name="Beispiel")  # born 2021-05-01
    parsed = parse_csv(
        f"{HEADER}\n"
        "Emil,Muster,2021-01-01,sonne\n"
        "Ida,Muster,2021-01-01,Mond\n"
        "MIA,Beispiel,01.05.2021,Sonne\n".encode()
    )
    validate_against_kita(db, kita, parsed)
    assert parsed.rows[0].group_id == sonne.id
    assert parsed.rows[1].group_id is None
    assert other_kita_group.name == "Mond"
    assert errors_of(parsed) == {
        3: {"group": "This Kita has no group called “Mond”."},
        4: {ROW: "This child already exists in this Kita."},
    }


# --- life cycle ------------------------------------------------------------------------------

GOOD = (
    b"Vorname;Nachname;Geburtsdatum;Gruppe;guardian_name;guardian_email;guardian_relation;"
    b"guardian_language;custody;may_pick_up\n"
    b"Mia;Beispiel;14.03.2021;Sonne;Anna Beispiel;anna@example.org;mutter;tr;ja;ja\n"
    b"Mia;Beispiel;14.03.2021;Sonne;Deniz Beispiel;;vater;;nein;nein\n"
    b"Emil;Muster;2020-11-02;Mond;;;;;;\n"
    b"Ida;Muster;2020-11-03;Mond;;ida.mama@example.org;;;;\n"
)


@pytest.fixture
def setting(db: Session) -> dict[str, Any]:
    kita = make_kita(db)
    groups = {name: make_group(db, kita, name=name) for name in ("Sonne", "Mond")}
    leader = make_user(db, roles=[(kita, Role.LEADER)])
    return {"kita": kita, "groups": groups, "leader": leader, "actor": load_actor(db, leader)}


def _upload(db: Session, setting: dict[str, Any], raw: bytes = GOOD) -> CsvImport:
    csv_import = create_import(db, actor=setting["actor"], kita=setting["kita"], raw=raw, now=NOW)
    db.commit()
    return csv_import


def test_create_import_stores_the_text_and_audits(db: Session, setting: dict[str, Any]) -> None:
    csv_import = _upload(db, setting)
    stored = db.get(CsvImport, csv_import.id)
    assert stored is not None
    assert stored.content.startswith("Vorname;")
    assert (stored.kita_id, stored.created_by_id) == (setting["kita"].id, setting["leader"].id)
    event = db.scalars(select(AuditEvent).where(AuditEvent.action == "imports.uploaded")).one()
    assert event.detail == "rows=4"


def test_unusable_upload_is_not_stored(db: Session, setting: dict[str, Any]) -> None:
    with pytest.raises(ImportFileError) as caught:
        create_import(db, actor=setting["actor"], kita=setting["kita"], raw=b"a;b\n1;2", now=NOW)
    assert caught.value.status == 422
    assert "Required columns are missing" in str(caught.value.problems[0])
    with pytest.raises(ImportFileError) as too_large:
        create_import(
            db,
            actor=setting["actor"],
            kita=setting["kita"],
            raw=b"x" * (imports.MAX_BYTES + 1),
            now=NOW,
        )
    assert too_large.value.status == 413
    assert count(db, CsvImport) == 0


def test_another_kitas_leader_cannot_use_the_import(db: Session, setting: dict[str, Any]) -> None:
    csv_import = _upload(db, setting)
    other_kita = make_kita(db)
    stranger = load_actor(db, make_user(db, roles=[(other_kita, Role.LEADER)]))
    with pytest.raises(NotFoundError):
        create_import(db, actor=stranger, kita=setting["kita"], raw=GOOD, now=NOW)
    with pytest.raises(NotFoundError):
        preview_import(db, actor=stranger, kita=setting["kita"], csv_import=csv_import, now=NOW)
    with pytest.raises(NotFoundError):
        # Their own Kita with this Kita's upload.
        commit_import(db, actor=stranger, kita=other_kita, csv_import=csv_import, now=NOW, days=14)
    assert count(db, Child) == 0


def test_commit_creates_children_and_invitations(db: Session, setting: dict[str, Any]) -> None:
    csv_import = _upload(db, setting)
    kita, groups = setting["kita"], setting["groups"]
    preview = preview_import(db, actor=setting["actor"], kita=kita, csv_import=csv_import, now=NOW)
    assert (preview.ok, preview.child_count, preview.guardian_count) == (True, 3, 3)
    later = NOW + timedelta(hours=1)
    result = commit_import(
        db, actor=setting["actor"], kita=kita, csv_import=csv_import, now=later, days=14
    )
    db.commit()
    assert len(result.children) == 3
    children = {c.first_name: c for c in db.scalars(select(Child).where(Child.kita_id == kita.id))}
    assert set(children) == {"Mia", "Emil", "Ida"}
    assert children["Mia"].group_id == groups["Sonne"].id
    assert children["Mia"].birth_date == date(2021, 3, 14)
    assert children["Emil"].group_id == groups["Mond"].id
    invitations = db.scalars(select(Invitation).order_by(Invitation.email)).all()
    assert len(invitations) == 3
    by_email = {i.email: i for i in invitations}
    anna = by_email["anna@example.org"]
    assert (anna.child_id, anna.role, anna.relation) == (children["Mia"].id, Role.PARENT, "mother")
    assert (anna.locale, anna.has_custody, anna.may_pick_up) == ("tr", True, True)
    assert anna.expires_at == later + timedelta(days=14)
    deniz = by_email[None]
    assert (deniz.relation, deniz.has_custody, deniz.may_pick_up) == ("father", False, False)
    assert by_email["ida.mama@example.org"].relation == "guardian"
    assert {item.guardian_name for item in result.invitations} == {
        "Anna Beispiel",
        "Deniz Beispiel",
        "",
    }
    assert all(item.issued.token for item in result.invitations)
    stored = db.get(CsvImport, csv_import.id)
    assert stored is not None
    assert (stored.content, stored.committed_at) == ("", later)
    event = db.scalars(select(AuditEvent).where(AuditEvent.action == "imports.committed")).one()
    assert event.detail == "rows=4 children=3 invitations=3"
    assert "Mia" not in event.detail and "anna" not in event.detail
    with pytest.raises(ImportCommittedError):
        commit_import(
            db, actor=setting["actor"], kita=kita, csv_import=csv_import, now=later, days=14
        )
    assert (count(db, Child), count(db, Invitation)) == (3, 3)


def test_commit_refuses_a_file_with_errors(db: Session, setting: dict[str, Any]) -> None:
    csv_import = _upload(db, setting, GOOD + b"Ole;Muster;kein Datum;Sonne;;;;;;\n")
    with pytest.raises(ImportRejectedError) as caught:
        commit_import(
            db,
            actor=setting["actor"],
            kita=setting["kita"],
            csv_import=csv_import,
            now=NOW,
            days=14,
        )
    assert errors_of(caught.value.parsed) == {
        6: {"birth_date": "Please enter a date like 2021-03-14 or 14.03.2021."}
    }
    assert (count(db, Child), count(db, Invitation)) == (0, 0)
    assert csv_import.committed_at is None and csv_import.content


def test_group_deleted_between_preview_and_commit_leaves_nothing(
    db: Session, setting: dict[str, Any]
) -> None:
    kita = setting["kita"]
    csv_import = _upload(db, setting)
    preview = preview_import(db, actor=setting["actor"], kita=kita, csv_import=csv_import, now=NOW)
    assert preview.ok
    # The second child's group disappears after the preview.
    db.delete(db.get(Group, setting["groups"]["Mond"].id))
    db.commit()
    with pytest.raises(ImportRejectedError) as caught:
        commit_import(
            db, actor=setting["actor"], kita=kita, csv_import=csv_import, now=NOW, days=14
        )
    assert set(errors_of(caught.value.parsed)) == {4, 5}
    db.commit()  # even a caller that commits afterwards keeps nothing
    assert (count(db, Child), count(db, Invitation)) == (0, 0)
    stored = db.get(CsvImport, csv_import.id)
    assert stored is not None and stored.committed_at is None and stored.content


def test_failure_midway_rolls_back_every_row(
    db: Session, setting: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Children are already flushed and one invitation made when the second one fails."""
    real = imports.create_invitation
    calls: list[uuid.UUID | None] = []

    def failing_create_invitation(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs["request"].child_id)
        if len(calls) == 2:
            raise RuntimeError("the database went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(imports, "create_invitation", failing_create_invitation)
    kita = setting["kita"]
    csv_import = _upload(db, setting)
    audit_before = count(db, AuditEvent)
    with pytest.raises(RuntimeError):
        commit_import(
            db, actor=setting["actor"], kita=kita, csv_import=csv_import, now=NOW, days=14
        )
    assert len(calls) == 2
    db.commit()  # the savepoint was rolled back: nothing is left to commit
    assert (count(db, Child), count(db, Invitation)) == (0, 0)
    assert count(db, AuditEvent) == audit_before
    stored = db.get(CsvImport, csv_import.id)
    assert stored is not None and stored.committed_at is None and stored.content
    # The same upload can be committed once the problem is gone.
    monkeypatch.setattr(imports, "create_invitation", real)
    result = commit_import(
        db, actor=setting["actor"], kita=kita, csv_import=stored, now=NOW, days=14
    )
    db.commit()
    assert (len(result.children), count(db, Child), count(db, Invitation)) == (3, 3, 3)


def test_provider_admin_may_import(db: Session) -> None:
    provider = make_provider(db)
    kita = make_kita(db, provider)
    make_group(db, kita, name="Sonne")
    make_group(db, kita, name="Mond")
    admin = load_actor(db, make_user(db, admin_of=provider))
    csv_import = create_import(db, actor=admin, kita=kita, raw=GOOD, now=NOW)
    result = commit_import(db, actor=admin, kita=kita, csv_import=csv_import, now=NOW, days=7)
    assert len(result.children) == 3


def test_old_uploads_are_refused_and_erased(db: Session, setting: dict[str, Any]) -> None:
    kita = setting["kita"]
    csv_import = _upload(db, setting)
    late = NOW + timedelta(hours=24, seconds=1)
    with pytest.raises(ImportExpiredError):
        preview_import(db, actor=setting["actor"], kita=kita, csv_import=csv_import, now=late)
    with pytest.raises(ImportExpiredError):
        commit_import(
            db, actor=setting["actor"], kita=kita, csv_import=csv_import, now=late, days=14
        )
    db.commit()
    stored = db.get(CsvImport, csv_import.id)
    assert stored is not None and stored.content == "" and stored.committed_at is None
    assert count(db, Child) == 0


def test_erase_expired_imports_keeps_recent_ones(db: Session, setting: dict[str, Any]) -> None:
    old = _upload(db, setting)
    recent = create_import(
        db,
        actor=setting["actor"],
        kita=setting["kita"],
        raw=GOOD,
        now=NOW + timedelta(hours=20),
    )
    db.commit()
    assert erase_expired_imports(db, now=NOW + timedelta(hours=25)) == 1
    db.commit()
    db.expire_all()
    assert db.get(CsvImport, old.id).content == ""  # type: ignore[union-attr]
    assert db.get(CsvImport, recent.id).content != ""  # type: ignore[union-attr]
