"""Announcements for staff: the list, composing (free text or phrasebook), the translation
preview with back-translations and corrections, sending or scheduling, editing and recalling.

Every view loads the announcement through ``kita.access.get_announcement_for_staff`` (404 for
anyone who may not manage it) and ends in ``kita.services.announcements``. Parents read
announcements in the feed (``/messages/a/<id>``), never here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import get_locale, get_timezone, ngettext
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.datastructures import MultiDict
from werkzeug.wrappers import Response as BaseResponse

from kita import access
from kita.blobs import BlobStore
from kita.config import SUPPORTED_LOCALES
from kita.errors import NotFoundError, ValidationError
from kita.forms import parse_uuid
from kita.models.messaging import Announcement, AnnouncementStatus, Category, TranslationStatus
from kita.services import announcements as service
from kita.services.announcements import AnnouncementInput, Audience, Upload
from kita.services.translation import Translator, translator_for
from kita.translation import phrasebook
from kita.web import LANGUAGE_NAMES, audited_read, get_db, login_required, require_actor, state

bp = Blueprint("announcements", __name__, url_prefix="/messages/announcements")

# Room for the multipart envelope around the most attachments one message can hold.
UPLOAD_LIMIT = service.MAX_ATTACHMENTS * service.MAX_ATTACHMENT_BYTES + 1024 * 1024
_UPLOAD_ENDPOINTS = {"announcements.new", "announcements.edit"}

PARAM_LABELS = {
    "date": _l("Date"),
    "date_from": _l("From (date)"),
    "date_to": _l("Until (date)"),
    "time": _l("Time"),
    "place": _l("Place"),
    "name": _l("Name"),
}
PARAM_INPUT_TYPES = {"date": "date", "time": "time", "text": "text"}


@bp.url_value_preprocessor
def _upload_limit(endpoint: str | None, _values: dict[str, Any] | None) -> None:
    # Runs before the CSRF check, which parses (and so size-checks) the multipart body.
    if endpoint in _UPLOAD_ENDPOINTS:
        request.max_content_length = UPLOAD_LIMIT


@bp.context_processor
def _labels() -> dict[str, Any]:
    return {
        "category_labels": service.CATEGORY_LABELS,
        "category_icons": service.CATEGORY_ICONS,
        "status_labels": service.STATUS_LABELS,
        "translation_labels": service.TRANSLATION_STATUS_LABELS,
        "language_names": LANGUAGE_NAMES,
    }


# --- helpers ---------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _translator() -> Translator:
    return translator_for(get_db(), state().config)


def _blobs() -> BlobStore:
    return BlobStore(state().config.blob_dir)


def _require_sender() -> access.Actor:
    actor = require_actor()
    if not access.may_send_announcements(actor):
        raise NotFoundError()
    return actor


def _load(announcement_id: uuid.UUID) -> Announcement:
    return access.get_announcement_for_staff(get_db(), _require_sender(), announcement_id)


def _confirmed() -> bool:
    return request.form.get("confirm") == "yes"


def _done(message: str, endpoint: str, **values: Any) -> BaseResponse:
    flash(message, "success")
    return redirect(url_for(endpoint, **values))


def _page_number() -> int:
    raw = request.args.get("page", "1")
    return int(raw) if raw.isdigit() and len(raw) < 7 else 1


def _local_datetime(
    form: Mapping[str, str], name: str, errors: dict[str, object]
) -> datetime | None:
    """A ``datetime-local`` field (the Kita's time zone) as an aware datetime."""
    raw = (form.get(name) or "").strip()
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        value = None
    # Far-off years are typing slips (and year 1 cannot be moved to UTC at all).
    if value is None or not 2000 <= value.year <= 2100:
        errors[name] = _l("Please enter a date and time like 2026-03-31 08:30.")
        return None
    if value.tzinfo is not None:
        return value
    return value.replace(tzinfo=ZoneInfo(str(get_timezone())))


def _local_input(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(ZoneInfo(str(get_timezone()))).strftime("%Y-%m-%dT%H:%M")


def _ids(form: MultiDict[str, str], name: str, errors: dict[str, object]) -> tuple[uuid.UUID, ...]:
    values = []
    for raw in form.getlist(name):
        parsed = parse_uuid(raw)
        if parsed is None:
            errors["audience"] = _l("Please choose one of the offered options.")
        else:
            values.append(parsed)
    return tuple(values)


def _read_form(form: MultiDict[str, str]) -> tuple[AnnouncementInput, dict[str, object]]:
    """The compose form as service input, and the shape errors found while reading it."""
    errors: dict[str, object] = {}
    phrase_key = (form.get("phrase_key") or "").strip() if form.get("mode") == "phrase" else ""
    if form.get("mode") == "phrase" and not phrase_key:
        errors["phrase_key"] = _l("Please choose a message from the list.")
    category = (form.get("category") or "").strip()
    if not category and phrase_key in phrasebook.PHRASES:
        category = phrasebook.PHRASES[phrase_key].category
    params = {name: form.get(f"param_{name}", "") for name in PARAM_LABELS}
    data = AnnouncementInput(
        category=category,
        source_locale=(form.get("source_locale") or "").strip(),
        audience=Audience(
            kita_ids=_ids(form, "kita", errors),
            group_ids=_ids(form, "group", errors),
            child_ids=_ids(form, "child", errors),
        ),
        title=form.get("title") or "",
        body=(form.get("body") or "").replace("\r\n", "\n"),
        phrase_key=phrase_key or None,
        phrase_params=params,
        needs_interpreter=form.get("needs_interpreter") in {"on", "1", "yes"},
        confirm_required=form.get("confirm_required") in {"on", "1", "yes"},
        confirm_deadline=_local_datetime(form, "confirm_deadline", errors),
        scheduled_at=_local_datetime(form, "scheduled_at", errors),
    )
    return data, errors


def _uploads() -> list[Upload]:
    return [
        Upload(file.filename or "", file.read(service.MAX_ATTACHMENT_BYTES + 1))
        for file in request.files.getlist("attachments")
        if file.filename
    ]


def _form_from(announcement: Announcement) -> MultiDict[str, str]:
    audience = service.audience_of(announcement)
    items: list[tuple[str, str]] = [
        ("mode", "phrase" if announcement.phrase_key else "free"),
        ("category", announcement.category.value),
        ("source_locale", announcement.source_locale),
        ("title", announcement.title if not announcement.phrase_key else ""),
        ("body", announcement.body if not announcement.phrase_key else ""),
        ("phrase_key", announcement.phrase_key or ""),
        ("scheduled_at", _local_input(announcement.scheduled_at)),
        ("confirm_deadline", _local_input(announcement.confirm_deadline)),
    ]
    items += [(f"param_{k}", v) for k, v in (announcement.phrase_params or {}).items()]
    items += [("kita", str(i)) for i in audience.kita_ids]
    items += [("group", str(i)) for i in audience.group_ids]
    items += [("child", str(i)) for i in audience.child_ids]
    for flag in ("needs_interpreter", "confirm_required"):
        if getattr(announcement, flag):
            items.append((flag, "on"))
    return MultiDict(items)


def _compose_context(actor: access.Actor) -> dict[str, Any]:
    options = service.compose_options(get_db(), actor)
    locale = str(get_locale())
    return {
        "options": options,
        "phrase_choices": phrasebook.phrase_choices(
            locale if locale in SUPPORTED_LOCALES else "de"
        ),
        "phrase_params": {key: phrase.params for key, phrase in phrasebook.PHRASES.items()},
        "param_labels": PARAM_LABELS,
        "param_kinds": _param_kinds(),
        "categories": list(Category),
        "locales": [(code, LANGUAGE_NAMES[code]) for code in SUPPORTED_LOCALES],
        "max_attachments": service.MAX_ATTACHMENTS,
        "title_max": service.TITLE_MAX,
        "body_max": service.BODY_MAX,
    }


def _param_kinds() -> dict[str, str]:
    kinds: dict[str, str] = {}
    for phrase in phrasebook.PHRASES.values():
        for name, kind in phrase.params:
            kinds.setdefault(name, PARAM_INPUT_TYPES.get(kind.value, "text"))
    return kinds


def _render_form(
    form: MultiDict[str, str],
    errors: Mapping[str, object],
    announcement: Announcement | None,
    status: int = 200,
) -> tuple[str, int]:
    actor = require_actor()
    attachments = []
    if announcement is not None:
        keys = state().keys
        attachments = [
            (row, service.attachment_filename(keys, announcement, row))
            for row in service.attachments_of(get_db(), announcement)
        ]
    return (
        render_template(
            "announcements/form.html",
            form=form,
            errors=errors,
            announcement=announcement,
            attachments=attachments,
            sent=announcement is not None and announcement.status is AnnouncementStatus.SENT,
            **_compose_context(actor),
        ),
        status,
    )


# --- views -----------------------------------------------------------------------------------


@bp.route("/")
@login_required
def index() -> Any:
    """The messages the actor sent or may manage, newest first, by status."""
    actor = _require_sender()
    raw = request.args.get("status", "")
    status = AnnouncementStatus(raw) if raw in set(AnnouncementStatus) else None
    page = service.staff_announcements(get_db(), actor, status=status, page=_page_number())
    return render_template(
        "announcements/index.html",
        page=page,
        status=status.value if status else "",
        statuses=list(AnnouncementStatus),
    )


@bp.route("/new", methods=["GET", "POST"])
@login_required
def new() -> Any:
    """Compose a message; saved as a draft, then previewed in every recipient language."""
    actor = _require_sender()
    if request.method == "GET":
        form = MultiDict(
            {
                "mode": "phrase",
                "source_locale": str(get_locale()),
                "phrase_key": request.args.get("phrase", ""),
            }
        )
        return _render_form(form, {}, None)
    data, errors = _read_form(request.form)
    try:
        if errors:
            raise ValidationError(errors)
        announcement = service.create_draft(
            get_db(),
            actor=actor,
            data=data,
            now=_now(),
            keys=state().keys,
            blobs=_blobs(),
            uploads=_uploads(),
        )
    except ValidationError as error:
        return _render_form(request.form, error.fields, None, 422)
    return _done(
        _("The draft is saved. Check the translations before you send it."),
        "announcements.preview",
        announcement_id=announcement.id,
    )


@bp.route("/<uuid:announcement_id>")
@login_required
def detail(announcement_id: uuid.UUID) -> Any:
    """Status, text, audience languages and the families who read it untranslated."""
    announcement = _load(announcement_id)
    db = get_db()
    keys = state().keys
    return render_template(
        "announcements/detail.html",
        announcement=announcement,
        locales=service.recipient_locales(db, announcement),
        untranslated=service.untranslated_recipients(db, announcement),
        attachments=[
            (row, service.attachment_filename(keys, announcement, row))
            for row in service.attachments_of(db, announcement)
        ],
        recipients=service.recipient_count(db, announcement),
    )


@bp.route("/<uuid:announcement_id>/edit", methods=["GET", "POST"])
@login_required
def edit(announcement_id: uuid.UUID) -> Any:
    """Change a draft (everything) or a sent message (text only: parents see "edited", no new
    notification). Recalled messages cannot be changed."""
    announcement = _load(announcement_id)
    if announcement.status is AnnouncementStatus.RECALLED:
        raise service.AnnouncementStateError()
    if request.method == "GET":
        return _render_form(_form_from(announcement), {}, announcement)
    data, errors = _read_form(request.form)
    removing = [parse_uuid(raw) for raw in request.form.getlist("remove_attachment")]
    try:
        if errors:
            raise ValidationError(errors)
        service.update_announcement(
            get_db(),
            actor=require_actor(),
            announcement=announcement,
            data=data,
            now=_now(),
            translator=_translator(),
            keys=state().keys,
            blobs=_blobs(),
            uploads=_uploads(),
            remove_attachments=[i for i in removing if i is not None],
        )
    except ValidationError as error:
        return _render_form(request.form, error.fields, announcement, 422)
    if announcement.status is AnnouncementStatus.SENT:
        return _done(
            _("The message is changed. Parents see that it was edited."),
            "announcements.detail",
            announcement_id=announcement.id,
        )
    return _done(_("The draft is saved."), "announcements.preview", announcement_id=announcement.id)


@bp.route("/<uuid:announcement_id>/preview", methods=["GET", "POST"])
@login_required
@audited_read
def preview(announcement_id: uuid.UUID) -> Any:
    """The message in each recipient language with its back-translation; POST corrects one
    language (the correction also goes into the translation memory)."""
    announcement = _load(announcement_id)
    db = get_db()
    translator = _translator()
    errors: Mapping[str, object] = {}
    status = 200
    chosen = request.values.get("locale", "")
    if request.method == "POST":
        try:
            service.correct_translation(
                db,
                actor=require_actor(),
                announcement=announcement,
                locale=chosen,
                title=request.form.get("title", ""),
                body=request.form.get("body", "").replace("\r\n", "\n"),
                translator=translator,
                now=_now(),
            )
        except ValidationError as error:
            errors, status = error.fields, 422
        else:
            return _done(
                _("The correction is saved and will be used from now on."),
                "announcements.preview",
                announcement_id=announcement.id,
                locale=chosen,
            )
    counts = service.recipient_locales(db, announcement)
    if announcement.status is not AnnouncementStatus.RECALLED and status == 200:
        service.prepare_translations(
            db,
            announcement,
            translator,
            now=_now(),
            locales=[announcement.source_locale, *counts],
            back_translate=True,
        )
    rows = service.translations_of(announcement)
    others = [row for row in rows if row.locale != announcement.source_locale] or rows
    selected = next((row for row in rows if row.locale == chosen), others[0] if others else None)
    return (
        render_template(
            "announcements/preview.html",
            announcement=announcement,
            rows=rows,
            counts=counts,
            selected=selected,
            errors=errors,
            form=request.form if status != 200 else {},
            correctable={
                TranslationStatus.MACHINE,
                TranslationStatus.MEMORY,
                TranslationStatus.CORRECTED,
                TranslationStatus.PENDING,
            },
        ),
        status,
    )


@bp.route("/<uuid:announcement_id>/send", methods=["GET", "POST"])
@login_required
def send(announcement_id: uuid.UUID) -> Any:
    """Confirm and send now, or queue for the scheduled time."""
    announcement = _load(announcement_id)
    db = get_db()
    if announcement.status not in {AnnouncementStatus.DRAFT, AnnouncementStatus.SCHEDULED}:
        raise service.AnnouncementStateError()
    errors: dict[str, object] = {}
    if request.method == "POST":
        if not _confirmed():
            errors["confirm"] = _l("Please confirm that the message should be sent.")
        else:
            now = _now()
            try:
                if announcement.scheduled_at is not None and announcement.scheduled_at > now:
                    service.schedule(db, actor=require_actor(), announcement=announcement, now=now)
                    message = _("The message is scheduled.")
                else:
                    report = service.send(
                        db, announcement, now, _translator(), state().keys, actor=require_actor()
                    )
                    message = ngettext(
                        "The message was sent to %(num)d parent.",
                        "The message was sent to %(num)d parents.",
                        report.recipients,
                    )
            except ValidationError as error:
                errors = error.fields
            else:
                return _done(message, "announcements.detail", announcement_id=announcement.id)
    return (
        render_template(
            "announcements/send.html",
            announcement=announcement,
            locales=service.recipient_locales(db, announcement),
            untranslated=service.untranslated_recipients(db, announcement),
            errors=errors,
        ),
        422 if errors else 200,
    )


@bp.route("/<uuid:announcement_id>/recall", methods=["GET", "POST"])
@login_required
def recall(announcement_id: uuid.UUID) -> Any:
    """Take back a sent message (parents see "recalled by the Kita"), or un-schedule one."""
    announcement = _load(announcement_id)
    if announcement.status not in {AnnouncementStatus.SENT, AnnouncementStatus.SCHEDULED}:
        raise service.AnnouncementStateError()
    errors: dict[str, object] = {}
    if request.method == "POST":
        if not _confirmed():
            errors["confirm"] = _l("Please confirm that the message should be recalled.")
        else:
            was_sent = announcement.status is AnnouncementStatus.SENT
            service.recall(get_db(), actor=require_actor(), announcement=announcement, now=_now())
            return _done(
                _("The message is recalled. Parents see that the Kita took it back.")
                if was_sent
                else _("The message is no longer scheduled; it is a draft again."),
                "announcements.detail",
                announcement_id=announcement.id,
            )
    return (
        render_template("announcements/recall.html", announcement=announcement, errors=errors),
        422 if errors else 200,
    )
