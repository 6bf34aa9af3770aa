"""The start page: a parent sees their children, staff see their Kitas and groups."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, redirect, render_template, url_for
from flask_babel import get_locale

from kita.services import home
from kita.web import current_actor, get_db, login_required, public, require_actor

bp = Blueprint("home", __name__)


@bp.route("/")
@public
def index() -> Any:
    """Anonymous visitors go to the login page; everybody else to their home."""
    if current_actor() is None:
        return redirect(url_for("auth.login"))
    return redirect(url_for("home.dashboard"))


@bp.route("/home")
@login_required
def dashboard() -> Any:
    """The personal start page (parent feed, staff overview)."""
    actor = require_actor()
    overview = home.build_overview(get_db(), actor, locale=str(get_locale()))
    return render_template("home/dashboard.html", overview=overview)


@bp.route("/ping")
@public
def ping() -> Any:
    """A bare endpoint that touches nothing: the benchmark's baseline and a health check."""
    return {"ok": True}
