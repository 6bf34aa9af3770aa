"""CSV import of children and their guardians: parse, check against the Kita, commit at once.

Three steps, so that nothing is created from a file nobody has looked at: ``create_import``
parses an upload and keeps its text in a ``CsvImport`` row; ``preview_import`` parses it again
and checks it against the Kita (groups, existing children); ``commit_import`` does both once
more and then creates every child and parent invitation inside one savepoint, so a failure
leaves no new rows. The text is erased on commit and refused (and erased) after 24 hours.

``parse_csv`` is pure: any bytes give a ``ParsedImport`` with file and row errors, never an
exception. Row numbers are those a spreadsheet shows, the header being row 1.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from flask_babel import lazy_gettext as _l
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kita import audit
from kita.access import Actor, may_manage_kita
from kita.config import SUPPORTED_LOCALES
from kita.errors import KitaError, NotFoundError, ValidationError
from kita.models.accounts import Role
from kita.models.imports import CsvImport
from kita.models.organisation import Child, Group, Kita, Relation
from kita.services.accounts import validate_email
from kita.services.invitations import InvitationRequest, IssuedInvitation, create_invitation

MAX_BYTES = 2 * 1024 * 1024
MAX_ROWS = 2000
MAX_AGE = timedelta(hours=24)
NAME_MAX = 120
PAGE_SIZE = 50
#: Key of errors that concern a whole row rather than one column.
ROW = "row"


# --- errors ----------------------------------------------------------------------------------


class ImportFileError(ValidationError):
    """The uploaded file cannot be imported at all: too large, not text, or columns missing."""

    def __init__(self, problems: list[object], *, status: int = 422) -> None:
        super().__init__({"file": problems[0] if problems else ""}, _l("The file was not saved."))
        self.problems = problems
        self.status = status


class ImportRejectedError(ValidationError):
    """Rows of the import have errors, so nothing was created."""

    def __init__(self, parsed: ParsedImport) -> None:
        super().__init__(
            {}, _l("Nothing was imported: the file has errors. Please correct them and try again.")
        )
        self.parsed = parsed


class ImportCommittedError(KitaError):
    """The import has already been carried out; it cannot be run twice."""

    status = 409
    default_message = _l("This import has already been carried out.")


class ImportExpiredError(KitaError):
    """The upload is older than 24 hours; its content is erased."""

    status = 410
    default_message = _l("This upload is older than 24 hours. Please upload the file again.")


# --- columns ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str
    #: Header names accepted besides ``key`` (normalised: case-folded, separators as "_").
    aliases: tuple[str, ...]
    required: bool
    description: object


COLUMNS: tuple[Column, ...] = (
    Column(
        "child_first_name",
        ("vorname", "first_name", "kind_vorname", "vorname_kind"),
        True,
        _l("The child's first name."),
    ),
    Column(
        "child_last_name",
        ("nachname", "last_name", "familienname", "kind_nachname", "nachname_kind"),
        True,
        _l("The child's last name."),
    ),
    Column(
        "birth_date",
        ("geburtsdatum", "geburtstag", "date_of_birth"),
        True,
        _l("Date of birth, as 2021-03-14 or 14.03.2021."),
    ),
    Column("group", ("gruppe",), True, _l("The name of a group of this Kita.")),
    Column(
        "entry_date",
        ("aufnahmedatum", "eintrittsdatum", "aufnahme"),
        False,
        _l("Date the child starts in the Kita (optional)."),
    ),
    Column(
        "guardian_name",
        ("elternteil", "name_elternteil", "erziehungsberechtigte", "erziehungsberechtigter"),
        False,
        _l("Name of a parent or guardian (optional; printed on the invitation)."),
    ),
    Column(
        "guardian_email",
        ("email", "e_mail", "email_elternteil", "e_mail_elternteil"),
        False,
        _l("E-mail address of the parent or guardian (optional)."),
    ),
    Column(
        "guardian_relation",
        ("beziehung", "verhältnis", "relation"),
        False,
        _l(
            "mother, father, guardian or other (Mutter, Vater, Vormund, Sonstige); "
            "default guardian."
        ),
    ),
    Column(
        "guardian_language",
        ("sprache", "language"),
        False,
        _l(
            "Language of the parent or guardian as a code: %(codes)s.",
            codes=", ".join(SUPPORTED_LOCALES),
        ),
    ),
    Column(
        "custody",
        ("sorgerecht",),
        False,
        _l("Has custody: yes or no (ja or nein); default yes."),
    ),
    Column(
        "may_pick_up",
        ("abholberechtigt", "darf_abholen", "pick_up"),
        False,
        _l("May pick the child up: yes or no (ja or nein); default yes."),
    ),
)
COLUMN_KEYS = tuple(column.key for column in COLUMNS)
REQUIRED_KEYS = tuple(column.key for column in COLUMNS if column.required)
GUARDIAN_DETAIL_KEYS = ("guardian_relation", "guardian_language", "custody", "may_pick_up")

_SEPARATORS = re.compile(r"[\s_\-]+")


def _normalise_header(value: str) -> str:
    return _SEPARATORS.sub("_", value.strip().strip("\ufeff").casefold()).strip("_")


_HEADER_NAMES: dict[str, str] = {}
for _column in COLUMNS:
    _HEADER_NAMES[_column.key] = _column.key
    for _alias in _column.aliases:
        _HEADER_NAMES[_normalise_header(_alias)] = _column.key

RELATIONS: dict[str, Relation] = {
    "mother": Relation.MOTHER,
    "mutter": Relation.MOTHER,
    "father": Relation.FATHER,
    "vater": Relation.FATHER,
    "guardian": Relation.GUARDIAN,
    "vormund": Relation.GUARDIAN,
    "other": Relation.OTHER,
    "sonstige": Relation.OTHER,
    "sonstiges": Relation.OTHER,
    "andere": Relation.OTHER,
}
YES = frozenset({"yes", "y", "ja", "j", "true", "1", "x"})
NO = frozenset({"no", "n", "nein", "false", "0"})

_ISO_DATE = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})")
_GERMAN_DATE = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})")


# --- parsed data -----------------------------------------------------------------------------


@dataclass
class GuardianEntry:
    name: str
    email: str | None
    relation: Relation
    locale: str | None
    has_custody: bool
    may_pick_up: bool


@dataclass
class ImportRow:
    """One data row of the file with its values and its errors (column key or ``ROW``)."""

    number: int
    values: dict[str, str]
    first_name: str = ""
    last_name: str = ""
    birth_date: date | None = None
    group_name: str = ""
    entry_date: date | None = None
    guardian: GuardianEntry | None = None
    group_id: uuid.UUID | None = None
    errors: dict[str, object] = field(default_factory=dict)

    @property
    def child_key(self) -> tuple[str, str, date] | None:
        """Same first name, last name and birth date mean the same child."""
        if not self.first_name or not self.last_name or self.birth_date is None:
            return None
        return (_fold(self.first_name), _fold(self.last_name), self.birth_date)


@dataclass
class ParsedImport:
    text: str = ""
    encoding: str = ""
    delimiter: str = ","
    columns: list[str] = field(default_factory=list)
    unknown_columns: list[str] = field(default_factory=list)
    rows: list[ImportRow] = field(default_factory=list)
    file_errors: list[object] = field(default_factory=list)

    @property
    def error_rows(self) -> list[ImportRow]:
        return [row for row in self.rows if row.errors]

    @property
    def error_count(self) -> int:
        return len(self.error_rows)

    @property
    def ok(self) -> bool:
        return not self.file_errors and bool(self.rows) and not self.error_rows

    @property
    def child_count(self) -> int:
        """Children the import would create (rows with errors not counted)."""
        return len({row.child_key for row in self.rows if not row.errors and row.child_key})

    @property
    def guardian_count(self) -> int:
        """Guardians who would get an invitation (rows with errors not counted)."""
        return sum(1 for row in self.rows if not row.errors and row.guardian is not None)


@dataclass(frozen=True)
class RowPage:
    rows: list[ImportRow]
    page: int
    pages: int
    total: int


# --- parsing (pure) --------------------------------------------------------------------------


def decode_csv(raw: bytes) -> tuple[str, str] | None:
    """Text and encoding name: UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252
    or Latin-1 as older Excel versions write. ``None`` for binary content."""
    text: str | None = None
    encoding = ""
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            text, encoding = raw.decode("utf-16"), "utf-16"
        except UnicodeDecodeError:
            return None
    else:
        for candidate in ("utf-8-sig", "cp1252", "latin-1"):
            try:
                text, encoding = raw.decode(candidate), candidate
                break
            except UnicodeDecodeError:
                continue
    if text is None or "\x00" in text:
        return None
    return text.lstrip("\ufeff"), {"utf-8-sig": "utf-8", "cp1252": "windows-1252"}.get(
        encoding, encoding
    )


def parse_csv(raw: bytes) -> ParsedImport:
    """Parse an uploaded file without touching the database; bad input gives errors, never an
    exception."""
    if len(raw) > MAX_BYTES:
        return ParsedImport(file_errors=[_too_large()])
    if not raw.strip():
        return ParsedImport(file_errors=[_l("The file is empty. Please choose a CSV file.")])
    decoded = decode_csv(raw)
    if decoded is None:
        return ParsedImport(
            file_errors=[
                _l("This is not a text file. Please save the table as CSV and upload that file.")
            ]
        )
    text, encoding = decoded
    return parse_csv_text(text, encoding=encoding)


def parse_csv_text(text: str, *, encoding: str = "utf-8") -> ParsedImport:
    """Parse already decoded CSV text (the stored content of an upload)."""
    parsed = ParsedImport(text=text, encoding=encoding, delimiter=_sniff_delimiter(text))
    if not text.strip():
        parsed.file_errors.append(_l("The file is empty. Please choose a CSV file."))
        return parsed
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=parsed.delimiter)
    header: list[str | None] | None = None
    number = 0
    try:
        for number, record in enumerate(reader, start=1):
            if not any(cell.strip() for cell in record):
                continue
            if header is None:
                header = _read_header(parsed, record)
                if parsed.file_errors:
                    return parsed
                continue
            if len(parsed.rows) >= MAX_ROWS:
                parsed.file_errors.append(
                    _l(
                        "The file has more than %(max)d rows. Please split it into several files.",
                        max=MAX_ROWS,
                    )
                )
                return parsed
            parsed.rows.append(_read_row(number, header, record))
    except csv.Error:
        parsed.file_errors.append(
            _l("Row %(row)d cannot be read as CSV. Please check its quotes.", row=number + 1)
        )
        return parsed
    if not parsed.rows:
        parsed.file_errors.append(_l("The file contains no children below the header row."))
        return parsed
    _check_across_rows(parsed.rows)
    return parsed


def _sniff_delimiter(text: str) -> str:
    """German Excel writes ``;``, others ``,``; tab-separated text also occurs. The header line
    decides, since names with commas there are unlikely."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    counts = {delimiter: first.count(delimiter) for delimiter in (";", ",", "\t")}
    best = max(counts, key=lambda delimiter: counts[delimiter])
    return best if counts[best] else ","


