"""The parent's messages: the feed, one announcement (read receipt, confirmation, attachments,
original/translation switch, read aloud) and, for staff, an announcement's reach and the letters
to print for families it did not reach.

A parent gets 404 for an announcement that was not sent to them, exactly as for an id that
does not exist; staff pages answer 404 to everyone outside ``kita.access.may_view_reach``. URLs
carry ids only: which text is shown (original or translation) is switched in the page.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _

from kita import access, audit
from kita.blobs import BlobStore
from kita.reports.letter import render_letters
from kita.services import feed, reach
from kita.web import LANGUAGE_NAMES, audited_read, get_db, login_required, require_actor, state

bp = Blueprint("messages", __name__, url_prefix="/messages")


def _now() -> datetime:
    return datetime.now(UTC)


def _locale() -> str:
    return str(get_locale())


def _page_number() -> int:
    raw = request.args.get("page", "1")
    return int(raw) if raw.isdigit() and 0 < len(raw) < 7 else 1


@bp.context_processor
def _labels() -> dict[str, Any]:
    return {"language_names": LANGUAGE_NAMES}


@bp.route("")
@login_required
def feed_page() -> Any:
    """Every announcement the person received, newest first, with confirmations due on top."""
    db, actor = get_db(), require_actor()
    page = feed.list_announcements(db, actor, locale=_locale(), page=_page_number())
    due = (
        feed.confirmations_due(db, actor, locale=_locale(), now=_now()) if page.number == 1 else []
    )
    return render_template("messages/feed.html", page=page, confirmations=due)


@bp.route("/a/<uuid:announcement_id>")
@login_required
@audited_read
def announcement(announcement_id: uuid.UUID) -> Any:
    """One announcement for a person it was sent to (marks it read); 404 for anyone else."""
    view = feed.open_announcement(
        get_db(), require_actor(), state().keys, announcement_id, locale=_locale(), now=_now()
    )
    return render_template("messages/announcement.html", view=view, entry=view.entry)


@bp.route("/a/<uuid:announcement_id>/confirm", methods=["POST"])
@login_required
def confirm(announcement_id: uuid.UUID) -> Any:
    """Confirm an announcement that asks for it. Sending the form again changes nothing and
    shows the message as confirmed."""
    outcome = feed.confirm_announcement(get_db(), require_actor(), announcement_id, now=_now())
    messages = {
        feed.ConfirmOutcome.CONFIRMED: (_("Thank you, your confirmation was sent."), "success"),
        feed.ConfirmOutcome.ALREADY: (_("You have already confirmed this message."), "info"),
        feed.ConfirmOutcome.NOT_REQUESTED: (_("This message needs no confirmation."), "info"),
        feed.ConfirmOutcome.RECALLED: (_("This message was withdrawn by the Kita."), "info"),
    }
    text, kind = messages[outcome]
    flash(text, kind)
    return redirect(url_for("messages.announcement", announcement_id=announcement_id))


@bp.route("/a/<uuid:announcement_id>/attachments/<uuid:attachment_id>")
@login_required
def attachment(announcement_id: uuid.UUID, attachment_id: uuid.UUID) -> Any:
    """An attachment, decrypted, as a download for the announcement's recipients and the
    Kita's staff; 404 for everyone else and for an attachment of another message."""
    file = feed.read_attachment(
        get_db(),
        require_actor(),
        state().keys,
        BlobStore(state().config.blob_dir),
        announcement_id,
        attachment_id,
    )
    response = Response(file.data, mimetype=file.media_type)
    response.headers.set("Content-Disposition", "attachment", filename=file.filename)
    response.headers["Cache-Control"] = "no-store, private"
    return response


@bp.route("/announcements/<uuid:announcement_id>/reach")
@login_required
def reach_page(announcement_id: uuid.UUID) -> Any:
    """Delivered, read and confirmed per family, counts per language, families not reached."""
    db, actor = get_db(), require_actor()
    announcement = access.get_reach_announcement(db, actor, announcement_id)
    result = reach.build_reach(db, announcement, now=_now())
    return render_template("messages/reach.html", reach=result, announcement=announcement)


@bp.route("/announcements/<uuid:announcement_id>/letters.pdf")
@login_required
@audited_read
def letters(announcement_id: uuid.UUID) -> Any:
    """Printable letters in each family's language: for the families not reached, or with
    ``?all=1`` for every family (audited: the letters name children)."""
    db, actor = get_db(), require_actor()
    announcement = access.get_reach_announcement(db, actor, announcement_id)
    result = reach.build_reach(db, announcement, now=_now())
    if not result.sendable_letters:
        flash(_("Letters can be printed once the message has been sent."), "info")
        return redirect(url_for("messages.reach_page", announcement_id=announcement.id))
    families = result.families if request.args.get("all") == "1" else result.not_reached
    if not families:
        flash(_("Every family has read this message: there is no letter to print."), "info")
        return redirect(url_for("messages.reach_page", announcement_id=announcement.id))
    batch = reach.build_letters(db, result, now=_now(), families=families)
    audit.record(
        db,
        action="announcement.letters",
        actor_id=actor.id,
        object_type="announcement",
        object_id=announcement.id,
        kita_id=announcement.kita_id,
        detail=f"letters={len(batch.letters)}",
    )
    response = Response(render_letters(batch), mimetype="application/pdf")
    response.headers["Content-Disposition"] = 'attachment; filename="letters.pdf"'
    response.headers["Cache-Control"] = "no-store"
    return response
