"""HTTP glue shared by every blueprint: the request's database session (one transaction per
request), the current actor, route guards, locale selection, security headers and error pages."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from argon2 import PasswordHasher
from flask import (
    Flask,
    Response,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from kita.access import Actor, load_actor
from kita.config import RTL_LOCALES, SUPPORTED_LOCALES, KitaConfig
from kita.crypto import KeyService
from kita.db import Database
from kita.errors import KitaError, describe_exception
from kita.models.accounts import User
from kita.models.organisation import Kita
from kita.services.throttle import ThrottlePolicy

F = TypeVar("F", bound=Callable[..., Any])

LANGUAGE_NAMES = {
    "de": "Deutsch",
    "en": "English",
    "tr": "Türkçe",
    "ar": "العربية",
    "bg": "Български",
    "ro": "Română",
    "pl": "Polski",
    "uk": "Українська",
    "ru": "Русский",
    "fa": "فارسی",
}

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'; manifest-src 'self'; worker-src 'self'"
)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class KitaState:
    config: KitaConfig
    database: Database
    hasher: PasswordHasher
    throttle: ThrottlePolicy
    keys: KeyService


def state() -> KitaState:
    return cast(KitaState, current_app.extensions["kita"])


def get_db() -> Session:
    """The request's session; state-changing requests take SQLite's write lock at the start."""
    if "db" not in g:
        g.db = state().database.session(write=request.method not in SAFE_METHODS)
    return cast(Session, g.db)


def commit() -> None:
    """Commit now (for views that answer with an error status but must keep a write)."""
    if "db" in g:
        g.db.commit()


def current_actor() -> Actor | None:
    if "actor" not in g:
        g.actor = None
        uid = session.get("uid")
        if uid:
            try:
                user = get_db().get(User, uuid.UUID(uid))
            except ValueError:
                user = None
            if user is not None and user.is_active:
                g.actor = load_actor(get_db(), user)
    return cast(Actor | None, g.actor)


def require_actor() -> Actor:
    actor = current_actor()
    if actor is None:
        raise KitaError()
    return actor


# --- guards ----------------------------------------------------------------------------------
# Every view carries exactly one guard; tests/integration/test_authorization_matrix.py fails for
# a route without one. Object-level checks happen in kita.access loaders inside the view.

GUARDS = ("public", "user", "manager", "provider_admin")


def audited_read(view: F) -> F:
    """Mark a GET view that writes (an audit row for every read of documentation).

    Its request gets a write session from the start: on SQLite a read transaction that later
    writes can fail under concurrent writers. Place it under the guard decorator.
    """
    view.kita_writes = True  # type: ignore[attr-defined]
    return view


def _guard(name: str, check: Callable[[Actor], bool] | None) -> Callable[[F], F]:
    def decorator(view: F) -> F:
        writes = getattr(view, "kita_writes", False)

        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if writes and "db" not in g:
                g.db = state().database.session(write=True)
            if name != "public":
                actor = current_actor()
                if actor is None:
                    return redirect(url_for("auth.login", next=_safe_next(request.full_path)))
                if (
                    actor.needs_second_factor
                    and actor.user.totp_enabled_at is None
                    and request.endpoint not in {"auth.totp_setup", "auth.logout"}
                ):
                    return redirect(url_for("auth.totp_setup"))
                if check is not None and not check(actor):
                    return render_error(404)
            return view(*args, **kwargs)

        wrapped.kita_guard = name  # type: ignore[attr-defined]
        return cast(F, wrapped)

    return decorator


public = _guard("public", None)
login_required = _guard("user", None)
manager_required = _guard("manager", lambda actor: actor.may_administer)
provider_admin_required = _guard("provider_admin", lambda actor: actor.is_provider_admin)


def _safe_next(target: str | None) -> str | None:
    """Only local paths are accepted as redirect targets."""
    if not target:
        return None
    target = target.rstrip("?")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return None
    return target


safe_next = _safe_next


# --- locale ----------------------------------------------------------------------------------


def select_locale() -> str:
    """User setting, then the choice in this session, then Accept-Language, then the Kita's
    default, then the installation's default."""
    actor = current_actor() if request else None
    if actor is not None and actor.user.locale in SUPPORTED_LOCALES:
        return cast(str, actor.user.locale)
    chosen = session.get("locale")
    if chosen in SUPPORTED_LOCALES:
        return cast(str, chosen)
    best = request.accept_languages.best_match(SUPPORTED_LOCALES)
    if best:
        return best
    if actor is not None and actor.roles:
        kita_default = (
            get_db()
            .scalars(
                select(Kita.default_locale)
                .where(Kita.id.in_(list(actor.roles)))
                .order_by(Kita.name)
            )
            .first()
        )
        if kita_default in SUPPORTED_LOCALES:
            return cast(str, kita_default)
    return state().config.default_locale


