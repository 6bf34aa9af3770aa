"""Development documentation: observations and learning stories, templates, development talks,
break-glass access and the family's view of who read what.

Everything a child's documentation says is encrypted with the child's GENERAL data key before it
reaches the session, with associated data naming purpose, table, column, row, child, Kita and key
version (``encrypt_for_child``); nothing here stores or logs plaintext. Every function that
decrypts for a person records an audit event with the child as its object, so the family can see
who read what and when (:func:`who_viewed`). Access decisions come from ``kita.access``
(``documentation_access``): 404 for everyone who may not see the documentation.

Entries are created and updated by one idempotent function, :func:`save_entry`, keyed by the id
the client made: a retried save changes nothing, an edit based on an outdated version answers 409.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import Select, exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kita import audit
from kita.access import (
    Actor,
    DocumentationAccess,
    active_break_glass,
    documentation_access,
    get_documentation_child,
    get_documentation_entry,
    is_custodial_guardian,
    may_manage_kita,
)
from kita.crypto import Context, DataKey, KeyKind, KeyService, decrypt, encrypt
from kita.errors import KitaError, NotFoundError, ValidationError
from kita.models.accounts import Membership, Role, User
from kita.models.audit import AuditEvent
from kita.models.documentation import (
    BreakGlassGrant,
    ConsentPurpose,
    DevelopmentTalk,
    Disposition,
    DocumentationEntry,
    DocumentationEntryArea,
    DocumentationPhoto,
    DocumentationRevision,
    DocumentationTemplate,
    EducationalArea,
    EntryKind,
    EntryStatus,
    TemplateFieldType,
)
from kita.models.organisation import Child, GuardianLink, Kita
from kita.services.consent import require_consent
from kita.services.organisation import PAGE_SIZE, Page

TITLE_MAX = 200
TEXT_MAX = 20_000
TEMPLATE_TEXT_MAX = 2_000
TALK_TEXT_MAX = 20_000
TEMPLATE_NAME_MAX = 120
TEMPLATE_LABEL_MAX = 200
TEMPLATE_FIELDS_MAX = 20
CHOICE_OPTIONS_MAX = 20
CHOICE_OPTION_MAX = 80
SCALE_MIN, SCALE_MAX = 1, 5
BREAK_GLASS_DURATION = timedelta(hours=1)
BREAK_GLASS_REASON_MIN = 20
BREAK_GLASS_REASON_MAX = 1000
EARLIEST_OBSERVATION = date(2000, 1, 1)

#: Purpose named in the associated data of every documentation ciphertext.
CRYPTO_PURPOSE = "documentation"

#: Audit actions that read (or export) a child's documentation; the object is the child.
#: :func:`who_viewed` shows these to the family. Exports record ``documentation.export``.
DOCUMENTATION_READ_ACTIONS: tuple[str, ...] = (
    "documentation.list",
    "documentation.read",
    "documentation.photo_read",
    "documentation.export",
)

AREA_LABELS = {
    EducationalArea.MOVEMENT: _l("Movement"),
    EducationalArea.BODY_HEALTH_NUTRITION: _l("Body, health and nutrition"),
    EducationalArea.LANGUAGE_COMMUNICATION: _l("Language and communication"),
    EducationalArea.SOCIAL_INTERCULTURAL: _l("Social and (inter)cultural education"),
    EducationalArea.ARTS_AESTHETICS: _l("Musical and aesthetic education"),
    EducationalArea.RELIGION_ETHICS: _l("Religion and ethics"),
    EducationalArea.MATHEMATICS: _l("Mathematical education"),
    EducationalArea.SCIENCE_TECHNOLOGY: _l("Science and technology"),
    EducationalArea.ECOLOGY: _l("Ecological education"),
    EducationalArea.MEDIA: _l("Media"),
}

DISPOSITION_LABELS = {
    Disposition.INTERESTED: _l("Being interested"),
    Disposition.ENGAGED: _l("Being engaged"),
    Disposition.PERSISTING: _l("Persisting with difficulty"),
    Disposition.COMMUNICATING: _l("Expressing ideas and feelings"),
    Disposition.TAKING_RESPONSIBILITY: _l("Taking responsibility"),
}

KIND_LABELS = {
    EntryKind.OBSERVATION: _l("Observation"),
    EntryKind.LEARNING_STORY: _l("Learning story"),
}

STATUS_LABELS = {EntryStatus.DRAFT: _l("Draft"), EntryStatus.FINAL: _l("Final")}

#: Labels of the roles :func:`who_viewed` reports.
VIEWER_ROLE_LABELS = {
    "leader": _l("Kita leader"),
    "educator": _l("Educator"),
    "guardian": _l("Parent"),
    "provider_admin": _l("Provider administrator"),
    "other": _l("Other"),
}

_FIELD_NAME_RE = re.compile(r"\A[a-z][a-z0-9_]{0,39}\Z")
_OPTION_RE = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,39}\Z")


class StaleEditError(KitaError):
    """The edit was based on an older version than the one stored (someone saved meanwhile)."""

    status = 409
    default_message = _l(
        "Someone else changed this in the meantime. Please reload it and make your change again."
    )

    def __init__(self, current_version: int) -> None:
        super().__init__()
        self.current_version = current_version


# --- encryption ------------------------------------------------------------------------------


def encrypt_for_child(
    keys: KeyService,
    *,
    child_id: uuid.UUID,
    kita_id: uuid.UUID,
    table: str,
    column: str,
    row_id: uuid.UUID,
    plaintext: bytes,
) -> tuple[bytes, int]:
    """Encrypt with the child's general data key (created on first use), bound to the row.

    Returns the ciphertext and the key version to store next to it.
    """
    key = keys.data_key(child_id, KeyKind.GENERAL)
    context = Context(
        purpose=CRYPTO_PURPOSE,
        table=table,
        column=column,
        row_id=row_id,
        subject_id=child_id,
        kita_id=kita_id,
        key_version=key.version,
    )
    return encrypt(key, plaintext, context), key.version


def decrypt_for_child(
    keys: KeyService,
    *,
    child_id: uuid.UUID,
    kita_id: uuid.UUID,
    table: str,
    column: str,
    row_id: uuid.UUID,
    ciphertext: bytes,
    key_version: int,
    key: DataKey | None = None,
) -> bytes:
    """Counterpart of :func:`encrypt_for_child`. Raises ``KeyNotFoundError`` when the child's
    key is gone (shredded) and ``DecryptionError`` when the ciphertext does not belong here.
    ``key``: the child's data key when the caller already holds it (lists of one child)."""
    if key is None:
        key = keys.data_key(child_id, KeyKind.GENERAL, create=False)
    context = Context(
        purpose=CRYPTO_PURPOSE,
        table=table,
        column=column,
        row_id=row_id,
        subject_id=child_id,
        kita_id=kita_id,
        key_version=key_version,
    )
    return decrypt(key, ciphertext, context)