def _read_header(parsed: ParsedImport, record: list[str]) -> list[str | None]:
    header: list[str | None] = []
    seen: set[str] = set()
    for cell in record:
        name = _normalise_header(cell)
        if not name:
            header.append(None)  # an empty trailing column, as spreadsheets often write
            continue
        key = _HEADER_NAMES.get(name)
        if key is None:
            parsed.unknown_columns.append(cell.strip()[:60])
            header.append(None)
        elif key in seen:
            parsed.file_errors.append(
                _l("The column %(name)s appears more than once.", name=cell.strip()[:60])
            )
            header.append(None)
        else:
            seen.add(key)
            parsed.columns.append(key)
            header.append(key)
    missing = [key for key in REQUIRED_KEYS if key not in seen]
    if missing:
        parsed.file_errors.append(
            _l(
                "Required columns are missing: %(columns)s. The first row of the file must name "
                "the columns, for example: %(example)s.",
                columns=", ".join(missing),
                example=", ".join(REQUIRED_KEYS),
            )
        )
    return header


def _read_row(number: int, header: list[str | None], record: list[str]) -> ImportRow:
    values = {key: cell.strip() for key, cell in zip(header, record, strict=False) if key}
    row = ImportRow(number=number, values=values)
    if any(cell.strip() for cell in record[len(header) :]):
        row.errors[ROW] = _l("This row has more values than the header row has columns.")
    _check_row(row)
    return row