def text_direction() -> str:
    return "rtl" if str(get_locale()) in RTL_LOCALES else "ltr"


# --- errors ----------------------------------------------------------------------------------

ERROR_TITLES = {
    400: _l("The request could not be understood."),
    401: _l("Please log in."),
    403: _l("You are not allowed to do this."),
    404: _l("This page does not exist or you do not have access to it."),
    405: _l("This action is not possible here."),
    409: _l("Someone else changed this in the meantime. Please reload and try again."),
    410: _l("This link is no longer valid."),
    413: _l("The upload is too large."),
    422: _l("Please correct the marked fields."),
    429: _l("Too many attempts. Please wait a moment and try again."),
    500: _l("Something went wrong on our side. Nothing you entered was saved."),
}


def render_error(status: int, message: object | None = None) -> tuple[str, int]:
    title = ERROR_TITLES.get(status, ERROR_TITLES[500])
    return render_template("errors/error.html", status=status, message=message or title), status


def wants_json() -> bool:
    return request.path.startswith("/api/")


def _handle_kita_error(error: KitaError) -> Any:
    if wants_json():
        return {"error": type(error).__name__, "message": str(error.message)}, error.status
    return render_error(error.status, error.message)


def _handle_http_error(error: HTTPException) -> Any:
    status = error.code or 500
    if wants_json():
        return {"error": error.name, "message": str(ERROR_TITLES.get(status, error.name))}, status
    return render_error(status)


def _handle_csrf_error(error: CSRFError) -> Any:
    return render_error(400, _l("The form has expired. Please reload the page and try again."))


def _handle_unexpected(error: Exception) -> Any:
    # Logged without request data: the traceback names code, not content.
    current_app.logger.error("unhandled %s", describe_exception(error))
    return render_error(500)


# --- hooks -----------------------------------------------------------------------------------


def _finish_transaction(response: Response) -> Response:
    if "db" in g:
        if response.status_code < 400:
            g.db.commit()
        else:
            g.db.rollback()
    return response


def _teardown(_exc: BaseException | None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.rollback()
        db.close()


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(self), microphone=(), geolocation=()")
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
    if request.endpoint != "static":
        # Pages may carry personal data: never stored by browsers or proxies.
        headers["Cache-Control"] = "no-store"
        response.vary.add("Cookie")
    return response


def _template_context() -> dict[str, Any]:
    locale = str(get_locale())
    return {
        "current_actor": current_actor(),
        "languages": [(code, LANGUAGE_NAMES[code]) for code in SUPPORTED_LOCALES],
        "current_locale": locale,
        "text_direction": "rtl" if locale in RTL_LOCALES else "ltr",
    }


def init_app(app: Flask) -> None:
    app.after_request(_finish_transaction)
    app.after_request(_security_headers)
    app.teardown_request(_teardown)
    app.context_processor(_template_context)
    app.register_error_handler(KitaError, _handle_kita_error)
    app.register_error_handler(CSRFError, _handle_csrf_error)
    app.register_error_handler(HTTPException, _handle_http_error)
    app.register_error_handler(Exception, _handle_unexpected)
