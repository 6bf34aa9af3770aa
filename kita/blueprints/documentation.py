"""Development documentation in the browser: group overviews, a child's timeline, entry forms,
photos, development talks and templates for staff; consents on paper for leaders; consents,
shared entries and "who viewed" for families; break-glass reading for provider admins.

Every view loads its objects through ``kita.access`` (404 when the actor may not see them) and
ends in the documentation services, which encrypt, check consent and audit. GET views that
decrypt documentation write an audit row, so they carry ``audited_read`` under their guard.
Pages that show decrypted content with an error status commit first (``_keep_reads``): the
request would otherwise roll the audit rows of what was shown back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_babel import get_timezone, ngettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response as BaseResponse

from kita import access
from kita.access import Action, DocumentationAccess
from kita.blobs import BlobStore
from kita.errors import NotFoundError, ValidationError
from kita.forms import FormReader, parse_uuid
from kita.models.accounts import Role, User
from kita.models.documentation import (
    Consent,
    ConsentMethod,
    ConsentPurpose,
    DocumentationEntry,
    DocumentationTemplate,
    EducationalArea,
    EntryKind,
    EntryStatus,
    TemplateFieldType,
)
from kita.models.organisation import Child, Kita
from kita.services import consent, documentation, organisation, photos
from kita.services.consent import ConsentRequiredError
from kita.services.documentation import (
    EntryInput,
    EntryView,
    StaleEditError,
    TalkInput,
    TalkView,
    TemplateFieldInput,
    TemplateInput,
    TemplateView,
)
from kita.web import (
    audited_read,
    commit,
    get_db,
    login_required,
    manager_required,
    provider_admin_required,
    require_actor,
    state,
)

bp = Blueprint("documentation", __name__, url_prefix="/documentation")

# Room for the multipart envelope around the most photos one entry can hold.
UPLOAD_LIMIT = photos.MAX_PHOTOS_PER_ENTRY * photos.MAX_UPLOAD_BYTES + 1024 * 1024
TEMPLATE_ROW_CHOICES = (5, 10, documentation.TEMPLATE_FIELDS_MAX)
PURPOSES = tuple(purpose.value for purpose in ConsentPurpose)
AREAS = tuple(area.value for area in EducationalArea)
FIELD_TYPES = tuple(kind.value for kind in TemplateFieldType)

READ_ACTION_LABELS = {
    "documentation.list": _l("Looked at the list of entries"),
    "documentation.read": _l("Read an entry"),
    "documentation.photo_read": _l("Looked at a photo"),
    "documentation.export": _l("Exported the documentation"),
}
FIELD_TYPE_LABELS = {
    TemplateFieldType.TEXT: _l("Text"),
    TemplateFieldType.CHOICE: _l("Choice"),
    TemplateFieldType.SCALE: _l("Scale from 1 to 5"),
}
METHOD_LABELS = {ConsentMethod.APP: _l("in the app"), ConsentMethod.PAPER: _l("on paper")}


@bp.url_value_preprocessor
def _upload_limit(endpoint: str | None, _values: dict[str, Any] | None) -> None:
    # Runs before the CSRF check, which parses (and so size-checks) the multipart body.
    if endpoint == "documentation.photo_upload":
        request.max_content_length = UPLOAD_LIMIT


@bp.context_processor
def _labels() -> dict[str, Any]:
    return {
        "area_labels": documentation.AREA_LABELS,
        "disposition_labels": documentation.DISPOSITION_LABELS,
        "kind_labels": documentation.KIND_LABELS,
        "status_labels": documentation.STATUS_LABELS,
        "viewer_role_labels": documentation.VIEWER_ROLE_LABELS,
        "read_action_labels": READ_ACTION_LABELS,
        "field_type_labels": FIELD_TYPE_LABELS,
        "purpose_labels": consent.PURPOSE_LABELS,
        "purpose_texts": consent.PURPOSE_TEXTS,
        "method_labels": METHOD_LABELS,
        "staff_scope": DocumentationAccess.STAFF,
        "break_glass_scope": DocumentationAccess.BREAK_GLASS,
    }


# --- helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentState:
    """One purpose's consent for display: the active consent, or the last withdrawn one."""

    purpose: ConsentPurpose
    active: Consent | None
    withdrawn: Consent | None


@dataclass(frozen=True)
class ChildContext:
    """What every documentation page of a child shows around its content."""

    child: Child
    scope: DocumentationAccess
    #: Why the documentation is closed for new writes (None: open).
    closed: object | None
    #: Why photos cannot be added (None: they can).
    photos_closed: object | None
    #: End of the provider admin's break-glass access (shown as a banner).
    break_glass_until: datetime | None
    is_leader: bool
    consents: dict[ConsentPurpose, ConsentState]

    @property
    def writable(self) -> bool:
        return self.scope is DocumentationAccess.STAFF and self.closed is None