def _encrypt_json(
    keys: KeyService, child: Child, table: str, column: str, row_id: uuid.UUID, value: object
) -> tuple[bytes, int]:
    plaintext = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    return encrypt_for_child(
        keys,
        child_id=child.id,
        kita_id=child.kita_id,
        table=table,
        column=column,
        row_id=row_id,
        plaintext=plaintext,
    )


def _decrypt_json(
    keys: KeyService,
    *,
    child_id: uuid.UUID,
    kita_id: uuid.UUID,
    table: str,
    column: str,
    row_id: uuid.UUID,
    ciphertext: bytes,
    key_version: int,
    key: DataKey | None = None,
) -> Any:
    return json.loads(
        decrypt_for_child(
            keys,
            child_id=child_id,
            kita_id=kita_id,
            table=table,
            column=column,
            row_id=row_id,
            ciphertext=ciphertext,
            key_version=key_version,
            key=key,
        )
    )


# --- text checks -----------------------------------------------------------------------------


def _clean_line(
    value: object, name: str, errors: dict[str, object], *, max_length: int, required: bool
) -> str:
    """A one-line text: no control characters."""
    if not isinstance(value, str):
        errors[name] = _l("Please enter a text.")
        return ""
    value = value.strip()
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        errors[name] = _l("This field contains characters that are not allowed.")
    elif required and not value:
        errors[name] = _l("This field is required.")
    elif len(value) > max_length:
        errors[name] = _l("At most %(count)d characters are allowed.", count=max_length)
    return value


def _clean_multiline(
    value: object, name: str, errors: dict[str, object], *, max_length: int
) -> str:
    """A text of several lines: newlines and tabs allowed, other control characters not."""
    if not isinstance(value, str):
        errors[name] = _l("Please enter a text.")
        return ""
    value = value.replace("\r\n", "\n").replace("\r", "\n").strip()
    if any((ord(c) < 32 and c not in "\n\t") or ord(c) == 127 for c in value):
        errors[name] = _l("This field contains characters that are not allowed.")
    elif len(value) > max_length:
        errors[name] = _l("At most %(count)d characters are allowed.", count=max_length)
    return value


# --- templates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateField:
    """One field of a template. ``label`` and option labels may be lazy strings."""

    name: str
    type: TemplateFieldType
    label: object
    options: tuple[tuple[str, object], ...] = ()
    required: bool = False


@dataclass(frozen=True)
class TemplateView:
    id: uuid.UUID
    kita_id: uuid.UUID
    name: object
    area: EducationalArea | None
    builtin_key: str | None
    fields: tuple[TemplateField, ...]
    archived: bool


@dataclass(frozen=True)
class TemplateFieldInput:
    name: str
    type: str
    label: str
    options: Sequence[str] = ()
    required: bool = False


@dataclass(frozen=True)
class TemplateInput:
    name: str
    area: str | None
    fields: Sequence[TemplateFieldInput]


_SETTINGS = (
    ("free_play", _l("Free play")),
    ("guided_activity", _l("Guided activity")),
    ("outdoors", _l("Outdoors")),
    ("daily_routine", _l("Daily routine")),
)

#: One shipped template per educational area: (name, the area's guiding question).
BUILTIN_TEMPLATES: dict[EducationalArea, tuple[object, object]] = {
    EducationalArea.MOVEMENT: (
        _l("Movement"),
        _l("Which movements did the child try or practise?"),
    ),
    EducationalArea.BODY_HEALTH_NUTRITION: (
        _l("Body, health and nutrition"),
        _l("How did the child take care of their body, food or well-being?"),
    ),
    EducationalArea.LANGUAGE_COMMUNICATION: (
        _l("Language and communication"),
        _l("Which words, sentences or ways of communicating did the child use?"),
    ),
    EducationalArea.SOCIAL_INTERCULTURAL: (
        _l("Social and (inter)cultural education"),
        _l("How did the child play, share or solve conflicts with others?"),
    ),
    EducationalArea.ARTS_AESTHETICS: (
        _l("Musical and aesthetic education"),
        _l("How did the child express themselves in music, art or play-acting?"),
    ),
    EducationalArea.RELIGION_ETHICS: (
        _l("Religion and ethics"),
        _l("Which questions about life, values or beliefs did the child raise?"),
    ),
    EducationalArea.MATHEMATICS: (
        _l("Mathematical education"),
        _l("How did the child count, compare, sort or measure?"),
    ),
    EducationalArea.SCIENCE_TECHNOLOGY: (
        _l("Science and technology"),
        _l("What did the child explore, try out or build?"),
    ),
    EducationalArea.ECOLOGY: (
        _l("Ecological education"),
        _l("How did the child experience nature, animals or plants?"),
    ),
    EducationalArea.MEDIA: (
        _l("Media"),
        _l("How did the child use or talk about books, pictures or devices?"),
    ),
}

_BUILTIN_FIELD_LABELS: dict[str, object] = {
    "setting": _l("Setting"),
    "engagement": _l("Engagement (1 = low, 5 = very high)"),
    "next_steps": _l("Ideas for next steps"),
}


def _builtin_key(area: EducationalArea) -> str:
    return f"area.{area.value}"


def _builtin_fields_json() -> list[dict[str, Any]]:
    """The structure of every shipped template; labels come from the code (translated)."""
    return [
        {"name": "focus", "type": "text", "label": "", "options": [], "required": False},
        {
            "name": "setting",
            "type": "choice",
            "label": "",
            "options": [value for value, _label in _SETTINGS],
            "required": False,
        },
        {"name": "engagement", "type": "scale", "label": "", "options": [], "required": False},
        {"name": "next_steps", "type": "text", "label": "", "options": [], "required": False},
    ]


def ensure_default_templates(db: Session, kita: Kita) -> list[DocumentationTemplate]:
    """Create the shipped template of each educational area for the Kita where missing (also
    when two requests race: the unique key decides) and return all ten."""
    existing = {
        template.builtin_key: template
        for template in db.scalars(
            select(DocumentationTemplate).where(
                DocumentationTemplate.kita_id == kita.id,
                DocumentationTemplate.builtin_key.is_not(None),
            )
        )
    }
    for area in EducationalArea:
        key = _builtin_key(area)
        if key in existing:
            continue
        template = DocumentationTemplate(
            id=uuid.uuid4(),
            kita_id=kita.id,
            builtin_key=key,
            area=area,
            name=key,
            fields=_builtin_fields_json(),
        )
        try:
            with db.begin_nested():
                db.add(template)
                db.flush()
        except IntegrityError:
            template = db.scalars(
                select(DocumentationTemplate).where(
                    DocumentationTemplate.kita_id == kita.id,
                    DocumentationTemplate.builtin_key == key,
                )
            ).one()
        existing[key] = template
    return [existing[_builtin_key(area)] for area in EducationalArea]


