"""Assembles the Flask application: configuration, database, extensions, blueprints, hooks."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from kita import web
from kita.config import SUPPORTED_LOCALES, ConfigError, KitaConfig
from kita.crypto import Keyring, KeyService, SqliteKeystore
from kita.db import Database
from kita.extensions import babel, csrf
from kita.migrations import current_revision_matches_head
from kita.services.accounts import make_password_hasher
from kita.services.throttle import ThrottlePolicy
from kita.sessions import DatabaseSessionInterface

PACKAGE_ROOT = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_ROOT.parent


def build_app(config: KitaConfig | None = None) -> Flask:
    config = config or KitaConfig.from_env()
    app = Flask(
        __name__,
        static_folder=str(PROJECT_ROOT / "pwa"),
        static_url_path="/static",
        instance_path=str(config.instance_path),
    )
    app.config.update(
        SECRET_KEY=config.secret_key,
        TESTING=config.testing,
        SESSION_COOKIE_NAME=config.session_cookie_name,
        SESSION_COOKIE_SECURE=config.cookie_secure,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        MAX_CONTENT_LENGTH=5 * 1024 * 1024,
        BABEL_DEFAULT_LOCALE=config.default_locale,
        BABEL_DEFAULT_TIMEZONE="Europe/Berlin",
        BABEL_TRANSLATION_DIRECTORIES=str(PROJECT_ROOT / "translations"),
        # CSRF tokens live as long as the session; the session's own timeouts bound them.
        WTF_CSRF_TIME_LIMIT=None,
        WTF_CSRF_SSL_STRICT=config.cookie_secure,
        SEND_FILE_MAX_AGE_DEFAULT=timedelta(hours=1),
        LANGUAGES=SUPPORTED_LOCALES,
    )
    database = Database(config.database_url)
    if config.check_migrations and not current_revision_matches_head(database):
        database.dispose()
        raise ConfigError(
            "The database is not migrated to the current schema: run `kita init` "
            "(or `kita db upgrade`) first."
        )
    keyring = Keyring(config.keys_dir, config.master_key)
    if not keyring.versions:
        database.dispose()
        raise ConfigError(
            f"No master key in {config.keys_dir} and KITA_MASTER_KEY is not set: run `kita init`."
        )
    app.extensions["kita"] = web.KitaState(
        config=config,
        database=database,
        hasher=make_password_hasher(config.password_hashing),
        throttle=ThrottlePolicy(
            secret=config.secret_key.encode(),
            pair_limit=config.throttle_pair_limit,
            client_limit=config.throttle_client_limit,
            window_seconds=config.throttle_window_seconds,
        ),
        keys=KeyService(keyring, SqliteKeystore(config.keystore_path)),
    )
    app.session_interface = DatabaseSessionInterface(
        database,
        idle=timedelta(minutes=config.session_idle_minutes),
        absolute=timedelta(hours=config.session_absolute_hours),
    )
    if config.trusted_proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=config.trusted_proxies, x_proto=config.trusted_proxies
        )
    babel.init_app(app, locale_selector=web.select_locale, timezone_selector=None)
    csrf.init_app(app)
    web.init_app(app)

    from kita.blueprints import admin, api, auth, documentation, home, imports, pwa, reports
    from kita.blueprints import notifications as notifications_bp
    from kita.blueprints import tablets as tablets_bp

    for module in (auth, home, admin, imports, pwa, api, reports, documentation, tablets_bp):
        app.register_blueprint(module.bp)
    app.register_blueprint(notifications_bp.bp)
    from kita.blueprints import conversations as conversations_bp

    app.register_blueprint(conversations_bp.bp)
    from kita.blueprints import messages as messages_bp

    app.register_blueprint(messages_bp.bp)
    from kita.blueprints import announcements as announcements_bp

    app.register_blueprint(announcements_bp.bp)
    return app