def _keys() -> Any:
    return state().keys


def _blobs() -> BlobStore:
    return BlobStore(state().config.blob_dir)


def _zone() -> ZoneInfo:
    return ZoneInfo(str(get_timezone()))


def _today() -> date:
    return datetime.now(_zone()).date()


def _page_number() -> int:
    raw = request.args.get("page", "1")
    return int(raw) if raw.isdigit() and len(raw) < 7 else 1


def _confirmed() -> bool:
    return request.form.get("confirm") == "yes"


def _keep_reads() -> None:
    """Commit the audit rows of what an error page shows: the request boundary rolls back
    every answer of 400 and more. Callers reach this only after the services refused before
    writing, so nothing else is pending."""
    commit()


def _done(message: str, endpoint: str, **values: Any) -> BaseResponse:
    flash(message, "success")
    return redirect(url_for(endpoint, **values))


def _consent_states(child: Child) -> dict[ConsentPurpose, ConsentState]:
    history = consent.consent_history(get_db(), child)
    states: dict[ConsentPurpose, ConsentState] = {}
    for purpose in ConsentPurpose:
        mine = [c for c in history if c.purpose is purpose]
        active = next((c for c in mine if c.withdrawn_at is None), None)
        ended = [c for c in mine if c.withdrawn_at is not None]
        last = max(ended, key=lambda c: c.withdrawn_at or c.given_at) if ended else None
        states[purpose] = ConsentState(purpose, active, None if active else last)
    return states


def _child_context(child: Child, scope: DocumentationAccess) -> ChildContext:
    db, actor = get_db(), require_actor()
    states = _consent_states(child)

    def closed(purpose: ConsentPurpose) -> object | None:
        return None if states[purpose].active else ConsentRequiredError(purpose).message

    grant = None
    if scope is DocumentationAccess.BREAK_GLASS:
        grant = access.active_break_glass(db, actor, child)
    photos_closed = closed(ConsentPurpose.DOCUMENTATION) or closed(
        ConsentPurpose.PHOTOS_IN_DOCUMENTATION
    )
    return ChildContext(
        child=child,
        scope=scope,
        closed=closed(ConsentPurpose.DOCUMENTATION),
        photos_closed=photos_closed,
        break_glass_until=grant.expires_at if grant else None,
        is_leader=actor.has_role(child.kita_id, Role.LEADER),
        consents=states,
    )


def _reader_child(child_id: uuid.UUID) -> tuple[Child, DocumentationAccess]:
    """A child whose whole documentation the actor reads (staff, break-glass); else 404.
    Families read the shared entries on their own page."""
    child, scope = access.get_documentation_child(get_db(), require_actor(), child_id)
    if scope is DocumentationAccess.FAMILY:
        raise NotFoundError()
    return child, scope


# --- overview --------------------------------------------------------------------------------


@bp.route("/")
@login_required
def index() -> Any:
    """The groups whose documentation the actor writes, and the Kitas whose templates she
    manages."""
    db, actor = get_db(), require_actor()
    groups = db.scalars(access.documentation_groups(actor)).all()
    kitas = db.scalars(access.managed_kitas(actor)).all()
    return render_template("documentation/index.html", groups=groups, kitas=kitas)


@bp.route("/groups/<uuid:group_id>")
@login_required
def group(group_id: uuid.UUID) -> Any:
    """A group's children with the state of their consents; 404 unless the actor is an
    educator of the group or a leader of its Kita."""
    db = get_db()
    group = access.get_documentation_group(db, require_actor(), group_id)
    page = organisation.list_children(db, kita=group.kita, group_id=group.id, page=_page_number())
    rows = [(row.child, _consent_states(row.child)) for row in page.items]
    return render_template("documentation/group.html", group=group, page=page, rows=rows)


# --- timeline and entries --------------------------------------------------------------------


@bp.route("/children/<uuid:child_id>")
@login_required
@audited_read
def timeline(child_id: uuid.UUID) -> Any:
    """The child's entries, newest first, filtered by area, author and period (audited)."""
    db, actor = get_db(), require_actor()
    child, scope = _reader_child(child_id)
    reader = FormReader(request.args)
    area = reader.choice("area", AREAS, required=False)
    author_id = reader.uuid("author")
    since, until = reader.date("since"), reader.date("until")
    filters = {name: request.args.get(name, "").strip()[:64] for name in ("area", "author")}
    filters |= {name: request.args.get(name, "").strip()[:10] for name in ("since", "until")}
    context: dict[str, Any] = {
        "ctx": _child_context(child, scope),
        "authors": [
            (str(user.id), user.display_name)
            for user in db.scalars(access.documentation_authors(child))
        ],
        "filters": filters,
        "filtered": any(filters.values()),
    }
    try:
        reader.check()
        page = documentation.list_timeline(
            db,
            actor=actor,
            keys=_keys(),
            child=child,
            area=area,
            author_id=author_id,
            since=since,
            until=until,
            page=_page_number(),
        )
    except ValidationError as error:
        empty = organisation.Page[EntryView]([], 1, 0)
        return render_template(
            "documentation/timeline.html",
            page=empty,
            errors=error.fields,
            message=error.message,
            **context,
        ), error.status
    return render_template("documentation/timeline.html", page=page, errors={}, **context)


