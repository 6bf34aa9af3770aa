"""Shared staff tablets: pairing and revoking (leaders), the PIN (staff), the tiles, unlocking
and locking on the device, and today's view of a group with offline observation capture.

A tablet session is an ordinary server session whose data also names the tablet. Every request
of such a session checks that it still comes from that device (its cookie), that the tablet is
not revoked and that the session was used within the tablet's lock time; otherwise the session
ends and the device shows the tiles again.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import (
    Blueprint,
    Response,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from werkzeug.wrappers import Response as BaseResponse

from kita import access
from kita.errors import NotFoundError, ValidationError
from kita.extensions import csrf
from kita.forms import FormReader
from kita.models.messaging import Tablet
from kita.services import tablets
from kita.services.tablets import PinBlockedError, WrongPinError
from kita.web import (
    commit,
    current_actor,
    get_db,
    login_required,
    manager_required,
    public,
    require_actor,
    state,
)

bp = Blueprint("tablets", __name__)

#: Browsers cap cookie lifetimes at 400 days; visiting the tiles renews it.
DEVICE_COOKIE_DAYS = 400
#: ``last_seen_at`` of a session is written at most once a minute (kita.sessions), so the
#: server allows that minute on top of the lock time before it ends an idle tablet session.
IDLE_SLACK = timedelta(minutes=1)
#: The app's start pages, which a paired tablet replaces by its own.
HOME_ENDPOINTS = frozenset({"home.index", "home.dashboard"})


def _now() -> datetime:
    return datetime.now(UTC)


def device_cookie_name() -> str:
    # The __Host- prefix needs Secure, Path=/ and no Domain, like the session cookie.
    return "__Host-kita_tablet" if state().config.cookie_secure else "kita_tablet"


def _device_token() -> str | None:
    return request.cookies.get(device_cookie_name())


def _set_device_cookie(response: BaseResponse, token: str) -> None:
    response.set_cookie(
        device_cookie_name(),
        token,
        max_age=int(timedelta(days=DEVICE_COOKIE_DAYS).total_seconds()),
        path="/",
        secure=state().config.cookie_secure,
        httponly=True,
        samesite="Lax",
    )


def _this_tablet() -> Tablet | None:
    """The paired tablet this request comes from, or None."""
    return tablets.find_tablet(get_db(), _device_token())


def _lock_seconds(tablet: Tablet) -> int:
    return tablets.lock_minutes(tablet, state().config.tablet_lock_minutes) * 60


# --- the tablet session guard ------------------------------------------------------------------


@bp.before_app_request
def _check_tablet_session() -> Any:
    """End a tablet session that left its device, outlived the lock time or whose tablet was
    revoked; pages go back to the tiles, the API answers 401."""
    raw_id = session.get("tablet_id")
    if request.endpoint in HOME_ENDPOINTS and request.method == "GET":
        # The installed app opens the start URL: on a paired tablet that is the tiles, or
        # today's view once someone has unlocked it.
        if raw_id:
            return redirect(url_for("tablets.today"))
        if session.get("uid") is None and _device_token():
            return redirect(url_for("tablets.start"))
    if not raw_id or request.endpoint == "static":
        return None
    with state().database.session() as db:
        reason = tablets.session_lock_reason(
            db,
            tablet_id=uuid.UUID(raw_id),
            device_token=_device_token(),
            raw_user_id=session.get("uid"),
            last_seen=getattr(session, "last_seen_at", None),
            now=_now(),
            default_lock_minutes=state().config.tablet_lock_minutes,
            slack=IDLE_SLACK,
        )
    if reason is None:
        return None
    user_id = session.get("uid")
    with state().database.transaction() as db:
        tablets.record_lock(
            db,
            tablet_id=uuid.UUID(raw_id),
            user_id=uuid.UUID(user_id) if user_id else None,
            reason=reason,
        )
    session.destroy()  # type: ignore[attr-defined]
    g.pop("actor", None)
    if request.path.startswith("/api/"):
        return jsonify(error="Locked", message=_("The tablet was locked.")), 401
    return redirect(url_for("tablets.start"))


# --- leaders: pairing and revoking ---------------------------------------------------------------


def _render_manage(kita: Any, status: int = 200, **context: Any) -> tuple[str, int]:
    context.setdefault("errors", {})
    context.setdefault("form", {})
    return render_template(
        "tablets/manage.html",
        kita=kita,
        tablets=tablets.list_tablets(get_db(), kita),
        this_tablet=_this_tablet(),
        default_minutes=state().config.tablet_lock_minutes,
        **context,
    ), status


@bp.route("/admin/kitas/<uuid:kita_id>/tablets", methods=["GET", "POST"])
@manager_required
def manage(kita_id: uuid.UUID) -> Any:
    """The Kita's tablets, and pairing the device in hand as a new one; 404 unless the actor
    manages the Kita."""
    db, actor = get_db(), require_actor()
    kita = access.get_kita(db, actor, kita_id, access.Action.MANAGE)
    if request.method == "GET":
        return _render_manage(kita)
    form = FormReader(request.form)
    name = form.text("name", max_length=tablets.NAME_MAX, required=True)
    raw_minutes = form.text("lock_minutes", max_length=4)
    minutes = None
    if raw_minutes:
        if raw_minutes.isdigit():
            minutes = int(raw_minutes)
        else:
            form.errors["lock_minutes"] = _("Please enter a number of minutes between 1 and 240.")
    try:
        form.check()
        paired = tablets.pair_tablet(
            db, actor=actor, kita=kita, name=name, lock_minutes=minutes, now=_now()
        )
    except ValidationError as error:
        return _render_manage(kita, error.status, errors=error.fields, form=request.form)
    flash(_("This device is now the tablet “%(name)s”.", name=paired.tablet.name), "success")
    response = redirect(url_for("tablets.manage", kita_id=kita.id))
    _set_device_cookie(response, paired.token)
    return response


@bp.route("/admin/kitas/<uuid:kita_id>/tablets/<uuid:tablet_id>/revoke", methods=["POST"])
@manager_required
def revoke(kita_id: uuid.UUID, tablet_id: uuid.UUID) -> Any:
    """Unpair a tablet: its sessions end and what it keeps offline can no longer be read."""
    db, actor = get_db(), require_actor()
    kita = access.get_kita(db, actor, kita_id, access.Action.MANAGE)
    tablet = access.get_tablet(db, actor, kita, tablet_id)
    here = tablets.token_matches(tablet, _device_token())
    tablets.revoke_tablet(db, actor=actor, tablet=tablet, keys=state().keys, now=_now())
    flash(_("The tablet “%(name)s” is no longer paired.", name=tablet.name), "success")
    response = redirect(url_for("tablets.manage", kita_id=kita.id))
    if here:
        response.delete_cookie(
            device_cookie_name(), path="/", secure=state().config.cookie_secure, httponly=True
        )
    return response


# --- staff: the PIN ------------------------------------------------------------------------------


@bp.route("/account/pin", methods=["GET", "POST"])
@login_required
def pin() -> Any:
    """Set, change or remove the personal PIN for shared tablets; 404 for people who cannot
    use tablets (parents, council members, caretakers, provider admins)."""
    db, actor = get_db(), require_actor()
    if not actor.has_any_role(*access.TABLET_ROLES):
        raise NotFoundError()
    context: dict[str, Any] = {"errors": {}, "saved": False}
    if request.method == "POST":
        if request.form.get("remove"):
            tablets.remove_pin(db, user=actor.user)
            context["saved"] = True
        else:
            reader = FormReader(request.form)
            new_pin = reader.text("pin", max_length=16, required=True)
            if new_pin and new_pin != request.form.get("pin_repeat", "").strip():
                reader.errors["pin_repeat"] = _("The two PINs are not the same.")
            try:
                reader.check()
                tablets.set_pin(db, state().hasher, user=actor.user, pin=new_pin, now=_now())
                context["saved"] = True
            except ValidationError as error:
                context["errors"] = error.fields
                return render_template(
                    "tablets/pin.html", status=tablets.pin_status(db, actor.id), **context
                ), error.status
    status = tablets.pin_status(db, actor.id)
    return render_template("tablets/pin.html", status=status, **context)


# --- on the device -------------------------------------------------------------------------------


@bp.route("/tablet")
@public
def start() -> Any:
    """The tiles of the staff who may unlock this tablet, or how to pair it."""
    token = _device_token()
    tablet = tablets.find_tablet(get_db(), token)
    if tablet is None:
        response = Response(render_template("tablets/unpaired.html"))
        if token:  # a revoked or unknown device token: forget it
            response.delete_cookie(
                device_cookie_name(), path="/", secure=state().config.cookie_secure, httponly=True
            )
        return response
    actor = current_actor()
    if actor is not None and session.get("tablet_id") == str(tablet.id):
        return redirect(url_for("tablets.today"))
    people = get_db().scalars(access.tablet_staff(tablet)).all()
    response = Response(render_template("tablets/tiles.html", tablet=tablet, people=people))
    _set_device_cookie(response, token or "")
    return response


def first_name(display_name: str) -> str:
    """What a tile shows: the first word of the name."""
    return (display_name.split() or [display_name])[0]


@bp.route("/tablet/unlock/<uuid:user_id>", methods=["GET", "POST"])
@public
def unlock(user_id: uuid.UUID) -> Any:
    """The PIN pad of one person; a right PIN opens a session bound to this tablet."""
    db = get_db()
    tablet = _this_tablet()
    if tablet is None:
        return redirect(url_for("tablets.start"))
    person = tablets.tablet_user(db, tablet, user_id)
    context: dict[str, Any] = {"tablet": tablet, "person": person, "errors": {}}
    context["blocked"] = tablets.pin_status(db, person.id) == "blocked"
    if request.method == "GET":
        return render_template("tablets/unlock.html", **context)
    entered = FormReader(request.form).text("pin", max_length=16)
    try:
        user = tablets.unlock(
            db, state().hasher, tablet=tablet, user_id=person.id, pin=entered, now=_now()
        )
    except (WrongPinError, PinBlockedError) as error:
        commit()  # the failure counts even though the answer is an error
        context["blocked"] = isinstance(error, PinBlockedError)
        context["errors"] = {"pin": error.message}
        return render_template("tablets/unlock.html", **context), error.status
    session.clear()
    session.regenerate()  # type: ignore[attr-defined]
    session["uid"] = str(user.id)
    session["tablet_id"] = str(tablet.id)
    return redirect(url_for("tablets.today"))


@bp.route("/tablet/lock", methods=["POST"])
@public
@csrf.exempt
def lock() -> Any:
    """End the tablet session at once. The outbox on the device stays (it is encrypted and its
    key lived only in the page's memory); the page clears caches and local storage.

    Without CSRF protection on purpose: a tablet that slept past the server's idle timeout
    still sends its lock with a form token of the ended session, and must land on the tiles,
    not on an error page; a forged request can do no more than lock the tablet."""
    raw_id = session.get("tablet_id")
    if raw_id:
        actor = current_actor()
        tablets.record_lock(
            get_db(),
            tablet_id=uuid.UUID(raw_id),
            user_id=actor.id if actor else None,
            reason="manual",
        )
        session.destroy()  # type: ignore[attr-defined]
    response = redirect(url_for("tablets.start"))
    # Not "storage": that would delete unsent (encrypted) observations in IndexedDB.
    response.headers["Clear-Site-Data"] = '"cache"'
    return response


@bp.route("/tablet/today")
@login_required
def today() -> Any:
    """Today's view: the children of the groups the actor documents, with quick actions to
    write an observation (offline as well, on a tablet)."""
    db, actor = get_db(), require_actor()
    local_today = datetime.now(ZoneInfo("Europe/Berlin")).date()
    groups = tablets.today_view(db, actor, today=local_today)
    tablet = None
    if session.get("tablet_id"):
        tablet = db.get(Tablet, uuid.UUID(session["tablet_id"]))
    return render_template(
        "tablets/today.html",
        groups=groups,
        tablet=tablet,
        lock_seconds=_lock_seconds(tablet) if tablet is not None else None,
        strings=_client_strings(),
    )


def _client_strings() -> dict[str, str]:
    """Messages pwa/outbox.js shows, translated here (the page carries them as JSON)."""
    return {
        "pending": _("Waiting to be sent"),
        "text_required": _("Please write what you observed."),
        "synced": _("Sent"),
        "offline": _(
            "You are offline. Observations are kept encrypted on this tablet and sent when "
            "the connection is back."
        ),
        "server_error": _("The server had a problem. The observation is kept and sent again."),
        "network_error": _("The connection broke off. The observation is kept and sent again."),
        "rejected": _("The server did not accept this observation:"),
        "conflict": _(
            "Someone else changed this observation in the meantime. Choose which version to keep."
        ),
        "mine": _("Your version"),
        "theirs": _("Saved version"),
        "keep_mine": _("Keep my version"),
        "take_theirs": _("Use the saved version"),
        "damaged": _("Damaged entry: it cannot be read on this tablet. It is kept and not sent."),
        "remove": _("Remove from this tablet"),
        "remove_confirm": _("Remove this entry from the tablet? It has not been sent."),
        "edit": _("Edit"),
        "quota": _(
            "The tablet's storage is full: the observation was NOT saved. Go online so waiting "
            "observations can be sent, or leave out the photo, and try again."
        ),
        "saved_local": _("Saved on this tablet."),
        "no_key": _("The tablet is locked. Please unlock it again."),
        "photo": _("with photo"),
        "empty": _("Nothing waiting."),
        "too_large": _("The photo is too large (at most 10 MB)."),
    }


def _lock_form_context() -> dict[str, Any]:
    return {"is_tablet_session": bool(session.get("tablet_id"))}


bp.app_context_processor(_lock_form_context)


@bp.app_template_filter("first_name")
def _first_name_filter(display_name: str) -> str:
    return first_name(display_name)