def _check_row(row: ImportRow) -> None:
    values, errors = row.values, row.errors
    for key, value in values.items():
        if _has_control_characters(value):
            errors[key] = _l("This field contains characters that are not allowed.")
    row.first_name = _name(row, "child_first_name", required=True)
    row.last_name = _name(row, "child_last_name", required=True)
    row.group_name = _name(row, "group", required=True)
    row.birth_date = _date(row, "birth_date", required=True)
    row.entry_date = _date(row, "entry_date", required=False)
    if row.birth_date and row.entry_date and row.entry_date < row.birth_date:
        errors.setdefault("entry_date", _l("The entry date is before the date of birth."))
    guardian_name = _name(row, "guardian_name", required=False)
    raw_email = values.get("guardian_email", "")
    email: str | None = None
    if raw_email and "guardian_email" not in errors:
        try:
            email = validate_email(raw_email)
        except ValidationError:
            errors["guardian_email"] = _l("Please enter a valid e-mail address.")
    relation = _choice(row, "guardian_relation", RELATIONS, Relation.GUARDIAN)
    locale = _locale(row)
    custody = _yes_no(row, "custody")
    pick_up = _yes_no(row, "may_pick_up")
    if not guardian_name and not raw_email:
        if any(values.get(key) for key in GUARDIAN_DETAIL_KEYS):
            errors.setdefault(
                "guardian_name",
                _l(
                    "Guardian details are filled in, but the guardian's name and e-mail "
                    "are missing."
                ),
            )
        return
    row.guardian = GuardianEntry(
        name=guardian_name,
        email=email,
        relation=relation,
        locale=locale,
        has_custody=custody,
        may_pick_up=pick_up,
    )