def _templates(kita: Kita) -> list[TemplateView]:
    """All of the Kita's templates (archived ones too, for entries that still use them)."""
    documentation.ensure_default_templates(get_db(), kita)
    return documentation.list_templates(get_db(), kita, include_archived=True)


def _pick(templates: Sequence[TemplateView], template_id: uuid.UUID | None) -> TemplateView | None:
    return next((t for t in templates if t.id == template_id), None)


def _template_values(template: TemplateView | None, form: MultiDict[str, str]) -> dict[str, Any]:
    """The template's fields from the form (``tv_<name>``); the service checks them."""
    values: dict[str, Any] = {}
    for spec in template.fields if template else ():
        raw = form.get(f"tv_{spec.name}", "").strip()
        if spec.type is TemplateFieldType.SCALE and raw.isdigit() and len(raw) < 3:
            values[spec.name] = int(raw)
        else:
            values[spec.name] = raw
    return values


def _form_from_entry(entry: EntryView, template: TemplateView | None) -> MultiDict[str, str]:
    pairs: list[tuple[str, str]] = [
        ("kind", entry.kind.value),
        ("status", entry.status.value),
        ("title", entry.title),
        ("text", entry.text),
        ("observed_on", entry.observed_on.isoformat()),
        ("base_version", str(entry.version)),
        ("template_id", str(template.id) if template else ""),
    ]
    pairs += [("areas", area.value) for area in entry.areas]
    pairs += [("dispositions", item.value) for item in entry.dispositions]
    if template is not None and template.id == entry.template_id:
        pairs += [(f"tv_{name}", str(value)) for name, value in entry.template_values.items()]
    return MultiDict(pairs)


def _render_entry_form(
    ctx: ChildContext,
    entry_id: uuid.UUID | None,
    templates: Sequence[TemplateView],
    template: TemplateView | None,
    form: MultiDict[str, str],
    status: int = 200,
    **context: Any,
) -> tuple[str, int]:
    context.setdefault("errors", {})
    offered = [t for t in templates if not t.archived or (template and t.id == template.id)]
    stored = get_db().get(DocumentationEntry, entry_id) if entry_id else None
    context["final_locked"] = stored is not None and stored.status is EntryStatus.FINAL
    return render_template(
        "documentation/entry_form.html",
        ctx=ctx,
        entry_id=entry_id,
        templates=offered,
        chosen=template,
        form=form,
        **context,
    ), status


def _save_entry_form(
    ctx: ChildContext, entry_id: uuid.UUID | None, templates: Sequence[TemplateView]
) -> Any:
    """Save the posted entry form: a new entry (its id made when the form was rendered, so a
    repeated submit stores it once) or a change based on ``base_version``."""
    db, actor, form = get_db(), require_actor(), request.form
    reader = FormReader(form)
    new = entry_id is None
    target = reader.uuid("entry_id", required=True) if new else entry_id
    raw_version = form.get("base_version", "0").strip()
    base_version = int(raw_version) if raw_version.isdigit() and len(raw_version) < 9 else 0
    template_id = reader.uuid("template_id")
    template = _pick(templates, template_id)
    data = EntryInput(
        child_id=ctx.child.id,
        kind=form.get("kind", ""),
        status=form.get("status", ""),
        title=reader.text("title", max_length=documentation.TITLE_MAX),
        text=reader.text("text", max_length=documentation.TEXT_MAX),
        areas=form.getlist("areas"),
        dispositions=form.getlist("dispositions"),
        template_id=template_id,
        template_values=_template_values(template, form),
        observed_on=reader.date("observed_on"),
        base_version=0 if new else base_version,
    )
    try:
        reader.check()
        assert target is not None  # noqa: S101 (reader.check() refused a missing id)
        result = documentation.save_entry(db, actor=actor, keys=_keys(), entry_id=target, data=data)
    except StaleEditError as error:
        assert target is not None  # noqa: S101
        current = documentation.read_entry(db, actor=actor, keys=_keys(), entry_id=target)
        _keep_reads()
        # Keep what the user typed; saving again now replaces the other version knowingly.
        kept = form.copy()
        kept["base_version"] = str(current.version)
        return _render_entry_form(
            ctx, entry_id, templates, template, kept, error.status, stale=current
        )
    except ValidationError as error:
        return _render_entry_form(
            ctx,
            entry_id,
            templates,
            template,
            form,
            error.status,
            errors=error.fields,
            message=error.message,
        )
    message = _("The entry was saved.") if result.changed else _("Nothing was changed.")
    return _done(message, "documentation.entry", entry_id=result.entry.id)


