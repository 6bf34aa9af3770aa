"""CSV import of children and guardians: upload, preview with per-row errors, commit."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("imports", __name__, url_prefix="/admin/kitas/<uuid:kita_id>/import")