def _has_control_characters(value: str) -> bool:
    return any(unicodedata.category(char) in {"Cc", "Cs"} for char in value)


def _fold(value: str) -> str:
    return " ".join(value.casefold().split())


def _name(row: ImportRow, key: str, *, required: bool) -> str:
    value = " ".join(row.values.get(key, "").split())
    if key in row.errors:
        return ""
    if not value:
        if required:
            row.errors[key] = _l("This field is required.")
        return ""
    if len(value) > NAME_MAX:
        row.errors[key] = _l("At most %(count)d characters are allowed.", count=NAME_MAX)
        return ""
    return value


def parse_date(value: str) -> date | None:
    """A date written as 2021-03-14 or 14.03.2021; ``None`` otherwise."""
    iso = _ISO_DATE.fullmatch(value)
    german = _GERMAN_DATE.fullmatch(value)
    try:
        if iso:
            return date(int(iso[1]), int(iso[2]), int(iso[3]))
        if german:
            return date(int(german[3]), int(german[2]), int(german[1]))
    except ValueError:
        return None
    return None


def _date(row: ImportRow, key: str, *, required: bool) -> date | None:
    value = row.values.get(key, "")
    if key in row.errors:
        return None
    if not value:
        if required:
            row.errors[key] = _l("This field is required.")
        return None
    parsed = parse_date(value)
    if parsed is None:
        row.errors[key] = _l("Please enter a date like 2021-03-14 or 14.03.2021.")
    return parsed