@bp.route("/children/<uuid:child_id>/entries/new", methods=["GET", "POST"])
@login_required
@audited_read
def entry_new(child_id: uuid.UUID) -> Any:
    """Write a new observation or learning story (the child's staff; consent needed)."""
    db = get_db()
    child, scope = access.get_documentation_child(db, require_actor(), child_id, write=True)
    ctx = _child_context(child, scope)
    if ctx.closed is not None:
        return render_template("documentation/entry_form.html", ctx=ctx, entry_id=None), 403
    templates = _templates(child.kita)
    if request.method == "POST":
        return _save_entry_form(ctx, None, templates)
    template = _pick(templates, parse_uuid(request.args.get("template")))
    form = MultiDict(
        {
            "entry_id": str(uuid.uuid4()),
            "kind": EntryKind.OBSERVATION.value,
            "status": EntryStatus.DRAFT.value,
            "observed_on": _today().isoformat(),
            "template_id": str(template.id) if template else "",
        }
    )
    return _render_entry_form(ctx, None, templates, template, form)


@bp.route("/entries/<uuid:entry_id>/edit", methods=["GET", "POST"])
@login_required
@audited_read
def entry_edit(entry_id: uuid.UUID) -> Any:
    """Change an entry; a change based on an outdated version shows the other version and
    keeps what the user typed (409)."""
    db, actor = get_db(), require_actor()
    entry, scope = access.get_documentation_entry(db, actor, entry_id, write=True)
    ctx = _child_context(entry.child, scope)
    if ctx.closed is not None:
        return render_template("documentation/entry_form.html", ctx=ctx, entry_id=entry_id), 403
    templates = _templates(entry.child.kita)
    if request.method == "POST":
        return _save_entry_form(ctx, entry.id, templates)
    view = documentation.read_entry(db, actor=actor, keys=_keys(), entry_id=entry_id)
    chosen = view.template_id
    if "template" in request.args:
        chosen = parse_uuid(request.args["template"])
    template = _pick(templates, chosen)
    return _render_entry_form(ctx, entry.id, templates, template, _form_from_entry(view, template))


def _render_entry(entry_id: uuid.UUID, status: int = 200, **context: Any) -> tuple[str, int]:
    """The entry page (audited read); families see only what was shared with them."""
    db, actor = get_db(), require_actor()
    entry, scope = access.get_documentation_entry(db, actor, entry_id)
    view = documentation.read_entry(db, actor=actor, keys=_keys(), entry_id=entry_id)
    template = db.get(DocumentationTemplate, view.template_id) if view.template_id else None
    context.setdefault("errors", {})
    page = render_template(
        "documentation/entry.html",
        ctx=_child_context(entry.child, scope),
        entry=view,
        template=documentation.template_view(template) if template else None,
        upload_id=uuid.uuid4(),
        max_photos=photos.MAX_PHOTOS_PER_ENTRY,
        **context,
    )
    if status >= 400:
        _keep_reads()
    return page, status


@bp.route("/entries/<uuid:entry_id>")
@login_required
@audited_read
def entry(entry_id: uuid.UUID) -> Any:
    """One entry with its photos; staff share it with the family and add photos here."""
    return _render_entry(entry_id)


@bp.route("/entries/<uuid:entry_id>/history")
@login_required
@audited_read
def entry_history(entry_id: uuid.UUID) -> Any:
    """Every saved version of the entry, newest first (staff and break-glass; audited)."""
    db, actor = get_db(), require_actor()
    entry, scope = access.get_documentation_entry(db, actor, entry_id)
    revisions = documentation.list_revisions(db, actor=actor, keys=_keys(), entry_id=entry_id)
    return render_template(
        "documentation/entry_history.html",
        ctx=_child_context(entry.child, scope),
        entry=entry,
        revisions=revisions,
    )


@bp.route("/entries/<uuid:entry_id>/share", methods=["POST"])
@login_required
def entry_share(entry_id: uuid.UUID) -> Any:
    """Share a final entry with the family (``shared=yes``) or stop sharing it (``no``)."""
    db, actor = get_db(), require_actor()
    access.get_documentation_entry(db, actor, entry_id, write=True)
    reader = FormReader(request.form)
    choice = reader.choice("shared", ("yes", "no"))
    try:
        reader.check()
        documentation.share_entry(db, actor=actor, entry_id=entry_id, shared=choice == "yes")
    except ValidationError as error:
        return _render_entry(entry_id, error.status, errors=error.fields, message=error.message)
    if choice == "yes":
        return _done(
            _("The entry is now shared with the family."), "documentation.entry", entry_id=entry_id
        )
    return _done(
        _("The family no longer sees this entry."), "documentation.entry", entry_id=entry_id
    )


