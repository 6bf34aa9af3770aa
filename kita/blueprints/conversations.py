"""Conversations in the browser: the inbox (families and staff), starting a conversation, the
thread with its reply form, attachments, the "needs an interpreter" flag, and the leaders' page
for the Kita's working hours.

Every view loads its conversation through ``kita.access`` (404 for anyone who does not take
part) and ends in :mod:`kita.services.conversations`, which encrypts, translates, notifies and
tracks reading. The thread page writes (it marks the conversation read), so it carries
``audited_read`` for a write session.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, time
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_babel import format_datetime, get_locale
from flask_babel import gettext as _
from werkzeug.wrappers import Response as BaseResponse

from kita import access
from kita.access import Action, ConversationSide
from kita.blobs import BlobStore
from kita.errors import ValidationError
from kita.forms import FormReader
from kita.models.messaging import Team
from kita.models.organisation import Kita
from kita.services import conversations
from kita.services.conversations import (
    ATTACHMENT_MAX_BYTES,
    ATTACHMENTS_PER_MESSAGE,
    BODY_MAX,
    TOPICS,
    WEEKDAY_LABELS,
    ConversationDraft,
    Upload,
)
from kita.services.translation import Translator, translator_for
from kita.web import (
    LANGUAGE_NAMES,
    audited_read,
    get_db,
    login_required,
    manager_required,
    require_actor,
    state,
)

bp = Blueprint("conversations", __name__, url_prefix="/conversations")

# Room for the multipart envelope around the most files one message can carry.
UPLOAD_LIMIT = ATTACHMENTS_PER_MESSAGE * ATTACHMENT_MAX_BYTES + 1024 * 1024
_TIME_RE = re.compile(r"\A([01]\d|2[0-3]):[0-5]\d\Z")


@bp.url_value_preprocessor
def _upload_limit(endpoint: str | None, _values: dict[str, Any] | None) -> None:
    # Runs before the CSRF check, which parses (and so size-checks) the multipart body.
    if endpoint in {"conversations.new", "conversations.reply"}:
        request.max_content_length = UPLOAD_LIMIT


@bp.context_processor
def _labels() -> dict[str, Any]:
    return {
        "topics": TOPICS,
        "body_max": BODY_MAX,
        "attachments_max": ATTACHMENTS_PER_MESSAGE,
        "staff_side": ConversationSide.STAFF,
        "family_side": ConversationSide.FAMILY,
        "language_names": LANGUAGE_NAMES,
    }


# --- helpers ---------------------------------------------------------------------------------


def _blobs() -> BlobStore:
    return BlobStore(state().config.blob_dir)


def _translator() -> Translator:
    # Conversation texts are personal: never through the shared translation memory.
    return translator_for(get_db(), state().config, use_memory=False)


def _locale() -> str:
    return str(get_locale())


def _uploads() -> list[Upload]:
    """The chosen files; the empty part a browser sends when none was chosen is skipped."""
    uploads: list[Upload] = []
    for upload in request.files.getlist("files"):
        if not upload.filename:
            continue
        uploads.append(Upload(upload.filename, upload.read(ATTACHMENT_MAX_BYTES + 1)))
    return uploads


def _answer_notice(expected: datetime | None) -> str | None:
    if expected is None:
        return None
    return _(
        "The team usually answers on %(when)s.",
        when=format_datetime(expected, "EEEE, d MMMM, HH:mm"),
    )


def _sent(result: conversations.PostResult) -> BaseResponse:
    flash(_("Your message was sent."), "success")
    notice = _answer_notice(result.answer_expected_at)
    if notice:
        flash(notice, "info")
    return redirect(url_for("conversations.thread", conversation_id=result.conversation.id))


# --- inbox and new conversations -------------------------------------------------------------


@bp.route("")
@login_required
def inbox() -> Any:
    """The actor's conversations, newest first, with unread counts."""
    actor = require_actor()
    page = conversations.inbox(
        get_db(), actor=actor, keys=state().keys, page=request.args.get("page", 1, type=int)
    )
    kitas = get_db().scalars(access.managed_kitas(actor)).all()
    return render_template(
        "conversations/inbox.html",
        page=page,
        can_start=bool(conversations.conversation_children(get_db(), actor)),
        hours_kitas=kitas,
    )