def template_view(template: DocumentationTemplate) -> TemplateView:
    """A template with display labels (translated for the shipped ones)."""
    fields: list[TemplateField] = []
    builtin = template.builtin_key is not None and template.area in BUILTIN_TEMPLATES
    for spec in template.fields:
        kind = TemplateFieldType(spec["type"])
        label: object = spec.get("label", "")
        options: tuple[tuple[str, object], ...] = tuple(
            (str(value), str(value)) for value in spec.get("options", [])
        )
        if builtin:
            assert template.area is not None  # noqa: S101 (narrowing for mypy)
            label = (
                BUILTIN_TEMPLATES[template.area][1]
                if spec["name"] == "focus"
                else _BUILTIN_FIELD_LABELS.get(spec["name"], spec["name"])
            )
            if spec["name"] == "setting":
                options = _SETTINGS
        fields.append(TemplateField(spec["name"], kind, label, options, bool(spec.get("required"))))
    name: object = template.name
    if builtin:
        assert template.area is not None  # noqa: S101
        name = BUILTIN_TEMPLATES[template.area][0]
    return TemplateView(
        id=template.id,
        kita_id=template.kita_id,
        name=name,
        area=template.area,
        builtin_key=template.builtin_key,
        fields=tuple(fields),
        archived=template.archived_at is not None,
    )


def list_templates(
    db: Session, kita: Kita, *, include_archived: bool = False
) -> list[TemplateView]:
    """The Kita's templates, shipped ones (in area order) first, then the Kita's own by name.
    Call :func:`ensure_default_templates` first to have the shipped ones."""
    query = select(DocumentationTemplate).where(DocumentationTemplate.kita_id == kita.id)
    if not include_archived:
        query = query.where(DocumentationTemplate.archived_at.is_(None))
    area_order = list(EducationalArea)
    templates = list(db.scalars(query))
    templates.sort(
        key=lambda t: (
            t.builtin_key is None,
            area_order.index(t.area) if t.area is not None and t.builtin_key else 0,
            t.name.lower(),
        )
    )
    return [template_view(t) for t in templates]


def create_template(
    db: Session, *, actor: Actor, kita: Kita, data: TemplateInput
) -> DocumentationTemplate:
    """A Kita-defined template (the Kita's leaders; provider admins too). 404 for others."""
    if not may_manage_kita(actor, kita):
        raise NotFoundError()
    errors: dict[str, object] = {}
    name = _clean_line(data.name, "name", errors, max_length=TEMPLATE_NAME_MAX, required=True)
    area: EducationalArea | None = None
    if data.area:
        try:
            area = EducationalArea(data.area)
        except ValueError:
            errors["area"] = _l("Please choose one of the offered options.")
    if not data.fields:
        errors["fields"] = _l("Please add at least one field.")
    elif len(data.fields) > TEMPLATE_FIELDS_MAX:
        errors["fields"] = _l("At most %(count)d fields are allowed.", count=TEMPLATE_FIELDS_MAX)
    specs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, spec in enumerate(data.fields[:TEMPLATE_FIELDS_MAX]):
        prefix = f"fields.{index}"
        if not isinstance(spec.name, str) or not _FIELD_NAME_RE.match(spec.name):
            errors[f"{prefix}.name"] = _l(
                "Use lower-case letters, digits and underscores, starting with a letter."
            )
        elif spec.name in seen:
            errors[f"{prefix}.name"] = _l("Each field needs its own name.")
        seen.add(spec.name)
        label = _clean_line(
            spec.label, f"{prefix}.label", errors, max_length=TEMPLATE_LABEL_MAX, required=True
        )
        try:
            kind = TemplateFieldType(spec.type)
        except ValueError:
            errors[f"{prefix}.type"] = _l("Please choose one of the offered options.")
            continue
        options: list[str] = []
        if kind is TemplateFieldType.CHOICE:
            options = [o.strip() for o in spec.options if isinstance(o, str)]
            if not 2 <= len(options) <= CHOICE_OPTIONS_MAX or len(set(options)) != len(options):
                errors[f"{prefix}.options"] = _l(
                    "A choice needs between 2 and %(count)d different options.",
                    count=CHOICE_OPTIONS_MAX,
                )
            elif any(
                not o or len(o) > CHOICE_OPTION_MAX or any(ord(c) < 32 for c in o) for o in options
            ):
                errors[f"{prefix}.options"] = _l(
                    "Each option needs 1 to %(count)d characters.", count=CHOICE_OPTION_MAX
                )
        specs.append(
            {
                "name": spec.name,
                "type": kind.value,
                "label": label,
                "options": options,
                "required": bool(spec.required),
            }
        )
    if errors:
        raise ValidationError(errors)
    template = DocumentationTemplate(
        id=uuid.uuid4(),
        kita_id=kita.id,
        area=area,
        name=name,
        fields=specs,
        created_by_id=actor.id,
    )
    db.add(template)
    db.flush()
    audit.record(
        db,
        action="documentation_template.created",
        actor_id=actor.id,
        object_type="documentation_template",
        object_id=template.id,
        kita_id=kita.id,
    )
    return template


def archive_template(
    db: Session, *, actor: Actor, template: DocumentationTemplate, now: datetime | None = None
) -> None:
    """Hide a template from new entries; entries that use it keep it. 404 unless managing."""
    kita = db.get(Kita, template.kita_id)
    if kita is None or not may_manage_kita(actor, kita):
        raise NotFoundError()
    if template.archived_at is None:
        template.archived_at = now or datetime.now(UTC)
        db.flush()
        audit.record(
            db,
            action="documentation_template.archived",
            actor_id=actor.id,
            object_type="documentation_template",
            object_id=template.id,
            kita_id=kita.id,
        )


def validate_template_values(
    template: DocumentationTemplate, values: Mapping[str, object]
) -> dict[str, str | int]:
    """Check values against the template: unknown fields, a choice that is not offered, a
    scale outside 1..5, an over-long text and missing required fields are field errors named
    ``template_values.<field>``. Empty values are dropped."""
    errors: dict[str, object] = {}
    clean: dict[str, str | int] = {}
    specs = {spec["name"]: spec for spec in template.fields}
    for name, value in values.items():
        key = f"template_values.{name}"[:80]
        spec = specs.get(name) if isinstance(name, str) else None
        if spec is None:
            errors[key] = _l("This template has no such field.")
            continue
        kind = TemplateFieldType(spec["type"])
        if value is None or value == "":
            continue
        if kind is TemplateFieldType.SCALE:
            if (
                isinstance(value, int)
                and not isinstance(value, bool)
                and SCALE_MIN <= value <= SCALE_MAX
            ):
                clean[name] = value
            else:
                errors[key] = _l("Please choose a value from 1 to 5.")
        elif kind is TemplateFieldType.CHOICE:
            if not isinstance(value, str) or value not in spec.get("options", []):
                errors[key] = _l("Please choose one of the offered options.")
            else:
                clean[name] = value
        else:
            text = _clean_multiline(value, key, errors, max_length=TEMPLATE_TEXT_MAX)
            if text:
                clean[name] = text
    for name, spec in specs.items():
        if spec.get("required") and name not in clean and f"template_values.{name}" not in errors:
            errors[f"template_values.{name}"] = _l("This field is required.")
    if errors:
        raise ValidationError(errors)
    return clean