def _upload_problem(name: str, error: ValidationError) -> str:
    message = error.fields.get("file") or error.fields.get("photo_id") or error.message
    # Translators: a file name, then why that uploaded file was not added.
    return _("%(file)s: %(problem)s", file=name, problem=message)


@bp.route("/entries/<uuid:entry_id>/photos", methods=["POST"])
@login_required
def photo_upload(entry_id: uuid.UUID) -> Any:
    """Add up to 10 photos at once (multipart ``files``). The form's ``upload_id`` names the
    photos, so sending the same form twice stores them once. Photos that fail are listed on the
    entry page; the others are kept."""
    db, actor = get_db(), require_actor()
    access.get_documentation_entry(db, actor, entry_id, write=True)
    reader = FormReader(request.form)
    upload_id = reader.uuid("upload_id", required=True)
    files = [f for f in request.files.getlist("files") if f.filename or f.content_length]
    if not files:
        reader.errors["files"] = _("Please choose at least one photo.")
    try:
        reader.check()
    except ValidationError as error:
        return _render_entry(entry_id, error.status, errors=error.fields, message=error.message)
    assert upload_id is not None  # noqa: S101 (reader.check() refused a missing id)
    added, problems = 0, []
    for index, upload in enumerate(files):
        name = (upload.filename or _("Photo %(number)d", number=index + 1))[:80]
        if index >= photos.MAX_PHOTOS_PER_ENTRY:
            problems.append(
                _(
                    "%(file)s: at most %(count)d photos can be sent at once.",
                    file=name,
                    count=photos.MAX_PHOTOS_PER_ENTRY,
                )
            )
            continue
        try:
            _photo, created = photos.add_photo(
                db,
                actor=actor,
                keys=_keys(),
                blobs=_blobs(),
                entry_id=entry_id,
                photo_id=uuid.uuid5(upload_id, str(index)),
                data=upload.read(photos.MAX_UPLOAD_BYTES + 1),
            )
        except ValidationError as error:
            problems.append(_upload_problem(name, error))
            continue
        added += int(created)
    summary = ngettext("%(num)d photo was added.", "%(num)d photos were added.", added)
    if problems:
        return _render_entry(
            entry_id, 422, photo_problems=problems, message=summary if added else None
        )
    return _done(summary, "documentation.entry", entry_id=entry_id)


@bp.route("/photos/<uuid:photo_id>")
@login_required
@audited_read
def photo(photo_id: uuid.UUID) -> Any:
    """A photo as JPEG for whoever may read its entry (audited, never cached)."""
    data = photos.read_photo(
        get_db(), actor=require_actor(), keys=_keys(), blobs=_blobs(), photo_id=photo_id
    )
    response = Response(data, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "no-store, private"
    return response


# --- development talks -----------------------------------------------------------------------


def _local_input(value: datetime | None) -> str:
    """A UTC datetime as the value of a ``datetime-local`` field in the Kita's time zone."""
    return value.astimezone(_zone()).strftime("%Y-%m-%dT%H:%M") if value else ""


def _local_datetime(reader: FormReader, name: str) -> datetime | None:
    raw = reader.form.get(name, "").strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw) if len(raw) <= 32 else None
    except ValueError:
        value = None
    if value is None or value.tzinfo is not None:
        reader.errors[name] = _("Please enter a date and time.")
        return None
    return value.replace(tzinfo=_zone()).astimezone(UTC)


def _talk_form(talk: TalkView | None) -> MultiDict[str, str]:
    if talk is None:
        return MultiDict({"talk_id": str(uuid.uuid4()), "base_version": "0"})
    return MultiDict(
        {
            "talk_id": str(talk.id),
            "base_version": str(talk.version),
            "planned_at": _local_input(talk.planned_at),
            "held_at": _local_input(talk.held_at),
            "notes": talk.notes,
            "protocol": talk.protocol,
        }
    )


def _render_talks(
    ctx: ChildContext,
    talks: list[TalkView],
    form: MultiDict[str, str] | None,
    status: int = 200,
    **context: Any,
) -> tuple[str, int]:
    preparation = documentation.prepare_talk(
        get_db(), actor=require_actor(), keys=_keys(), child=ctx.child
    )
    editing = parse_uuid(form.get("talk_id")) if form else None
    context.setdefault("errors", {})
    page = render_template(
        "documentation/talks.html",
        ctx=ctx,
        talks=talks,
        preparation=preparation,
        form=form,
        editing=next((t for t in talks if t.id == editing), None),
        **context,
    )
    if status >= 400:
        _keep_reads()
    return page, status


