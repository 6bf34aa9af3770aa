"""The installable app's entry points: manifest, service worker (root scope), offline page."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify, render_template, url_for
from flask_babel import get_locale
from flask_babel import gettext as _

from kita.app import PACKAGE_ROOT, PROJECT_ROOT
from kita.web import public, text_direction

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