# --- entries ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryInput:
    """What a client sends to create or change an entry. ``base_version`` is the version the
    change was made on (0 when creating)."""

    child_id: uuid.UUID
    kind: str
    status: str
    title: str
    text: str
    areas: Sequence[str] = ()
    dispositions: Sequence[str] = ()
    template_id: uuid.UUID | None = None
    template_values: Mapping[str, object] = field(default_factory=dict)
    observed_on: date | None = None
    base_version: int = 0


@dataclass(frozen=True)
class EntryView:
    """A decrypted entry as shown to a person allowed to read it."""

    id: uuid.UUID
    child_id: uuid.UUID
    kita_id: uuid.UUID
    author_id: uuid.UUID
    author_name: str
    kind: EntryKind
    status: EntryStatus
    title: str
    text: str
    areas: tuple[EducationalArea, ...]
    dispositions: tuple[Disposition, ...]
    template_id: uuid.UUID | None
    template_values: dict[str, str | int]
    observed_on: date
    version: int
    created_at: datetime
    updated_at: datetime
    shared_with_family_at: datetime | None
    photo_ids: tuple[uuid.UUID, ...] = ()


@dataclass(frozen=True)
class SaveResult:
    entry: EntryView
    #: True when this call created the entry (HTTP 201).
    created: bool
    #: False for a replayed save that found the content already stored.
    changed: bool


@dataclass(frozen=True)
class _Content:
    """The comparable state of an entry: what a save sets."""

    kind: EntryKind
    status: EntryStatus
    title: str
    text: str
    areas: tuple[EducationalArea, ...]
    dispositions: tuple[Disposition, ...]
    template_id: uuid.UUID | None
    template_values: dict[str, str | int]
    observed_on: date

    def secret_part(self) -> dict[str, Any]:
        """What is encrypted in the entry row."""
        return {"title": self.title, "text": self.text, "template_values": self.template_values}

    def as_revision(self) -> dict[str, Any]:
        """Everything, for the encrypted edit history."""
        return {
            **self.secret_part(),
            "kind": self.kind.value,
            "status": self.status.value,
            "areas": [a.value for a in self.areas],
            "dispositions": [d.value for d in self.dispositions],
            "template_id": str(self.template_id) if self.template_id else None,
            "observed_on": self.observed_on.isoformat(),
        }


def _codes(
    raw: object,
    enum_cls: type[EducationalArea] | type[Disposition],
    name: str,
    errors: dict[str, object],
) -> tuple[Any, ...]:
    if not isinstance(raw, list | tuple):
        errors[name] = _l("Please choose from the offered options.")
        return ()
    chosen = set()
    for value in raw:
        try:
            chosen.add(enum_cls(value))
        except (ValueError, TypeError):
            errors[name] = _l("Please choose from the offered options.")
            return ()
    order = list(enum_cls)
    return tuple(sorted(chosen, key=order.index))


def _validate_entry(
    db: Session,
    child: Child,
    data: EntryInput,
    today: date,
    existing: DocumentationEntry | None,
) -> _Content:
    errors: dict[str, object] = {}
    kind = status = None
    try:
        kind = EntryKind(data.kind)
    except ValueError:
        errors["kind"] = _l("Please choose one of the offered options.")
    try:
        status = EntryStatus(data.status)
    except ValueError:
        errors["status"] = _l("Please choose one of the offered options.")
    title = _clean_line(data.title, "title", errors, max_length=TITLE_MAX, required=False)
    text = _clean_multiline(data.text, "text", errors, max_length=TEXT_MAX)
    areas = _codes(data.areas, EducationalArea, "areas", errors)
    dispositions = _codes(data.dispositions, Disposition, "dispositions", errors)
    values: dict[str, str | int] = {}
    if data.template_id is not None:
        template = db.get(DocumentationTemplate, data.template_id)
        usable = (
            template is not None
            and template.kita_id == child.kita_id
            and (
                template.archived_at is None
                or (existing is not None and existing.template_id == template.id)
            )
        )
        if template is None or not usable:
            errors["template_id"] = _l("Please choose one of the Kita's templates.")
        else:
            try:
                values = validate_template_values(template, data.template_values)
            except ValidationError as error:
                errors.update(error.fields)
    elif data.template_values:
        errors["template_values"] = _l("Please choose a template for these values.")
    if "text" not in errors and not text and not values:
        errors["text"] = _l("Please write a text or fill in the template.")
    # Omitted on a change: keep the stored date (a retry on the next day must still match).
    observed_on = data.observed_on or (existing.observed_on if existing is not None else today)
    if not EARLIEST_OBSERVATION <= observed_on <= today + timedelta(days=1):
        errors["observed_on"] = _l("Please enter a date that is not in the future.")
    if (
        existing is not None
        and existing.status is EntryStatus.FINAL
        and status is EntryStatus.DRAFT
    ):
        errors["status"] = _l("A final entry cannot be turned back into a draft.")
    if errors:
        raise ValidationError(errors)
    # No errors means both parsed.
    assert kind is not None  # noqa: S101
    assert status is not None  # noqa: S101
    return _Content(
        kind, status, title, text, areas, dispositions, data.template_id, values, observed_on
    )


def _stored_content(
    keys: KeyService, entry: DocumentationEntry, key: DataKey | None = None
) -> _Content:
    secret = _decrypt_json(
        keys,
        key=key,
        child_id=entry.child_id,
        kita_id=entry.kita_id,
        table="documentation_entries",
        column="content",
        row_id=entry.id,
        ciphertext=entry.content_ct,
        key_version=entry.key_version,
    )
    return _Content(
        kind=entry.kind,
        status=entry.status,
        title=secret["title"],
        text=secret["text"],
        areas=tuple(entry.areas),
        dispositions=tuple(Disposition(d) for d in entry.dispositions),
        template_id=entry.template_id,
        template_values=dict(secret["template_values"]),
        observed_on=entry.observed_on,
    )


def _apply(
    keys: KeyService,
    child: Child,
    entry: DocumentationEntry,
    content: _Content,
    editor: Actor,
    now: datetime,
) -> DocumentationRevision:
    """Write ``content`` into the entry (encrypted); return the revision of its new version
    (for the caller to add)."""
    entry.kind, entry.status = content.kind, content.status
    entry.observed_on = content.observed_on
    entry.dispositions = [d.value for d in content.dispositions]
    entry.template_id = content.template_id
    entry.content_ct, entry.key_version = _encrypt_json(
        keys, child, "documentation_entries", "content", entry.id, content.secret_part()
    )
    entry.updated_at = now
    entry.area_rows = [DocumentationEntryArea(area=area) for area in content.areas]
    revision_id = uuid.uuid4()
    ciphertext, key_version = _encrypt_json(
        keys, child, "documentation_revisions", "content", revision_id, content.as_revision()
    )
    return DocumentationRevision(
        id=revision_id,
        entry_id=entry.id,
        version=entry.version,
        editor_id=editor.id,
        saved_at=now,
        content_ct=ciphertext,
        key_version=key_version,
    )