@bp.route("/children/<uuid:child_id>/talks", methods=["GET", "POST"])
@login_required
@audited_read
def talks(child_id: uuid.UUID) -> Any:
    """The development talk: the entries since the last talk grouped by area, the talks with
    their notes and protocols, and a form to plan one or write its protocol (``?talk=<id>``)."""
    db, actor = get_db(), require_actor()
    child, scope = _reader_child(child_id)
    ctx = _child_context(child, scope)
    if request.method == "POST":
        if scope is not DocumentationAccess.STAFF:
            raise NotFoundError()
        return _save_talk(ctx)
    talk_views = documentation.list_talks(db, actor=actor, keys=_keys(), child=child)
    form = None
    if ctx.writable:
        chosen = parse_uuid(request.args.get("talk"))
        form = _talk_form(next((t for t in talk_views if t.id == chosen), None))
    return _render_talks(ctx, talk_views, form)


def _save_talk(ctx: ChildContext) -> Any:
    db, actor = get_db(), require_actor()
    reader = FormReader(request.form)
    talk_id = reader.uuid("talk_id", required=True)
    raw_version = request.form.get("base_version", "0").strip()
    data = TalkInput(
        planned_at=_local_datetime(reader, "planned_at"),
        held_at=_local_datetime(reader, "held_at"),
        notes=reader.text("notes", max_length=documentation.TALK_TEXT_MAX),
        protocol=reader.text("protocol", max_length=documentation.TALK_TEXT_MAX),
        base_version=int(raw_version) if raw_version.isdigit() and len(raw_version) < 9 else 0,
    )
    try:
        reader.check()
        assert talk_id is not None  # noqa: S101 (reader.check() refused a missing id)
        documentation.save_talk(
            db, actor=actor, keys=_keys(), child=ctx.child, talk_id=talk_id, data=data
        )
    except StaleEditError as error:
        talk_views = documentation.list_talks(db, actor=actor, keys=_keys(), child=ctx.child)
        kept = request.form.copy()
        kept["base_version"] = str(error.current_version)
        stale = next((t for t in talk_views if t.id == talk_id), None)
        return _render_talks(ctx, talk_views, kept, error.status, stale=stale)
    except ValidationError as error:
        talk_views = documentation.list_talks(db, actor=actor, keys=_keys(), child=ctx.child)
        return _render_talks(
            ctx,
            talk_views,
            request.form,
            error.status,
            errors=error.fields,
            message=error.message,
        )
    return _done(_("The talk was saved."), "documentation.talks", child_id=ctx.child.id)


# --- consents --------------------------------------------------------------------------------


def _render_consents(child: Child, status: int = 200, **context: Any) -> tuple[str, int]:
    db = get_db()
    guardians = [link for link in organisation.list_guardians(db, child) if link.has_custody]
    history = consent.consent_history(db, child)
    context.setdefault("errors", {})
    context.setdefault("form", {})
    return render_template(
        "documentation/consents.html",
        child=child,
        states=_consent_states(child),
        history=history,
        names=_names(db, _people(history, guardians)),
        guardians=guardians,
        today=_today(),
        **context,
    ), status


def _people(history: Iterable[Consent], guardians: Iterable[Any]) -> set[uuid.UUID]:
    ids = {link.user_id for link in guardians}
    for item in history:
        ids |= {i for i in (item.given_by_id, item.recorded_by_id, item.withdrawn_by_id) if i}
    return ids


