"""Notification preferences: which categories to receive, quiet hours, the e-mail fallback."""

from __future__ import annotations

from datetime import time
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from kita.errors import ValidationError
from kita.forms import FormReader
from kita.services import notify
from kita.web import get_db, login_required, require_actor

bp = Blueprint("notifications", __name__, url_prefix="/settings")

#: The categories a person can switch off, with their labels (urgent is always on).
CATEGORY_LABELS: dict[str, object] = {
    "information": _l("Information"),
    "event": _l("Events"),
    "closure": _l("Closures"),
    "health": _l("Health notices"),
    "conversation": _l("Replies in conversations"),
}


def _time(form: FormReader, name: str) -> time | None:
    raw = form.text(name, max_length=8)
    if not raw or name in form.errors:
        return None
    try:
        value: time | None = time.fromisoformat(raw)
    except ValueError:
        value = None
    if value is None or value.tzinfo is not None:
        form.errors[name] = _l("Please enter a time like 21:30.")
        return None
    return value


def _render(settings: dict[str, Any], errors: dict[str, object], status: int = 200) -> Any:
    message = _("Please correct the marked fields.") if errors else None
    return render_template(
        "notifications/settings.html",
        categories=CATEGORY_LABELS,
        settings=settings,
        errors=errors,
        message=message,
    ), status


@bp.route("/notifications", methods=["GET", "POST"])
@login_required
def settings() -> Any:
    """The signed-in person's notification preferences (form with CSRF)."""
    db, actor = get_db(), require_actor()
    if request.method == "GET":
        row = notify.get_settings(db, actor.id)
        return _render(
            {
                "muted": set(row.muted_categories or []),
                "quiet_from": row.quiet_from.strftime("%H:%M") if row.quiet_from else "",
                "quiet_until": row.quiet_until.strftime("%H:%M") if row.quiet_until else "",
                "email_fallback": row.email_fallback,
            },
            {},
        )
    form = FormReader(request.form)
    muted = [name for name in CATEGORY_LABELS if not form.checkbox(f"notify_{name}")]
    quiet_from, quiet_until = _time(form, "quiet_from"), _time(form, "quiet_until")
    email_fallback = form.checkbox("email_fallback")
    try:
        form.check()
        notify.save_settings(db, actor.id, muted, quiet_from, quiet_until, email_fallback)
    except ValidationError as error:
        entered = {
            "muted": set(muted),
            "quiet_from": request.form.get("quiet_from", "")[:8],
            "quiet_until": request.form.get("quiet_until", "")[:8],
            "email_fallback": email_fallback,
        }
        return _render(entered, error.fields, error.status)
    flash(_("Your notification settings are saved."), "success")
    return redirect(url_for("notifications.settings"))