def _choice(row: ImportRow, key: str, options: dict[str, Relation], default: Relation) -> Relation:
    value = row.values.get(key, "").casefold()
    if not value or key in row.errors:
        return default
    if value not in options:
        row.errors[key] = _l("Please use mother, father, guardian or other.")
        return default
    return options[value]


def _locale(row: ImportRow) -> str | None:
    value = row.values.get("guardian_language", "").casefold()
    if not value or "guardian_language" in row.errors:
        return None
    if value not in SUPPORTED_LOCALES:
        row.errors["guardian_language"] = _l(
            "Please use one of these language codes: %(codes)s.", codes=", ".join(SUPPORTED_LOCALES)
        )
        return None
    return value


def _yes_no(row: ImportRow, key: str) -> bool:
    value = row.values.get(key, "").casefold()
    if not value or key in row.errors:
        return True
    if value in YES:
        return True
    if value not in NO:
        row.errors[key] = _l("Please use yes or no.")
    return False


def _check_across_rows(rows: list[ImportRow]) -> None:
    """Rows of one child must agree on group and entry date and name different guardians."""
    first_rows: dict[tuple[str, str, date], ImportRow] = {}
    guardians: dict[tuple[tuple[str, str, date], str], ImportRow] = {}
    for row in rows:
        key = row.child_key
        if key is None:
            continue
        first = first_rows.setdefault(key, row)
        if first is not row:
            if row.group_name and _fold(row.group_name) != _fold(first.group_name):
                row.errors.setdefault(
                    "group",
                    _l("The same child has a different group in row %(row)d.", row=first.number),
                )
            if row.entry_date and first.entry_date and row.entry_date != first.entry_date:
                row.errors.setdefault(
                    "entry_date",
                    _l(
                        "The same child has a different entry date in row %(row)d.",
                        row=first.number,
                    ),
                )
            if row.guardian is None:
                row.errors.setdefault(
                    ROW, _l("This child already appears in row %(row)d.", row=first.number)
                )
        if row.guardian is not None:
            identity = row.guardian.email or "name:" + _fold(row.guardian.name)
            earlier = guardians.setdefault((key, identity), row)
            if earlier is not row:
                column = "guardian_email" if row.guardian.email else "guardian_name"
                row.errors.setdefault(
                    column,
                    _l(
                        "This guardian is already listed for the child in row %(row)d.",
                        row=earlier.number,
                    ),
                )


def _too_large() -> object:
    return _l("The file is larger than 2 MB. Please split it into several files.")


# --- checks against the Kita -----------------------------------------------------------------


def validate_against_kita(db: Session, kita: Kita, parsed: ParsedImport) -> ParsedImport:
    """Resolve group names and reject children that already exist in the Kita (same names and
    date of birth). Adds errors to the rows in place and returns ``parsed``."""
    groups = db.scalars(select(Group).where(Group.kita_id == kita.id)).all()
    exact = {group.name.strip(): group.id for group in groups}
    folded: dict[str, list[uuid.UUID]] = {}
    for group in groups:
        folded.setdefault(_fold(group.name), []).append(group.id)
    existing = {
        (_fold(first), _fold(last), born)
        for first, last, born in db.execute(
            select(Child.first_name, Child.last_name, Child.birth_date).where(
                Child.kita_id == kita.id
            )
        )
        if born is not None
    }
    for row in parsed.rows:
        if row.group_name and "group" not in row.errors:
            matches = folded.get(_fold(row.group_name), [])
            row.group_id = exact.get(row.group_name) or (matches[0] if len(matches) == 1 else None)
            if row.group_id is None:
                row.errors["group"] = _l(
                    "This Kita has no group called “%(name)s”.", name=row.group_name
                )
        if row.child_key is not None and row.child_key in existing:
            row.errors.setdefault(ROW, _l("This child already exists in this Kita."))
    return parsed