def _recipient_options(choices: list[conversations.ChildChoice]) -> list[tuple[str, str]]:
    options = []
    for choice in choices:
        for team in choice.teams:
            label = conversations.team_label(team, choice.group_name)
            options.append(
                (f"{choice.child.id}/{team.value}", f"{choice.child.full_name} – {label}")
            )
    return options


def _render_new(
    choices: list[conversations.ChildChoice],
    form: Any,
    errors: dict[str, object],
    status: int = 200,
) -> Any:
    actor = require_actor()
    custodial = access.custodial_child_ids(get_db(), actor)
    notices = []
    seen: set[uuid.UUID] = set()
    for choice in choices:
        kita_id = choice.child.kita_id
        if choice.child.id not in custodial or kita_id in seen:
            continue
        seen.add(kita_id)
        expected = conversations.next_working_start(
            conversations.working_hours(get_db(), kita_id), datetime.now(UTC)
        )
        if expected is not None:
            notices.append(_answer_notice(expected))
    return (
        render_template(
            "conversations/new.html",
            options=_recipient_options(choices),
            form=form,
            errors=errors,
            notices=notices,
            family_writer=bool(custodial) and not any(c.child.id not in custodial for c in choices),
        ),
        status,
    )


@bp.route("/new", methods=["GET", "POST"])
@login_required
def new() -> Any:
    """Start a conversation: a parent writes about a child to the group team or the office;
    staff write to the family of a child of their groups (leaders: of their Kita)."""
    actor = require_actor()
    choices = conversations.conversation_children(get_db(), actor)
    if request.method == "GET":
        prefill = {
            "recipient": request.args.get("recipient", ""),
            # Entry points such as "Report an absence" on the parent's home pre-select a topic.
            "topic": request.args.get("topic", "") if request.args.get("topic") in TOPICS else "",
        }
        return _render_new(choices, prefill, {})
    reader = FormReader(request.form)
    recipient = reader.text("recipient", max_length=100, required=True)
    topic = reader.choice("topic", list(TOPICS))
    body = request.form.get("body", "")
    child_id, team = _parse_recipient(recipient)
    if recipient and child_id is None:
        reader.errors["recipient"] = _("Please choose one of the offered options.")
    try:
        # Shape errors of the form and the service's checks are reported together.
        result = conversations.start_conversation(
            get_db(),
            actor=actor,
            keys=state().keys,
            blobs=_blobs(),
            translator=_translator(),
            draft=ConversationDraft(
                child_id=child_id or uuid.UUID(int=0),
                team=team or Team.GROUP,
                topic=topic or "",
                body=body,
                uploads=_uploads(),
            ),
            writer_locale=_locale(),
            now=datetime.now(UTC),
        )
    except ValidationError as error:
        fields = dict(error.fields)
        # The service names the child and the team; the form has one field for both.
        for name in ("child_id", "team"):
            if name in fields:
                fields["recipient"] = fields.pop(name)
        return _render_new(choices, request.form, {**fields, **reader.errors}, 422)
    return _sent(result)


def _parse_recipient(raw: str) -> tuple[uuid.UUID | None, Team | None]:
    child_raw, _sep, team_raw = raw.partition("/")
    try:
        return uuid.UUID(child_raw), Team(team_raw)
    except ValueError:
        return None, None


# --- one conversation ------------------------------------------------------------------------


def _render_thread(
    conversation_id: uuid.UUID, form: Any, errors: dict[str, object], status: int = 200
) -> Any:
    actor = require_actor()
    conversation, side = access.get_conversation(get_db(), actor, conversation_id)
    view = conversations.thread(
        get_db(),
        actor=actor,
        side=side,
        keys=state().keys,
        conversation=conversation,
        ui_locale=_locale(),
        now=datetime.now(UTC),
    )
    return (
        render_template(
            "conversations/thread.html",
            view=view,
            form=form,
            errors=errors,
            answer_notice=_answer_notice(view.answer_expected_at),
        ),
        status,
    )


@bp.route("/<uuid:conversation_id>")
@login_required
@audited_read
def thread(conversation_id: uuid.UUID) -> Any:
    """The conversation with every message (translated for the reader, original one tap away)
    and the reply form; 404 for anyone who does not take part."""
    return _render_thread(conversation_id, {}, {})