def _lock_entry(db: Session, entry_id: uuid.UUID) -> DocumentationEntry | None:
    return db.get(DocumentationEntry, entry_id, with_for_update=True, populate_existing=True)


def save_entry(
    db: Session,
    *,
    actor: Actor,
    keys: KeyService,
    entry_id: uuid.UUID,
    data: EntryInput,
    now: datetime | None = None,
) -> SaveResult:
    """Create or change the entry ``entry_id`` (a UUID made by the client).

    - 404 when the actor may not write the child's documentation (or the existing entry's);
    - 403 (:class:`ConsentRequiredError`) without the family's "documentation" consent;
    - 422 with field errors for invalid input; nothing is stored;
    - idempotent: when the stored entry already holds exactly this content and ``base_version``
      is its version or the one before (a retried save whose answer was lost), nothing is
      written and the stored entry is returned (``changed=False``);
    - 409 (:class:`StaleEditError`) when ``base_version`` is not the stored version.
    A change writes a new encrypted revision and increments ``version``.
    """
    now = now or datetime.now(UTC)
    existing = _lock_entry(db, entry_id)
    if existing is None:
        child, _scope = get_documentation_child(db, actor, data.child_id, write=True)
        require_consent(db, child, ConsentPurpose.DOCUMENTATION)
        content = _validate_entry(db, child, data, now.date(), None)
        if data.base_version:
            # The client edits something it believes is stored, but nothing is.
            raise NotFoundError()
        created = _create_entry(db, actor, keys, child, entry_id, content, now)
        if created is not None:
            return SaveResult(_view(db, keys, created), created=True, changed=True)
        # A concurrent save created it first: continue as an update of that entry.
        existing = _lock_entry(db, entry_id)
        if existing is None:  # pragma: no cover (the insert failed for another reason)
            raise NotFoundError()
    child = existing.child
    if documentation_access(db, actor, child, now=now) is not DocumentationAccess.STAFF:
        raise NotFoundError()
    if data.child_id != existing.child_id:
        raise ValidationError({"child_id": _l("This entry belongs to another child.")})
    require_consent(db, child, ConsentPurpose.DOCUMENTATION)
    stored = _stored_content(keys, existing)
    if data.base_version not in (existing.version, existing.version - 1):
        raise StaleEditError(existing.version)
    content = _validate_entry(db, child, data, now.date(), existing)
    if content == stored:
        return SaveResult(_view(db, keys, existing), created=False, changed=False)
    if data.base_version != existing.version:
        raise StaleEditError(existing.version)
    existing.version += 1
    db.add(_apply(keys, child, existing, content, actor, now))
    db.flush()
    audit.record(
        db,
        action="documentation.updated",
        actor_id=actor.id,
        object_type="documentation_entry",
        object_id=existing.id,
        kita_id=existing.kita_id,
        detail=f"version={existing.version}",
        at=now,
    )
    return SaveResult(_view(db, keys, existing), created=False, changed=True)


def _create_entry(
    db: Session,
    actor: Actor,
    keys: KeyService,
    child: Child,
    entry_id: uuid.UUID,
    content: _Content,
    now: datetime,
) -> DocumentationEntry | None:
    """Insert a new entry at version 1; None when another transaction inserted the id first."""
    entry = DocumentationEntry(
        id=entry_id,
        child_id=child.id,
        kita_id=child.kita_id,
        author_id=actor.id,
        version=1,
        created_at=now,
    )
    revision = _apply(keys, child, entry, content, actor, now)
    try:
        with db.begin_nested():
            db.add(entry)
            db.add(revision)
            db.flush()
    except IntegrityError:
        return None
    audit.record(
        db,
        action="documentation.created",
        actor_id=actor.id,
        object_type="documentation_entry",
        object_id=entry.id,
        kita_id=entry.kita_id,
        at=now,
    )
    return entry


def share_entry(
    db: Session,
    *,
    actor: Actor,
    entry_id: uuid.UUID,
    shared: bool,
    now: datetime | None = None,
) -> DocumentationEntry:
    """Share a final entry with the child's family, or stop sharing it. Staff of the child only
    (404 otherwise); sharing needs the documentation consent; sharing a draft is a field
    error."""
    now = now or datetime.now(UTC)
    entry, _scope = get_documentation_entry(db, actor, entry_id, write=True, now=now)
    if shared:  # stopping to share processes less, so it needs no consent
        require_consent(db, entry.child, ConsentPurpose.DOCUMENTATION)
    if shared and entry.status is not EntryStatus.FINAL:
        raise ValidationError({"status": _l("Only a final entry can be shared with the family.")})
    if shared == (entry.shared_with_family_at is not None):
        return entry
    entry.shared_with_family_at = now if shared else None
    entry.shared_by_id = actor.id if shared else None
    db.flush()
    audit.record(
        db,
        action="documentation.shared" if shared else "documentation.unshared",
        actor_id=actor.id,
        object_type="documentation_entry",
        object_id=entry.id,
        kita_id=entry.kita_id,
        at=now,
    )
    return entry


# --- reading ---------------------------------------------------------------------------------