def page_rows(parsed: ParsedImport, *, page: int, only_errors: bool) -> RowPage:
    """One page (50 rows) of the preview, optionally only the rows with errors."""
    rows = parsed.error_rows if only_errors else parsed.rows
    pages = max(1, -(-len(rows) // PAGE_SIZE))
    page = min(max(page, 1), pages)
    start = (page - 1) * PAGE_SIZE
    return RowPage(rows=rows[start : start + PAGE_SIZE], page=page, pages=pages, total=len(rows))


# --- the import's life cycle -----------------------------------------------------------------


def create_import(db: Session, *, actor: Actor, kita: Kita, raw: bytes, now: datetime) -> CsvImport:
    """Keep an uploaded file for preview. Files that cannot be imported at all (too large, not
    text, required columns missing) raise ``ImportFileError`` and are not stored; row errors are
    shown by the preview. 404 unless the actor manages the Kita."""
    if not may_manage_kita(actor, kita):
        raise NotFoundError()
    if len(raw) > MAX_BYTES:
        raise ImportFileError([_too_large()], status=413)
    parsed = parse_csv(raw)
    if parsed.file_errors:
        raise ImportFileError(parsed.file_errors)
    erase_expired_imports(db, now=now)
    csv_import = CsvImport(
        id=uuid.uuid4(),
        kita_id=kita.id,
        created_by_id=actor.id,
        content=parsed.text,
        created_at=now,
    )
    db.add(csv_import)
    db.flush()
    audit.record(
        db,
        action="imports.uploaded",
        actor_id=actor.id,
        object_type="csv_import",
        object_id=csv_import.id,
        kita_id=kita.id,
        detail=f"rows={len(parsed.rows)}",
        at=now,
    )
    return csv_import


def preview_import(
    db: Session, *, actor: Actor, kita: Kita, csv_import: CsvImport, now: datetime
) -> ParsedImport:
    """Parse the stored upload again and check it against the Kita as it is now."""
    _check_open(actor, kita, csv_import, now)
    parsed = parse_csv_text(csv_import.content)
    return validate_against_kita(db, kita, parsed)


@dataclass(frozen=True)
class ImportedInvitation:
    child_name: str
    guardian_name: str
    relation: Relation
    email: str | None
    issued: IssuedInvitation


@dataclass(frozen=True)
class ImportResult:
    children: list[Child]
    invitations: list[ImportedInvitation]


def commit_import(
    db: Session,
    *,
    actor: Actor,
    kita: Kita,
    csv_import: CsvImport,
    now: datetime,
    days: int,
) -> ImportResult:
    """Create every child and one parent invitation per guardian, all or nothing.

    The stored text is parsed and checked again (the Kita may have changed since the preview);
    any error raises ``ImportRejectedError`` before anything is written. The writes happen in a
    savepoint that is rolled back on any failure, so a failing import leaves no new rows even if
    the caller commits. The stored text is erased on success. An expired upload is erased and
    refused with ``ImportExpiredError``; the caller commits to keep that erasure.
    """
    try:
        _check_open(actor, kita, csv_import, now)
    except ImportExpiredError:
        csv_import.content = ""
        db.flush()
        raise
    parsed = validate_against_kita(db, kita, parse_csv_text(csv_import.content))
    if not parsed.ok:
        raise ImportRejectedError(parsed)
    with db.begin_nested():
        # The guarded UPDATE makes a second, concurrent commit of the same upload fail.
        claimed = db.execute(
            update(CsvImport)
            .where(CsvImport.id == csv_import.id, CsvImport.committed_at.is_(None))
            .values(committed_at=now, content="")
        )
        if not getattr(claimed, "rowcount", 0):
            raise ImportCommittedError()
        result = _create_children_and_invitations(
            db, actor=actor, kita=kita, parsed=parsed, now=now, days=days
        )
        audit.record(
            db,
            action="imports.committed",
            actor_id=actor.id,
            object_type="csv_import",
            object_id=csv_import.id,
            kita_id=kita.id,
            detail=(
                f"rows={len(parsed.rows)} children={len(result.children)} "
                f"invitations={len(result.invitations)}"
            ),
            at=now,
        )
    db.refresh(csv_import)
    return result


def _create_children_and_invitations(
    db: Session, *, actor: Actor, kita: Kita, parsed: ParsedImport, now: datetime, days: int
) -> ImportResult:
    children: dict[tuple[str, str, date], Child] = {}
    for row in parsed.rows:
        key = row.child_key
        if key is None or key in children:
            continue
        children[key] = Child(
            id=uuid.uuid4(),
            kita_id=kita.id,
            group_id=row.group_id,
            first_name=row.first_name,
            last_name=row.last_name,
            birth_date=row.birth_date,
            entry_date=row.entry_date,
            created_at=now,
        )
        db.add(children[key])
    db.flush()
    invitations: list[ImportedInvitation] = []
    for row in parsed.rows:
        if row.guardian is None or row.child_key is None:
            continue
        child = children[row.child_key]
        guardian = row.guardian
        issued = create_invitation(
            db,
            actor=actor,
            kita=kita,
            request=InvitationRequest(
                role=Role.PARENT,
                child_id=child.id,
                relation=guardian.relation,
                has_custody=guardian.has_custody,
                may_pick_up=guardian.may_pick_up,
                email=guardian.email,
                locale=guardian.locale,
            ),
            now=now,
            days=days,
        )
        invitations.append(
            ImportedInvitation(
                child_name=child.full_name,
                guardian_name=guardian.name,
                relation=guardian.relation,
                email=guardian.email,
                issued=issued,
            )
        )
    return ImportResult(children=list(children.values()), invitations=invitations)


def _check_open(actor: Actor, kita: Kita, csv_import: CsvImport, now: datetime) -> None:
    if not may_manage_kita(actor, kita) or csv_import.kita_id != kita.id:
        raise NotFoundError()
    if csv_import.committed_at is not None:
        raise ImportCommittedError()
    if csv_import.created_at + MAX_AGE < now or not csv_import.content:
        raise ImportExpiredError()


def erase_expired_imports(db: Session, *, now: datetime) -> int:
    """Erase the content of uploads older than 24 hours that were never committed (a retention
    job may call this too). Returns the number of uploads erased."""
    result = db.execute(
        update(CsvImport)
        .where(
            CsvImport.committed_at.is_(None),
            CsvImport.created_at < now - MAX_AGE,
            CsvImport.content != "",
        )
        .values(content="")
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def example_csv(db: Session, kita: Kita) -> bytes:
    """An example file naming a group of the Kita, as German Excel reads it: ``;``-separated
    UTF-8 with a BOM."""
    group_name = db.scalars(
        select(Group.name).where(Group.kita_id == kita.id).order_by(Group.name).limit(1)
    ).first() or str(_l("Sun group"))
    # A cell starting with = + - @ would be a formula in a spreadsheet.
    group = "'" + group_name if group_name[:1] in {"=", "+", "-", "@"} else group_name
    rows = [
        list(COLUMN_KEYS),
        ["Mia", "Beispiel", "14.03.2021", group, "2024-08-01", "Anna Beispiel",
         "anna.beispiel@example.org", "mother", "de", "yes", "yes"],
        ["Mia", "Beispiel", "14.03.2021", group, "2024-08-01", "Deniz Beispiel",
         "", "father", "tr", "yes", "no"],
        ["Emil", "Muster", "2020-11-02", group, "", "", "", "", "", "", ""],
    ]  # fmt: skip
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=";", lineterminator="\r\n").writerows(rows)
    return codecs.BOM_UTF8 + buffer.getvalue().encode("utf-8")
