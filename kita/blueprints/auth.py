"""Login with second factor, logout, password reset, invitations, account settings, language."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from kita import audit
from kita.access import load_actor
from kita.config import SUPPORTED_LOCALES
from kita.errors import AuthenticationError, KitaError, ThrottledError, ValidationError
from kita.forms import FormReader, parse_uuid
from kita.mail import MailError, send_mail
from kita.models.accounts import User
from kita.services import accounts, invitations, tablets, throttle
from kita.web import (
    commit,
    current_actor,
    get_db,
    login_required,
    public,
    render_error,
    require_actor,
    safe_next,
    state,
)

bp = Blueprint("auth", __name__)


def _now() -> datetime:
    return datetime.now(UTC)


def _client() -> str:
    return request.remote_addr or "unknown"


def _form_error(template: str, error: ValidationError, **context: Any) -> tuple[str, int]:
    return render_template(
        template, errors=error.fields, message=error.message, form=request.form, **context
    ), error.status


def _complete_login(user: User, next_url: str | None) -> Response:
    session.clear()
    session.regenerate()  # type: ignore[attr-defined]
    session["uid"] = str(user.id)
    # A full login (password and second factor) lifts a PIN blocked on a shared tablet.
    tablets.clear_pin_block(get_db(), user.id)
    audit.record(
        get_db(), action="login.succeeded", actor_id=user.id, object_type="user", object_id=user.id
    )
    return redirect(safe_next(next_url) or url_for("home.index"))


def _throttled(error: ThrottledError, template: str) -> Any:
    body, status = (
        render_template(template, message=error.message, errors={}, form=request.form),
        error.status,
    )
    return body, status, {"Retry-After": str(error.retry_after)}


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Any:
    """Password step; staff and admins continue with their second factor."""
    if request.method == "GET":
        return render_template("auth/login.html", errors={}, form={}, next=request.args.get("next"))
    form = FormReader(request.form)
    email = form.text("email", max_length=254, required=True)
    password = form.password("password")
    next_url = safe_next(request.form.get("next"))
    try:
        form.check()
    except ValidationError as error:
        return _form_error("auth/login.html", error, next=next_url)
    db, kita_state = get_db(), state()
    try:
        throttle.check_login_allowed(
            db, kita_state.throttle, email=email, client=_client(), now=_now()
        )
        user = accounts.authenticate(db, kita_state.hasher, email=email, password=password)
    except ThrottledError as error:
        return _throttled(error, "auth/login.html")
    except AuthenticationError as error:
        throttle.record_login_failure(
            db, kita_state.throttle, email=email, client=_client(), now=_now()
        )
        audit.record(db, action="login.failed")
        commit()
        return render_template(
            "auth/login.html",
            errors={},
            message=error.message,
            form={"email": email},
            next=next_url,
        ), error.status
    throttle.clear_login_failures(db, kita_state.throttle, email=email, client=_client())
    if user.totp_enabled_at is not None:
        session.clear()
        session["pending_uid"] = str(user.id)
        session["pending_next"] = next_url or ""
        return redirect(url_for("auth.second_factor"))
    return _complete_login(user, next_url)


@bp.route("/login/code", methods=["GET", "POST"])
@public
def second_factor() -> Any:
    """Second step for staff and admins: a TOTP code or a recovery code."""
    pending = session.get("pending_uid")
    db = get_db()
    pending_id = parse_uuid(pending)
    user = db.get(User, pending_id) if pending_id else None
    if user is None or not user.is_active:
        return redirect(url_for("auth.login"))
    if request.method == "GET":
        return render_template("auth/second_factor.html", errors={}, form={})
    kita_state = state()
    code = FormReader(request.form).text("code", max_length=20)
    try:
        throttle.check_login_allowed(
            db, kita_state.throttle, email=user.email, client=_client(), now=_now()
        )
        accounts.verify_second_factor(db, user=user, code=code, now=_now())
    except ThrottledError as error:
        return _throttled(error, "auth/second_factor.html")
    except KitaError as error:
        throttle.record_login_failure(
            db, kita_state.throttle, email=user.email, client=_client(), now=_now()
        )
        audit.record(db, action="login.second_factor_failed", actor_id=user.id)
        commit()
        return render_template(
            "auth/second_factor.html", errors={"code": error.message}, form={}
        ), error.status
    throttle.clear_login_failures(db, kita_state.throttle, email=user.email, client=_client())
    return _complete_login(user, session.get("pending_next"))


@bp.route("/logout", methods=["POST"])
@public
def logout() -> Response:
    """End the session at once; the browser is told to drop caches and storage."""
    actor = current_actor()
    if actor is not None:
        audit.record(get_db(), action="logout", actor_id=actor.id)
    session.destroy()  # type: ignore[attr-defined]
    response = redirect(url_for("auth.login"))
    response.headers["Clear-Site-Data"] = '"cache", "storage"'
    return response


@bp.route("/account/two-factor", methods=["GET", "POST"])
@login_required
def totp_setup() -> Any:
    """Enrol an authenticator app: QR code, confirm with a first code, show recovery codes."""
    actor = require_actor()
    user = actor.user
    secret = session.get("totp_setup_secret")
    if not secret:
        secret = accounts.new_totp_secret()
        session["totp_setup_secret"] = secret
    uri = accounts.totp_uri(secret, user.email)
    context = {"secret": secret, "qr": invitations.qr_svg(uri), "enabled": user.totp_enabled_at}
    if request.method == "GET":
        return render_template("auth/totp_setup.html", errors={}, form={}, **context)
    code = FormReader(request.form).text("code", max_length=20)
    try:
        enrolment = accounts.enable_totp(get_db(), user=user, secret=secret, code=code, now=_now())
    except ValidationError as error:
        return _form_error("auth/totp_setup.html", error, **context)
    session.pop("totp_setup_secret", None)
    return render_template("auth/recovery_codes.html", codes=enrolment.recovery_codes)


@bp.route("/password/forgot", methods=["GET", "POST"])
@public
def forgot_password() -> Any:
    """Ask for a reset link. The answer is the same whether or not the address has an account."""
    if request.method == "GET":
        return render_template("auth/forgot.html", errors={}, form={}, sent=False)
    form = FormReader(request.form)
    email = form.text("email", max_length=254, required=True)
    try:
        form.check()
    except ValidationError as error:
        return _form_error("auth/forgot.html", error, sent=False)
    kita_state = state()
    issued = accounts.request_password_reset(
        get_db(), email=email, now=_now(), valid_minutes=kita_state.config.reset_token_minutes
    )
    if issued is not None:
        user, token = issued
        link = f"{kita_state.config.base_url}{url_for('auth.reset_password', token=token)}"
        body = _(
            "Hello %(name)s,\n\nsomeone asked to reset the password of your kita account. "
            "Open this link within %(minutes)d minutes to choose a new password:\n\n%(link)s\n\n"
            "If this was not you, you can ignore this message.",
            name=user.display_name,
            minutes=kita_state.config.reset_token_minutes,
            link=link,
        )
        try:
            send_mail(
                kita_state.config, to=user.email, subject=_("Reset your kita password"), body=body
            )
        except MailError:
            return render_error(503, _("The e-mail could not be sent. Please try again later."))
    return render_template("auth/forgot.html", errors={}, form={}, sent=True)


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
@public
def reset_password(token: str) -> Any:
    """Choose a new password with a reset link; every session of the account ends."""
    db = get_db()
    if request.method == "GET":
        accounts.find_password_reset(db, token=token, now=_now())
        return render_template("auth/reset.html", errors={}, form={}, token=token)
    form = FormReader(request.form)
    password = form.password("password")
    if password and password != request.form.get("password_repeat"):
        form.errors["password_repeat"] = _("The two passwords are not the same.")
    try:
        form.check()
        accounts.complete_password_reset(
            db, state().hasher, token=token, new_password=password, now=_now()
        )
    except ValidationError as error:
        return _form_error("auth/reset.html", error, token=token)
    return render_template("auth/reset_done.html")


@bp.route("/join/<token>", methods=["GET", "POST"])
@public
def join(token: str) -> Any:
    """Redeem an invitation: create an account, or add the role to the logged-in account."""
    db = get_db()
    invitation = invitations.find_open_invitation(db, token=token, now=_now())
    actor = current_actor()
    context = {"invitation": invitation, "token": token, "actor": actor}
    if request.method == "GET":
        form = {"email": invitation.email or "", "locale": invitation.locale or ""}
        return render_template("auth/join.html", errors={}, form=form, **context)
    if actor is not None:
        invitations.redeem_invitation(
            db, state().hasher, token=token, now=_now(), existing_user=actor.user
        )
        return redirect(url_for("home.index"))
    reader = FormReader(request.form)
    account = invitations.NewAccount(
        display_name=reader.text("display_name", max_length=120, required=True),
        email=reader.text("email", max_length=254, required=True),
        password=reader.password("password"),
        locale=reader.choice("locale", SUPPORTED_LOCALES, required=False),
    )
    if account.password and account.password != request.form.get("password_repeat"):
        reader.errors["password_repeat"] = _("The two passwords are not the same.")
    # Report the shape errors and the account's own problems (taken address, ...) together.
    reader.errors = invitations.check_new_account(db, account) | reader.errors
    try:
        reader.check()
        user = invitations.redeem_invitation(
            db, state().hasher, token=token, now=_now(), new_account=account
        )
    except ValidationError as error:
        return _form_error("auth/join.html", error, **context)
    if load_actor(db, user).needs_second_factor:
        # Staff continue with enrolment of their second factor right away.
        return _complete_login(user, url_for("auth.totp_setup"))
    return _complete_login(user, None)


@bp.route("/account", methods=["GET", "POST"])
@login_required
def account() -> Any:
    """Account settings: language and password."""
    actor = require_actor()
    if request.method == "GET":
        return render_template("auth/account.html", errors={}, form={}, saved=False)
    form = FormReader(request.form)
    current = form.password("current_password")
    new = form.password("new_password")
    if new and new != request.form.get("new_password_repeat"):
        form.errors["new_password_repeat"] = _("The two passwords are not the same.")
    try:
        form.check()
        accounts.change_password(
            get_db(),
            state().hasher,
            user=actor.user,
            current_password=current,
            new_password=new,
            now=_now(),
        )
    except ValidationError as error:
        return _form_error("auth/account.html", error, saved=False)
    # Every other session ended; this browser continues with a fresh one.
    session.regenerate()  # type: ignore[attr-defined]
    return render_template("auth/account.html", errors={}, form={}, saved=True)


@bp.route("/language", methods=["POST"])
@public
def set_language() -> Response:
    """Switch the language: stored on the account, or in this session before login."""
    locale = FormReader(request.form).choice("locale", SUPPORTED_LOCALES)
    target = safe_next(request.form.get("next")) or url_for("home.index")
    if locale is None:
        return redirect(target)
    actor = current_actor()
    if actor is not None:
        accounts.set_locale(get_db(), user=actor.user, locale=locale)
    else:
        session["locale"] = locale
    return redirect(target)