def _names(db: Session, user_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not user_ids:
        return {}
    rows = db.execute(select(User.id, User.display_name).where(User.id.in_(user_ids)))
    return {user_id: name for user_id, name in rows}


def _photo_ids(db: Session, entry_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
    result: dict[uuid.UUID, list[uuid.UUID]] = {}
    if not entry_ids:
        return result
    for photo_id, entry_id in db.execute(
        select(DocumentationPhoto.id, DocumentationPhoto.entry_id)
        .where(DocumentationPhoto.entry_id.in_(entry_ids))
        .order_by(DocumentationPhoto.created_at, DocumentationPhoto.id)
    ):
        result.setdefault(entry_id, []).append(photo_id)
    return result


def _views(db: Session, keys: KeyService, entries: Sequence[DocumentationEntry]) -> list[EntryView]:
    names = _names(db, {e.author_id for e in entries})
    photos = _photo_ids(db, [e.id for e in entries])
    views = []
    # One key lookup per child, not per entry: a timeline is one child's.
    child_keys: dict[uuid.UUID, DataKey] = {}
    for entry in entries:
        if entry.child_id not in child_keys:
            child_keys[entry.child_id] = keys.data_key(
                entry.child_id, KeyKind.GENERAL, create=False
            )
        content = _stored_content(keys, entry, child_keys[entry.child_id])
        views.append(
            EntryView(
                id=entry.id,
                child_id=entry.child_id,
                kita_id=entry.kita_id,
                author_id=entry.author_id,
                author_name=names.get(entry.author_id, ""),
                kind=content.kind,
                status=content.status,
                title=content.title,
                text=content.text,
                areas=content.areas,
                dispositions=content.dispositions,
                template_id=content.template_id,
                template_values=content.template_values,
                observed_on=content.observed_on,
                version=entry.version,
                created_at=entry.created_at,
                updated_at=entry.updated_at,
                shared_with_family_at=entry.shared_with_family_at,
                photo_ids=tuple(photos.get(entry.id, ())),
            )
        )
    return views


def _view(db: Session, keys: KeyService, entry: DocumentationEntry) -> EntryView:
    return _views(db, keys, [entry])[0]


def record_read(
    db: Session,
    *,
    actor: Actor,
    child: Child,
    action: str,
    scope: DocumentationAccess,
    detail: str = "",
    now: datetime | None = None,
) -> None:
    """Audit one read or export of the child's documentation (object: the child), naming the
    break-glass grant when that is what allowed it. Used by reports too."""
    if scope is DocumentationAccess.BREAK_GLASS:
        grant = active_break_glass(db, actor, child, now=now)
        detail = f"break_glass grant={grant.id if grant else '-'} {detail}".strip()
    audit.record(
        db,
        action=action,
        actor_id=actor.id,
        object_type="child",
        object_id=child.id,
        kita_id=child.kita_id,
        detail=detail,
        at=now,
    )


def read_entry(
    db: Session,
    *,
    actor: Actor,
    keys: KeyService,
    entry_id: uuid.UUID,
    now: datetime | None = None,
) -> EntryView:
    """One decrypted entry (audited as ``documentation.read``). Staff of the child and
    provider admins with break-glass read every entry; guardians with custody only the
    entries shared with them; everybody else gets 404."""
    entry, scope = get_documentation_entry(db, actor, entry_id, now=now)
    view = _view(db, keys, entry)
    record_read(
        db,
        actor=actor,
        child=entry.child,
        action="documentation.read",
        scope=scope,
        detail=f"entry={entry.id}",
        now=now,
    )
    return view


def _page_number(page: int, total: int) -> int:
    return max(1, min(page, math.ceil(total / PAGE_SIZE) or 1))


def _paged_views(
    db: Session, keys: KeyService, query: Select[DocumentationEntry], page: int
) -> Page[EntryView]:
    total = int(db.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0)
    page = _page_number(page, total)
    entries = db.scalars(
        query.order_by(
            DocumentationEntry.observed_on.desc(),
            DocumentationEntry.created_at.desc(),
            DocumentationEntry.id,
        )
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    ).all()
    return Page(_views(db, keys, entries), page, total)


def list_timeline(
    db: Session,
    *,
    actor: Actor,
    keys: KeyService,
    child: Child,
    area: EducationalArea | str | None = None,
    author_id: uuid.UUID | None = None,
    since: date | None = None,
    until: date | None = None,
    page: int = 1,
    now: datetime | None = None,
) -> Page[EntryView]:
    """The child's entries for staff, newest observation first, 50 per page, filtered by area,
    author and period (``since``/``until`` inclusive, by observation date). Records ONE
    ``documentation.list`` audit event per call. 404 for anyone but the child's staff and
    provider admins with break-glass (families use :func:`list_shared_for_family`)."""
    scope = documentation_access(db, actor, child, now=now)
    if scope not in (DocumentationAccess.STAFF, DocumentationAccess.BREAK_GLASS):
        raise NotFoundError()
    errors: dict[str, object] = {}
    chosen_area: EducationalArea | None = None
    if area:
        try:
            chosen_area = EducationalArea(area)
        except ValueError:
            errors["area"] = _l("Please choose one of the offered options.")
    if since and until and since > until:
        errors["until"] = _l("The end of the period must not be before its start.")
    if errors:
        raise ValidationError(errors)
    query = select(DocumentationEntry).where(DocumentationEntry.child_id == child.id)
    if chosen_area is not None:
        query = query.where(
            exists().where(
                DocumentationEntryArea.entry_id == DocumentationEntry.id,
                DocumentationEntryArea.area == chosen_area,
            )
        )
    if author_id is not None:
        query = query.where(DocumentationEntry.author_id == author_id)
    if since is not None:
        query = query.where(DocumentationEntry.observed_on >= since)
    if until is not None:
        query = query.where(DocumentationEntry.observed_on <= until)
    result = _paged_views(db, keys, query, page)
    record_read(
        db,
        actor=actor,
        child=child,
        action="documentation.list",
        scope=scope,
        detail=f"timeline page={result.number}",
        now=now,
    )
    return result


def list_shared_for_family(
    db: Session,
    *,
    actor: Actor,
    keys: KeyService,
    child: Child,
    page: int = 1,
    now: datetime | None = None,
) -> Page[EntryView]:
    """The entries shared with the child's family (guardians with custody, and staff who want
    to see what the family sees), newest first; audited once. 404 for everybody else."""
    scope = documentation_access(db, actor, child, now=now)
    if scope is None:
        raise NotFoundError()
    query = select(DocumentationEntry).where(
        DocumentationEntry.child_id == child.id,
        DocumentationEntry.shared_with_family_at.is_not(None),
    )
    result = _paged_views(db, keys, query, page)
    record_read(
        db,
        actor=actor,
        child=child,
        action="documentation.list",
        scope=scope,
        detail=f"shared page={result.number}",
        now=now,
    )
    return result


@dataclass(frozen=True)
class RevisionView:
    version: int
    editor_id: uuid.UUID
    editor_name: str
    saved_at: datetime
    content: dict[str, Any]


def list_revisions(
    db: Session,
    *,
    actor: Actor,
    keys: KeyService,
    entry_id: uuid.UUID,
    now: datetime | None = None,
) -> list[RevisionView]:
    """The entry's edit history, newest first, decrypted (staff and break-glass; audited)."""
    entry, scope = get_documentation_entry(db, actor, entry_id, now=now)
    if scope is DocumentationAccess.FAMILY:
        raise NotFoundError()
    revisions = list(
        db.scalars(
            select(DocumentationRevision)
            .where(DocumentationRevision.entry_id == entry.id)
            .order_by(DocumentationRevision.version.desc())
        )
    )
    names = _names(db, {r.editor_id for r in revisions})
    views = [
        RevisionView(
            version=revision.version,
            editor_id=revision.editor_id,
            editor_name=names.get(revision.editor_id, ""),
            saved_at=revision.saved_at,
            content=_decrypt_json(
                keys,
                child_id=entry.child_id,
                kita_id=entry.kita_id,
                table="documentation_revisions",
                column="content",
                row_id=revision.id,
                ciphertext=revision.content_ct,
                key_version=revision.key_version,
            ),
        )
        for revision in revisions
    ]
    record_read(
        db,
        actor=actor,
        child=entry.child,
        action="documentation.read",
        scope=scope,
        detail=f"history entry={entry.id}",
        now=now,
    )
    return views


def decrypt_entries_for_export(
    db: Session, *, keys: KeyService, child: Child, shared_only: bool = False
) -> list[EntryView]:
    """Every entry of the child (or only those shared with the family), oldest observation
    first, decrypted. NO access check and NO audit: the caller (portfolio PDF, data export,
    hand-over job) has checked access and records ``documentation.export`` via
    :func:`record_read` or ``audit.record``."""
    query = select(DocumentationEntry).where(DocumentationEntry.child_id == child.id)
    if shared_only:
        query = query.where(DocumentationEntry.shared_with_family_at.is_not(None))
    entries = db.scalars(
        query.order_by(
            DocumentationEntry.observed_on, DocumentationEntry.created_at, DocumentationEntry.id
        )
    ).all()
    return _views(db, keys, entries)


# --- break-glass -----------------------------------------------------------------------------


def break_glass(
    db: Session,
    *,
    actor: Actor,
    keys: KeyService,
    child: Child,
    reason: str,
    now: datetime | None = None,
) -> BreakGlassGrant:
    """Let a provider admin read (never write) the child's documentation for one hour after
    recording why (at least 20 characters; stored encrypted, audited without the reason).
    404 for anyone who is not an admin of the child's provider."""
    if actor.admin_provider_id is None or actor.admin_provider_id != child.kita.provider_id:
        raise NotFoundError()
    errors: dict[str, object] = {}
    reason = _clean_multiline(reason, "reason", errors, max_length=BREAK_GLASS_REASON_MAX)
    if "reason" not in errors and len(reason) < BREAK_GLASS_REASON_MIN:
        errors["reason"] = _l(
            "Please describe the reason in at least %(count)d characters.",
            count=BREAK_GLASS_REASON_MIN,
        )
    if errors:
        raise ValidationError(errors)
    now = now or datetime.now(UTC)
    grant_id = uuid.uuid4()
    ciphertext, key_version = encrypt_for_child(
        keys,
        child_id=child.id,
        kita_id=child.kita_id,
        table="break_glass_grants",
        column="reason",
        row_id=grant_id,
        plaintext=reason.encode(),
    )
    grant = BreakGlassGrant(
        id=grant_id,
        admin_id=actor.id,
        child_id=child.id,
        kita_id=child.kita_id,
        reason_ct=ciphertext,
        key_version=key_version,
        granted_at=now,
        expires_at=now + BREAK_GLASS_DURATION,
    )
    db.add(grant)
    db.flush()
    audit.record(
        db,
        action="documentation.break_glass",
        actor_id=actor.id,
        object_type="child",
        object_id=child.id,
        kita_id=child.kita_id,
        detail=f"grant={grant.id}",
        at=now,
    )
    return grant


def read_break_glass_reason(keys: KeyService, grant: BreakGlassGrant) -> str:
    """The recorded reason (for the data-protection officer's review)."""
    return decrypt_for_child(
        keys,
        child_id=grant.child_id,
        kita_id=grant.kita_id,
        table="break_glass_grants",
        column="reason",
        row_id=grant.id,
        ciphertext=grant.reason_ct,
        key_version=grant.key_version,
    ).decode()


# --- who viewed ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewRecord:
    """One read or export of the child's documentation, for the family."""

    at: datetime
    actor_id: uuid.UUID | None
    name: str
    #: One of VIEWER_ROLE_LABELS' keys.
    role: str
    action: str
    break_glass: bool


def who_viewed(db: Session, *, actor: Actor, child: Child, page: int = 1) -> Page[ViewRecord]:
    """Who read or exported the child's documentation and when, newest first, 50 per page.
    For the child's guardians with custody, the Kita's leaders and the provider's admins;
    404 for everybody else."""
    if not (is_custodial_guardian(db, actor, child) or may_manage_kita(actor, child.kita)):
        raise NotFoundError()
    query = select(AuditEvent).where(
        AuditEvent.object_type == "child",
        AuditEvent.object_id == str(child.id),
        AuditEvent.action.in_(DOCUMENTATION_READ_ACTIONS),
    )
    total = int(db.scalar(select(func.count()).select_from(query.subquery())) or 0)
    page = _page_number(page, total)
    events = db.scalars(
        query.order_by(AuditEvent.id.desc()).offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE)
    ).all()
    actor_ids = {e.actor_id for e in events if e.actor_id is not None}
    users = {u.id: u for u in db.scalars(select(User).where(User.id.in_(actor_ids)))}
    roles: dict[uuid.UUID, set[Role]] = {}
    for user_id, role in db.execute(
        select(Membership.user_id, Membership.role).where(
            Membership.user_id.in_(actor_ids), Membership.kita_id == child.kita_id
        )
    ):
        roles.setdefault(user_id, set()).add(role)
    guardians = set(
        db.scalars(
            select(GuardianLink.user_id).where(
                GuardianLink.child_id == child.id, GuardianLink.user_id.in_(actor_ids)
            )
        )
    )

    def role_of(user: User | None, glass: bool) -> str:
        held = roles.get(user.id, set()) if user is not None else set()
        if glass:
            return "provider_admin"
        if Role.LEADER in held:
            return "leader"
        if Role.EDUCATOR in held:
            return "educator"
        if user is not None and user.id in guardians:
            return "guardian"
        if user is not None and user.admin_of_provider_id == child.kita.provider_id:
            return "provider_admin"
        return "other"

    records = []
    for event in events:
        glass = event.detail.startswith("break_glass")
        user = users.get(event.actor_id) if event.actor_id else None
        records.append(
            ViewRecord(
                at=event.at,
                actor_id=event.actor_id,
                name=user.display_name if user else "",
                role=role_of(user, glass),
                action=event.action,
                break_glass=glass,
            )
        )
    return Page(records, page, total)


# --- development talks -----------------------------------------------------------------------


@dataclass(frozen=True)
class TalkInput:
    planned_at: datetime | None = None
    held_at: datetime | None = None
    notes: str = ""
    protocol: str = ""
    base_version: int = 0


@dataclass(frozen=True)
class TalkView:
    id: uuid.UUID
    child_id: uuid.UUID
    author_id: uuid.UUID
    author_name: str
    planned_at: datetime | None
    held_at: datetime | None
    notes: str
    protocol: str
    version: int
    created_at: datetime
    updated_at: datetime


def _talk_text(keys: KeyService, talk: DevelopmentTalk, column: str) -> str:
    ciphertext = talk.notes_ct if column == "notes" else talk.protocol_ct
    if ciphertext is None:
        return ""
    return decrypt_for_child(
        keys,
        child_id=talk.child_id,
        kita_id=talk.kita_id,
        table="development_talks",
        column=column,
        row_id=talk.id,
        ciphertext=ciphertext,
        key_version=talk.key_version,
    ).decode()


def _talk_view(db: Session, keys: KeyService, talk: DevelopmentTalk) -> TalkView:
    return TalkView(
        id=talk.id,
        child_id=talk.child_id,
        author_id=talk.author_id,
        author_name=_names(db, {talk.author_id}).get(talk.author_id, ""),
        planned_at=talk.planned_at,
        held_at=talk.held_at,
        notes=_talk_text(keys, talk, "notes"),
        protocol=_talk_text(keys, talk, "protocol"),
        version=talk.version,
        created_at=talk.created_at,
        updated_at=talk.updated_at,
    )


def _aware(value: datetime | None, name: str, errors: dict[str, object]) -> datetime | None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        errors[name] = _l("Please enter a date and time.")
        return None
    return value.astimezone(UTC) if value is not None else None


def save_talk(
    db: Session,
    *,
    actor: Actor,
    keys: KeyService,
    child: Child,
    talk_id: uuid.UUID,
    data: TalkInput,
    now: datetime | None = None,
) -> TalkView:
    """Create or change a development talk of the child (staff of the child; documentation
    consent needed). Notes and protocol are encrypted. Same rules as :func:`save_entry`:
    a repeated save changes nothing, an outdated ``base_version`` answers 409."""
    now = now or datetime.now(UTC)
    if documentation_access(db, actor, child, now=now) is not DocumentationAccess.STAFF:
        raise NotFoundError()
    talk = db.get(DevelopmentTalk, talk_id, with_for_update=True, populate_existing=True)
    if talk is not None and talk.child_id != child.id:
        raise NotFoundError()
    require_consent(db, child, ConsentPurpose.DOCUMENTATION)
    errors: dict[str, object] = {}
    planned_at = _aware(data.planned_at, "planned_at", errors)
    held_at = _aware(data.held_at, "held_at", errors)
    notes = _clean_multiline(data.notes, "notes", errors, max_length=TALK_TEXT_MAX)
    protocol = _clean_multiline(data.protocol, "protocol", errors, max_length=TALK_TEXT_MAX)
    if not errors and planned_at is None and held_at is None:
        errors["planned_at"] = _l("Please enter when the talk is planned or was held.")
    if held_at is not None and held_at > now + timedelta(days=1):
        errors["held_at"] = _l("Please enter a date that is not in the future.")
    if errors:
        raise ValidationError(errors)
    if talk is not None:
        same = (
            talk.planned_at == planned_at
            and talk.held_at == held_at
            and _talk_text(keys, talk, "notes") == notes
            and _talk_text(keys, talk, "protocol") == protocol
        )
        if same and data.base_version in (talk.version, talk.version - 1):
            return _talk_view(db, keys, talk)
        if data.base_version != talk.version:
            raise StaleEditError(talk.version)
        talk.version += 1
    else:
        if data.base_version:
            raise NotFoundError()
        talk = DevelopmentTalk(
            id=talk_id,
            child_id=child.id,
            kita_id=child.kita_id,
            author_id=actor.id,
            version=1,
            created_at=now,
            key_version=keys.data_key(child.id, KeyKind.GENERAL).version,
        )
        db.add(talk)
    talk.planned_at, talk.held_at, talk.updated_at = planned_at, held_at, now
    talk.notes_ct = talk.protocol_ct = None
    for column, value in (("notes", notes), ("protocol", protocol)):
        if value:
            ciphertext, talk.key_version = encrypt_for_child(
                keys,
                child_id=child.id,
                kita_id=child.kita_id,
                table="development_talks",
                column=column,
                row_id=talk.id,
                plaintext=value.encode(),
            )
            setattr(talk, f"{column}_ct", ciphertext)
    db.flush()
    audit.record(
        db,
        action="development_talk.saved",
        actor_id=actor.id,
        object_type="development_talk",
        object_id=talk.id,
        kita_id=child.kita_id,
        detail=f"version={talk.version}",
        at=now,
    )
    return _talk_view(db, keys, talk)


def list_talks(
    db: Session,
    *,
    actor: Actor,
    keys: KeyService,
    child: Child,
    now: datetime | None = None,
) -> list[TalkView]:
    """The child's talks, newest first, with notes and protocol (staff and break-glass;
    audited once as a read of the documentation)."""
    scope = documentation_access(db, actor, child, now=now)
    if scope not in (DocumentationAccess.STAFF, DocumentationAccess.BREAK_GLASS):
        raise NotFoundError()
    talks = db.scalars(
        select(DevelopmentTalk)
        .where(DevelopmentTalk.child_id == child.id)
        .order_by(
            func.coalesce(DevelopmentTalk.held_at, DevelopmentTalk.planned_at).desc(),
            DevelopmentTalk.id,
        )
    ).all()
    views = [_talk_view(db, keys, talk) for talk in talks]
    record_read(
        db,
        actor=actor,
        child=child,
        action="documentation.read",
        scope=scope,
        detail="talks",
        now=now,
    )
    return views


@dataclass(frozen=True)
class TalkPreparation:
    """Entries since the last talk, grouped by educational area (``None``: no area)."""

    child_id: uuid.UUID
    since: datetime | None
    groups: list[tuple[EducationalArea | None, list[EntryView]]]
    entry_count: int


def prepare_talk(
    db: Session,
    *,
    actor: Actor,
    keys: KeyService,
    child: Child,
    now: datetime | None = None,
) -> TalkPreparation:
    """The entries written since the last talk that was held (all entries before the first
    talk), grouped by area in the areas' order; an entry with several areas appears in each.
    Staff and break-glass only; audited once."""
    now = now or datetime.now(UTC)
    scope = documentation_access(db, actor, child, now=now)
    if scope not in (DocumentationAccess.STAFF, DocumentationAccess.BREAK_GLASS):
        raise NotFoundError()
    since = db.scalars(
        select(DevelopmentTalk.held_at)
        .where(DevelopmentTalk.child_id == child.id, DevelopmentTalk.held_at <= now)
        .order_by(DevelopmentTalk.held_at.desc())
        .limit(1)
    ).first()
    query = select(DocumentationEntry).where(DocumentationEntry.child_id == child.id)
    if since is not None:
        query = query.where(DocumentationEntry.created_at > since)
    entries = db.scalars(
        query.order_by(DocumentationEntry.observed_on, DocumentationEntry.created_at)
    ).all()
    views = _views(db, keys, entries)
    grouped: dict[EducationalArea | None, list[EntryView]] = {}
    for view in views:
        for area in view.areas or (None,):
            grouped.setdefault(area, []).append(view)
    order: list[EducationalArea | None] = [*EducationalArea, None]
    record_read(
        db,
        actor=actor,
        child=child,
        action="documentation.list",
        scope=scope,
        detail="talk_preparation",
        now=now,
    )
    return TalkPreparation(
        child_id=child.id,
        since=since,
        groups=[(area, grouped[area]) for area in order if area in grouped],
        entry_count=len(views),
    )
