"""kita: communication backend and installable web app for the Kitas of a city."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from kita.config import KitaConfig


def create_app(config: KitaConfig | None = None) -> Flask:
    """The app factory: build the configuration (from ``KITA_*`` if not given) and the app."""
    from kita.app import build_app

    return build_app(config)