@bp.route("/<uuid:conversation_id>/messages", methods=["POST"])
@login_required
def reply(conversation_id: uuid.UUID) -> Any:
    """Post a reply (text up to 5,000 characters, up to three PDF/JPEG/PNG files)."""
    actor = require_actor()
    conversation, side = access.get_conversation(get_db(), actor, conversation_id)
    try:
        result = conversations.post_message(
            get_db(),
            actor=actor,
            side=side,
            keys=state().keys,
            blobs=_blobs(),
            translator=_translator(),
            conversation=conversation,
            body=request.form.get("body", ""),
            uploads=_uploads(),
            writer_locale=_locale(),
            now=datetime.now(UTC),
        )
    except ValidationError as error:
        get_db().rollback()
        return _render_thread(conversation_id, request.form, error.fields, 422)
    return _sent(result)


@bp.route("/<uuid:conversation_id>/interpreter", methods=["POST"])
@login_required
def interpreter(conversation_id: uuid.UUID) -> Any:
    """The team marks (or unmarks) the conversation as needing an interpreter; 404 for
    families and everyone outside the team."""
    actor = require_actor()
    conversation, _side = access.get_conversation(get_db(), actor, conversation_id, staff=True)
    needed = FormReader(request.form).checkbox("needed")
    conversations.set_needs_interpreter(
        get_db(), actor=actor, conversation=conversation, needed=needed, now=datetime.now(UTC)
    )
    flash(
        _("Marked as needing an interpreter.")
        if needed
        else _("The interpreter note was removed."),
        "success",
    )
    return redirect(url_for("conversations.thread", conversation_id=conversation.id))


@bp.route("/<uuid:conversation_id>/attachments/<uuid:conversation_attachment_id>")
@login_required
def attachment(conversation_id: uuid.UUID, conversation_attachment_id: uuid.UUID) -> Any:
    """An attachment as a download, for participants only (never cached)."""
    file = conversations.read_attachment(
        get_db(),
        actor=require_actor(),
        keys=state().keys,
        blobs=_blobs(),
        conversation_id=conversation_id,
        attachment_id=conversation_attachment_id,
    )
    response = Response(file.data, mimetype=file.media_type)
    response.headers.set("Content-Disposition", "attachment", filename=file.filename)
    response.headers["Cache-Control"] = "no-store, private"
    return response


# --- working hours ---------------------------------------------------------------------------


def _read_hours(form: Any) -> tuple[dict[int, tuple[time, time] | None], dict[str, object]]:
    hours: dict[int, tuple[time, time] | None] = {}
    errors: dict[str, object] = {}
    reader = FormReader(form)
    for weekday in range(7):
        if not reader.checkbox(f"open_{weekday}"):
            hours[weekday] = None
            continue
        span: list[time] = []
        for name in (f"starts_{weekday}", f"ends_{weekday}"):
            raw = reader.text(name, max_length=5)
            if not _TIME_RE.match(raw):
                errors[name] = _("Please enter a time like 07:30.")
            else:
                span.append(time.fromisoformat(raw))
        hours[weekday] = (span[0], span[1]) if len(span) == 2 else None
    return hours, errors


@bp.route("/kitas/<uuid:kita_id>/working-hours", methods=["GET", "POST"])
@manager_required
def working_hours(kita_id: uuid.UUID) -> Any:
    """The Kita's working hours (leaders and provider admins): outside them staff get no
    notifications and families are told when the team usually answers."""
    actor = require_actor()
    kita: Kita = access.get_kita(get_db(), actor, kita_id, Action.MANAGE)
    errors: dict[str, object] = {}
    form: Any = {}
    if request.method == "POST":
        hours, errors = _read_hours(request.form)
        form = request.form
        if not errors:
            try:
                conversations.save_working_hours(
                    get_db(), actor=actor, kita=kita, hours=hours, now=datetime.now(UTC)
                )
            except ValidationError as error:
                errors = dict(error.fields)
        if not errors:
            flash(_("The working hours were saved."), "success")
            return redirect(url_for("conversations.working_hours", kita_id=kita.id))
    else:
        current = conversations.working_hours(get_db(), kita.id)
        for weekday, (starts, ends) in current.items():
            form[f"open_{weekday}"] = "on"
            form[f"starts_{weekday}"] = starts.strftime("%H:%M")
            form[f"ends_{weekday}"] = ends.strftime("%H:%M")
    return (
        render_template(
            "conversations/working_hours.html",
            kita=kita,
            form=form,
            errors=errors,
            weekdays=list(enumerate(WEEKDAY_LABELS)),
        ),
        422 if errors else 200,
    )