def _names(db: Session, user_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    return {uid: user.display_name for uid in user_ids if (user := db.get(User, uid))}


def _signed_at(signed_on: date) -> datetime:
    """When a paper form was signed: now for today, else noon of that day in the Kita's zone."""
    if signed_on >= _today():
        return datetime.now(UTC)
    return datetime.combine(signed_on, time(12), tzinfo=_zone()).astimezone(UTC)


@bp.route("/children/<uuid:child_id>/consents", methods=["GET", "POST"])
@login_required
def consents(child_id: uuid.UUID) -> Any:
    """The consent history of a child, and the leader's record of a consent given or withdrawn
    on paper (a withdrawal takes effect at once). 404 for everyone but the Kita's leaders."""
    db, actor = get_db(), require_actor()
    child = access.get_consent_records_child(db, actor, child_id)
    if request.method == "GET":
        return _render_consents(child)
    reader = FormReader(request.form)
    action = reader.choice("action", ("give", "withdraw"))
    purpose = reader.choice("purpose", PURPOSES)
    signed_on, guardian_id = None, None
    if action == "give":
        signed_on = reader.date("signed_on")
        guardian_id = reader.uuid("guardian_id")
        if signed_on is None and "signed_on" not in reader.errors:
            reader.errors["signed_on"] = _("This field is required.")
        elif signed_on is not None and not date(2000, 1, 1) <= signed_on <= _today():
            reader.errors["signed_on"] = _("Please enter a date that is not in the future.")
    elif action == "withdraw" and not _confirmed():
        reader.errors["confirm"] = _("Please tick the box to confirm.")
    try:
        reader.check()
        assert purpose is not None  # noqa: S101 (reader.check() refused a missing choice)
        if action == "give":
            assert signed_on is not None  # noqa: S101
            consent.give_consent(
                db,
                actor=actor,
                child=child,
                purpose=purpose,
                method=ConsentMethod.PAPER,
                guardian_id=guardian_id,
                now=_signed_at(signed_on),
            )
        else:
            consent.withdraw_consent(
                db, actor=actor, child=child, purpose=purpose, method=ConsentMethod.PAPER
            )
    except ValidationError as error:
        return _render_consents(
            child,
            error.status,
            errors=error.fields,
            message=error.message,
            form=request.form,
            failed=action,
        )
    message = (
        _("The consent was recorded.") if action == "give" else _("The withdrawal was recorded.")
    )
    return _done(message, "documentation.consents", child_id=child.id)


# --- families --------------------------------------------------------------------------------


def _render_family(child: Child, status: int = 200, **context: Any) -> tuple[str, int]:
    """The family's page of a child: consents, and (for guardians with custody) the shared
    entries, audited."""
    db, actor = get_db(), require_actor()
    custodial = access.is_custodial_guardian(db, actor, child)
    page = None
    if custodial:
        page = documentation.list_shared_for_family(
            db, actor=actor, keys=_keys(), child=child, page=_page_number()
        )
    context.setdefault("errors", {})
    rendered = render_template(
        "documentation/family.html",
        child=child,
        custodial=custodial,
        states=_consent_states(child),
        page=page,
        **context,
    )
    if status >= 400:
        _keep_reads()
    return rendered, status


@bp.route("/children/<uuid:child_id>/family")
@login_required
@audited_read
def family(child_id: uuid.UUID) -> Any:
    """A parent's page of their child; 404 for everyone who is not the child's guardian."""
    return _render_family(access.get_guardian_child(get_db(), require_actor(), child_id))


@bp.route("/children/<uuid:child_id>/family/consents", methods=["POST"])
@login_required
def family_consent(child_id: uuid.UUID) -> Any:
    """A parent with custody gives or withdraws a consent; both take effect at once. A
    withdrawal needs the confirmation box. Parents without custody get 403."""
    db, actor = get_db(), require_actor()
    child = access.get_guardian_child(db, actor, child_id)
    reader = FormReader(request.form)
    action = reader.choice("action", ("give", "withdraw"))
    purpose = reader.choice("purpose", PURPOSES)
    if action == "withdraw" and not _confirmed():
        reader.errors["confirm"] = _("Please tick the box to confirm.")
    try:
        reader.check()
        assert purpose is not None  # noqa: S101 (reader.check() refused a missing choice)
        if action == "give":
            consent.give_consent(db, actor=actor, child=child, purpose=purpose)
        else:
            consent.withdraw_consent(db, actor=actor, child=child, purpose=purpose)
    except ValidationError as error:
        return _render_family(
            child, error.status, errors=error.fields, message=error.message, failed=purpose
        )
    if action == "give":
        message = _("Thank you: your consent applies from now on.")
    else:
        message = _("Your consent was withdrawn. It applies from now on.")
    return _done(message, "documentation.family", child_id=child.id)


@bp.route("/children/<uuid:child_id>/family/views")
@login_required
def family_views(child_id: uuid.UUID) -> Any:
    """Who read the child's documentation and when, newest first (guardians with custody)."""
    db, actor = get_db(), require_actor()
    child = access.get_guardian_child(db, actor, child_id)
    page = documentation.who_viewed(db, actor=actor, child=child, page=_page_number())
    return render_template("documentation/family_views.html", child=child, page=page)


# --- break-glass -----------------------------------------------------------------------------


@bp.route("/children/<uuid:child_id>/break-glass", methods=["GET", "POST"])
@provider_admin_required
def break_glass(child_id: uuid.UUID) -> Any:
    """A provider admin records why she must read a child's documentation, then reads it (not
    changes it) for one hour; both are logged and shown to the family."""
    db, actor = get_db(), require_actor()
    child = access.get_break_glass_child(db, actor, child_id)
    context: dict[str, Any] = {
        "child": child,
        "grant": access.active_break_glass(db, actor, child),
        "minimum": documentation.BREAK_GLASS_REASON_MIN,
        "maximum": documentation.BREAK_GLASS_REASON_MAX,
    }
    if request.method == "GET":
        return render_template("documentation/break_glass.html", errors={}, form={}, **context)
    try:
        grant = documentation.break_glass(
            db, actor=actor, keys=_keys(), child=child, reason=request.form.get("reason", "")
        )
    except ValidationError as error:
        return render_template(
            "documentation/break_glass.html",
            errors=error.fields,
            message=error.message,
            form=request.form,
            **context,
        ), error.status
    flash(
        _(
            "You can read this documentation until %(time)s. Every page you open is logged.",
            time=grant.expires_at.astimezone(_zone()).strftime("%H:%M"),
        ),
        "success",
    )
    return redirect(url_for("documentation.timeline", child_id=child.id))


# --- templates -------------------------------------------------------------------------------


@bp.route("/kitas/<uuid:kita_id>/templates")
@manager_required
@audited_read  # not a read of documentation, but it creates the shipped templates once
def templates(kita_id: uuid.UUID) -> Any:
    """The Kita's templates, archived ones included (leaders and provider admins)."""
    db = get_db()
    kita = access.get_kita(db, require_actor(), kita_id, Action.MANAGE)
    return render_template(
        "documentation/templates.html", kita=kita, templates=_templates(kita), errors={}
    )


def _template_rows() -> int:
    raw = request.values.get("rows", "")
    wanted = int(raw) if raw.isdigit() and len(raw) < 3 else 0
    return next((n for n in TEMPLATE_ROW_CHOICES if n >= wanted), TEMPLATE_ROW_CHOICES[-1])


def _template_input(reader: FormReader, rows: int) -> tuple[TemplateInput, list[int]]:
    """The template from the form; blank rows are skipped. Also returns each field's row
    number, to show the service's errors (``fields.<index>.<part>``) at the right row."""
    fields: list[TemplateFieldInput] = []
    used: list[int] = []
    for row in range(1, rows + 1):
        label = reader.text(f"label_{row}", max_length=documentation.TEMPLATE_LABEL_MAX)
        if not label:
            continue
        raw_options = reader.form.get(f"options_{row}", "")[:4000]
        options = [line.strip() for line in raw_options.splitlines() if line.strip()]
        fields.append(
            TemplateFieldInput(
                name=f"field_{len(fields) + 1}",
                type=reader.form.get(f"type_{row}", ""),
                label=label,
                options=options,
                required=reader.checkbox(f"required_{row}"),
            )
        )
        used.append(row)
    data = TemplateInput(
        name=reader.text("name", max_length=documentation.TEMPLATE_NAME_MAX),
        area=reader.choice("area", AREAS, required=False),
        fields=fields,
    )
    return data, used


def _row_errors(fields: dict[str, object], used: list[int]) -> dict[str, object]:
    errors: dict[str, object] = {}
    for key, message in fields.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "fields" and parts[1].isdigit():
            index = int(parts[1])
            row = used[index] if index < len(used) else 1
            errors[f"{parts[2]}_{row}"] = message
        else:
            errors[key] = message
    return errors


@bp.route("/kitas/<uuid:kita_id>/templates/new", methods=["GET", "POST"])
@manager_required
def template_new(kita_id: uuid.UUID) -> Any:
    """Create a template with text, choice and scale fields (``?rows=`` offers more rows)."""
    db, actor = get_db(), require_actor()
    kita = access.get_kita(db, actor, kita_id, Action.MANAGE)
    rows = _template_rows()
    context = {"kita": kita, "rows": rows, "row_choices": TEMPLATE_ROW_CHOICES}
    if request.method == "GET":
        return render_template("documentation/template_form.html", errors={}, form={}, **context)
    reader = FormReader(request.form)
    data, used = _template_input(reader, rows)
    try:
        reader.check()
        documentation.create_template(db, actor=actor, kita=kita, data=data)
    except ValidationError as error:
        return render_template(
            "documentation/template_form.html",
            errors=_row_errors(error.fields, used),
            message=error.message,
            form=request.form,
            **context,
        ), error.status
    return _done(_("The template was created."), "documentation.templates", kita_id=kita.id)


@bp.route("/kitas/<uuid:kita_id>/templates/archive", methods=["POST"])
@manager_required
def template_archive(kita_id: uuid.UUID) -> Any:
    """Archive a template (``template_id``, with the confirmation box): new entries cannot
    use it any more, entries that use it keep it."""
    db, actor = get_db(), require_actor()
    kita = access.get_kita(db, actor, kita_id, Action.MANAGE)
    reader = FormReader(request.form)
    template_id = reader.uuid("template_id", required=True)
    if not _confirmed():
        reader.errors["confirm"] = _("Please tick the box to confirm.")
    try:
        reader.check()
    except ValidationError as error:
        return render_template(
            "documentation/templates.html",
            kita=kita,
            templates=documentation.list_templates(db, kita, include_archived=True),
            errors=error.fields,
            message=_("Nothing was changed: %(reason)s", reason=next(iter(error.fields.values()))),
        ), error.status
    assert template_id is not None  # noqa: S101 (reader.check() refused a missing id)
    template = access.get_documentation_template(db, actor, template_id)
    if template.kita_id != kita.id:
        raise NotFoundError()
    documentation.archive_template(db, actor=actor, template=template)
    return _done(_("The template was archived."), "documentation.templates", kita_id=kita.id)
