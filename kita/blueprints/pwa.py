"""The installable app's entry points: manifest, service worker (root scope), offline page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, render_template, send_from_directory, url_for
from flask_babel import get_locale
from flask_babel import gettext as _

from kita.app import PROJECT_ROOT
from kita.web import public, text_direction

bp = Blueprint("pwa", __name__)


@bp.route("/manifest.webmanifest")
@public
def manifest() -> Any:
    """The web app manifest in the visitor's language and direction."""
    data = {
        "name": _("kita – your Kita app"),
        "short_name": "kita",
        "description": _("News, messages and documentation from your Kita."),
        "lang": str(get_locale()),
        "dir": text_direction(),
        "start_url": url_for("home.index"),
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
            },
            {
                "src": url_for("static", filename="icons/icon-512.png"),
                "sizes": "512x512",
                "type": "image/png",
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


@bp.route("/sw.js")
@public
def service_worker() -> Any:
    """Served from the root so its scope covers the whole app."""
    response = send_from_directory(PROJECT_ROOT / "pwa", "sw.js", max_age=0)
    response.headers["Service-Worker-Allowed"] = "/"
    return response


@bp.route("/offline")
@public
def offline() -> Any:
    """Shown by the service worker when a page cannot be loaded."""
    return render_template("pwa/offline.html")
