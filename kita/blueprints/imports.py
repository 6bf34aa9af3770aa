"""CSV import of children and guardians: upload, preview with per-row errors, commit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, redirect, render_template, request, url_for

from kita.access import Action, get_csv_import, get_kita
from kita.errors import KitaError
from kita.models.imports import CsvImport
from kita.models.organisation import Kita
from kita.services import imports
from kita.services.invitations import qr_svg
from kita.web import commit as commit_now
from kita.web import get_db, manager_required, require_actor, state

bp = Blueprint("imports", __name__, url_prefix="/admin/kitas/<uuid:kita_id>/import")


def _now() -> datetime:
    return datetime.now(UTC)


def _upload_page(kita: Kita, error: imports.ImportFileError | None = None) -> str:
    return render_template(
        "imports/upload.html",
        kita=kita,
        columns=imports.COLUMNS,
        max_rows=imports.MAX_ROWS,
        error=error,
    )


def _preview_page(
    kita: Kita, csv_import: CsvImport, parsed: imports.ParsedImport, message: object = None
) -> str:
    only_errors = request.args.get("show") == "errors"
    page = imports.page_rows(
        parsed, page=request.args.get("page", 1, type=int), only_errors=only_errors
    )
    return render_template(
        "imports/preview.html",
        kita=kita,
        csv_import=csv_import,
        parsed=parsed,
        page=page,
        only_errors=only_errors,
        column_keys=imports.COLUMN_KEYS,
        row_key=imports.ROW,
        message=message,
    )


def _unavailable(kita: Kita, error: KitaError) -> tuple[str, int]:
    return render_template(
        "imports/unavailable.html", kita=kita, message=error.message
    ), error.status


@bp.route("/", methods=["GET", "POST"])
@manager_required
def upload(kita_id: uuid.UUID) -> Any:
    """Upload form and upload of a CSV file; 404 unless the actor manages the Kita."""
    db, actor = get_db(), require_actor()
    kita = get_kita(db, actor, kita_id, Action.MANAGE)
    if request.method == "GET":
        return _upload_page(kita)
    file = request.files.get("file")
    # One byte more than allowed is enough to know the file is too large.
    raw = file.stream.read(imports.MAX_BYTES + 1) if file else b""
    try:
        csv_import = imports.create_import(db, actor=actor, kita=kita, raw=raw, now=_now())
    except imports.ImportFileError as error:
        return _upload_page(kita, error), error.status
    return redirect(url_for("imports.preview", kita_id=kita.id, import_id=csv_import.id))


@bp.route("/example.csv")
@manager_required
def example(kita_id: uuid.UUID) -> Response:
    """An example file naming a group of this Kita; 404 unless the actor manages the Kita."""
    db = get_db()
    kita = get_kita(db, require_actor(), kita_id, Action.MANAGE)
    return Response(
        imports.example_csv(db, kita),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="kita-import-example.csv"'},
    )


@bp.route("/<uuid:import_id>")
@manager_required
def preview(kita_id: uuid.UUID, import_id: uuid.UUID) -> Any:
    """The parsed rows with their errors and counts; 404 for uploads of other Kitas."""
    db, actor = get_db(), require_actor()
    kita = get_kita(db, actor, kita_id, Action.MANAGE)
    csv_import = get_csv_import(db, actor, kita.id, import_id)
    try:
        parsed = imports.preview_import(
            db, actor=actor, kita=kita, csv_import=csv_import, now=_now()
        )
    except (imports.ImportCommittedError, imports.ImportExpiredError) as error:
        return _unavailable(kita, error)
    return _preview_page(kita, csv_import, parsed)


@bp.route("/<uuid:import_id>/commit", methods=["POST"])
@manager_required
def commit(kita_id: uuid.UUID, import_id: uuid.UUID) -> Any:
    """Create all children and invitations at once and show the links once; 404 for uploads
    of other Kitas."""
    db, actor = get_db(), require_actor()
    kita = get_kita(db, actor, kita_id, Action.MANAGE)
    csv_import = get_csv_import(db, actor, kita.id, import_id)
    config = state().config
    try:
        result = imports.commit_import(
            db,
            actor=actor,
            kita=kita,
            csv_import=csv_import,
            now=_now(),
            days=config.invitation_days,
        )
    except imports.ImportRejectedError as error:
        return _preview_page(kita, csv_import, error.parsed, error.message), error.status
    except imports.ImportExpiredError as error:
        commit_now()  # keep the erasure of the expired content
        return _unavailable(kita, error)
    except imports.ImportCommittedError as error:
        return _unavailable(kita, error)
    sheets = []
    for item in result.invitations:
        link = f"{config.base_url}{url_for('auth.join', token=item.issued.token)}"
        sheets.append((item, link, qr_svg(link)))
    return render_template("imports/result.html", kita=kita, result=result, sheets=sheets)
