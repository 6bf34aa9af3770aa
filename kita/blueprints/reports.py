"""Reports: a child's portfolio PDF, the hand-over record, and the family's data export.

The portfolio is for the child's educators and the Kita's leaders, the guardians with custody and
provider admins with a break-glass grant; the hand-over page for the child's staff; the data
export for every logged-in person (about themselves and their children). Everybody else gets
404, exactly as for a child that does not exist. Downloads are attachments that are never
cached, their URLs name no child, and every download is audited (``documentation.export``).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _

from kita import access
from kita.blobs import BlobStore
from kita.errors import ValidationError
from kita.models.organisation import Child
from kita.reports import render_family_export, render_portfolio
from kita.services import lifecycle
from kita.web import audited_read, get_db, login_required, require_actor, state

bp = Blueprint("reports", __name__)


def _blobs() -> BlobStore:
    return BlobStore(state().config.blob_dir)


def _download(data: bytes, mimetype: str, filename: str) -> Response:
    response = Response(data, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _staff_child(child_id: uuid.UUID) -> Child:
    """The child, for its educators and the Kita's leaders; 404 for everybody else."""
    child, _scope = access.get_documentation_child(get_db(), require_actor(), child_id, write=True)
    return child


# --- portfolio and hand-over -----------------------------------------------------------------


@bp.route("/children/<uuid:child_id>/portfolio.pdf")
@login_required
@audited_read
def portfolio_pdf(child_id: uuid.UUID) -> Any:
    """The child's portfolio as PDF (audited); 404 unless the actor may read the child's
    documentation (staff, guardians with custody, provider admins with break-glass)."""
    db, actor = get_db(), require_actor()
    child, _scope = access.get_documentation_child(db, actor, child_id)
    locale = lifecycle.portfolio_locale(db, actor, child, str(get_locale()))
    portfolio = lifecycle.build_portfolio(
        db, actor=actor, keys=state().keys, blobs=_blobs(), child=child, locale=locale
    )
    return _download(render_portfolio(portfolio), "application/pdf", "portfolio.pdf")


def _render_handover(child: Child, status: int = 200, **context: Any) -> tuple[str, int]:
    days = state().config.retention_days_after_leave
    handover = lifecycle.handover_state(
        get_db(), actor=require_actor(), child=child, days_after_leave=days
    )
    return (
        render_template(
            "reports_ui/handover.html", child=child, handover=handover, days=days, **context
        ),
        status,
    )


@bp.route("/children/<uuid:child_id>/handover", methods=["GET", "POST"])
@login_required
def handover(child_id: uuid.UUID) -> Any:
    """The hand-over of the child's documentation: the portfolio to download and, after a
    confirmation, the record that the family received it (which lets retention delete the
    documentation the day after the leaving date). Staff of the child only; 404 for others."""
    child = _staff_child(child_id)
    if request.method == "GET":
        return _render_handover(child)
    try:
        if request.form.get("confirm") != "yes":
            raise ValidationError(
                {"confirm": _("Please tick the box to confirm.")},
                _("Nothing was recorded: please tick the box to confirm."),
            )
        lifecycle.record_handover(
            get_db(), actor=require_actor(), child=child, now=datetime.now(UTC)
        )
    except ValidationError as error:
        return _render_handover(child, error.status, errors=error.fields, message=error.message)
    flash(_("The hand-over is recorded."), "success")
    return redirect(url_for("reports.handover", child_id=child.id))


# --- family data export ----------------------------------------------------------------------


@bp.route("/account/export")
@login_required
def family_export() -> Any:
    """Where a person downloads everything stored about them and their children."""
    return render_template("reports_ui/export.html")


def _family_data(export_format: str) -> lifecycle.FamilyData:
    return lifecycle.collect_family_data(
        get_db(),
        actor=require_actor(),
        keys=state().keys,
        blobs=_blobs(),
        locale=str(get_locale()),
        export_format=export_format,
    )


@bp.route("/account/export.json")
@login_required
@audited_read
def family_export_json() -> Any:
    """The data export as machine-readable JSON (GDPR Art. 20; audited)."""
    data = lifecycle.family_export_json(_family_data("json"))
    body = json.dumps(data, ensure_ascii=False, indent=2).encode()
    return _download(body, "application/json", "kita-export.json")


@bp.route("/account/export.pdf")
@login_required
@audited_read
def family_export_pdf() -> Any:
    """The data export as PDF in the person's language (GDPR Art. 15; audited)."""
    report = lifecycle.family_export_report(_family_data("pdf"))
    return _download(render_family_export(report), "application/pdf", "kita-export.pdf")
