"""The installable app's entry points: manifest, service worker (root scope), offline page."""

from __future__ import annotations

import functools
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, request, session, url_for
from flask_babel import get_locale
from flask_babel import gettext as _

from kita.access import Actor
from kita.app import PACKAGE_ROOT, PROJECT_ROOT
from kita.web import current_actor, public, state, text_direction

bp = Blueprint("pwa", __name__)

PWA_DIR = PROJECT_ROOT / "pwa"
SERVICE_WORKER = PWA_DIR / "sw.js"
VERSION_PLACEHOLDER = "__SHELL_VERSION__"
#: Everything the cached app shell is made of: a change to any of them changes the worker's
#: bytes, so browsers install the new worker and drop the old shell cache.
SHELL_SOURCES: tuple[Path, ...] = (
    SERVICE_WORKER,
    PWA_DIR / "app.css",
    PWA_DIR / "app.js",
    PWA_DIR / "icons" / "icon-192.png",
    PACKAGE_ROOT / "templates" / "base.html",
    PACKAGE_ROOT / "templates" / "pwa" / "offline.html",
)


@bp.route("/manifest.webmanifest")
@public
def manifest() -> Any:
    """The web app manifest in the visitor's language and direction (the page links it with
    credentials, so a logged-in user's own language setting applies)."""
    data = {
        "name": _("kita – your Kita app"),
        "short_name": "kita",
        "description": _("News, messages and documentation from your Kita."),
        "lang": str(get_locale()),
        "dir": text_direction(),
        # The personal start page; anonymous visitors are sent to the login form from there.
        "start_url": url_for("home.dashboard"),
        "scope": "/",
        "id": "/",
        "display": "standalone",
        "background_color": "#ffffff",
        "theme_color": "#1f5f8b",
        "icons": [
            {
                "src": url_for("static", filename="icons/icon-192.png"),
                "sizes": "192x192",
                "type": "image/png",
                "purpose": "any",
            },
            {
                "src": url_for("static", filename="icons/icon-512.png"),
                "sizes": "512x512",
                "type": "image/png",
                "purpose": "any",
            },
            {
                "src": url_for("static", filename="icons/maskable-512.png"),
                "sizes": "512x512",
                "type": "image/png",
                "purpose": "maskable",
            },
        ],
    }
    response = jsonify(data)
    response.mimetype = "application/manifest+json"
    return response


@functools.lru_cache(maxsize=4)
def _worker_source(stamps: tuple[tuple[str, float, int], ...]) -> str:
    """The worker script with its shell cache named after a digest of the shell's sources."""
    digest = hashlib.sha256()
    for path in SHELL_SOURCES:
        digest.update(path.read_bytes())
    source = SERVICE_WORKER.read_text(encoding="utf-8")
    return source.replace(VERSION_PLACEHOLDER, digest.hexdigest()[:16])


def shell_version_source() -> str:
    # Keyed by modification times, so an edited asset is picked up without a restart.
    stamps = tuple((str(p), p.stat().st_mtime, p.stat().st_size) for p in SHELL_SOURCES)
    return _worker_source(stamps)


@bp.route("/sw.js")
@public
def service_worker() -> Any:
    """Served from the root so its scope covers the whole app."""
    response = Response(shell_version_source(), mimetype="text/javascript")
    response.headers["Service-Worker-Allowed"] = "/"
    return response


@bp.route("/offline")
@public
def offline() -> Any:
    """Shown by the service worker when a page cannot be loaded. The worker fetches it without
    cookies, so the cached copy names nobody and carries no session's form token."""
    return render_template("pwa/offline.html")


# --- the parent's feed offline (pwa/sw.js keeps a copy only of pages marked here) --------------

#: Pages a parent may read offline after one online visit: the home feed.
OFFLINE_FEED_ENDPOINTS = frozenset({"home.dashboard"})
OFFLINE_MARK = "X-Kita-Cache"


def may_keep_offline(actor: Actor | None) -> bool:
    """Only accounts that are parents and nothing else get an offline copy: staff and admins
    work on shared devices (Kita tablets, office computers), where the next person could read
    what the worker kept. Parents use their own phones, and their copy ends with the session."""
    if session.get("tablet_id"):  # a session unlocked on a paired staff tablet
        return False
    return actor is not None and actor.is_parent and not actor.needs_second_factor


def _session_seconds_left() -> int:
    """How long the current session can live at most (its absolute timeout): the offline copy
    never outlives the session it was made for."""
    lifetime = timedelta(hours=state().config.session_absolute_hours)
    created_at = getattr(session, "created_at", None)
    if created_at is None:
        return int(lifetime.total_seconds())
    if created_at.tzinfo is None:  # SQLite hands back naive UTC datetimes
        created_at = created_at.replace(tzinfo=UTC)
    return max(0, int((created_at + lifetime - datetime.now(UTC)).total_seconds()))


@bp.after_app_request
def _offline_mark(response: Response) -> Response:
    """``private-feed; max-age=N`` on a parent's feed: the worker may keep it, for N seconds.
    ``drop`` on every page rendered without a session (the login page after a logout or an
    expired session, another person logging in): the worker deletes every kept copy."""
    if response.mimetype != "text/html":
        return response
    actor = current_actor()
    if actor is None:
        response.headers[OFFLINE_MARK] = "drop"
    elif (
        request.method == "GET"
        and request.endpoint in OFFLINE_FEED_ENDPOINTS
        and response.status_code == 200
        and may_keep_offline(actor)
    ):
        response.headers[OFFLINE_MARK] = f"private-feed; max-age={_session_seconds_left()}"
    return response
