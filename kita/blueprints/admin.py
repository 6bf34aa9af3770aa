"""Administration for Kita leaders and provider admins."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from kita.access import managed_kitas
from kita.web import get_db, manager_required, require_actor

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/")
@manager_required
def index() -> Any:
    """The Kitas this person manages."""
    kitas = get_db().scalars(managed_kitas(require_actor())).all()
    return render_template("admin/index.html", kitas=kitas)
