"""The JSON API (``/api/v1``) for the offline outbox: idempotent saves of observations and
photos by ids the client made, reading entries, photos and a child's timeline.

Authentication is the session cookie, so CSRF protection stays on: clients send the token in
the ``X-CSRFToken`` header (``GET /api/v1/session`` hands it out). Errors are JSON: ``{"error",
"message"}`` plus ``fields`` (422) or ``current_version`` (409). Objects the actor may not see
answer 404, exactly like objects that do not exist.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from flask import Blueprint, Response, g, jsonify, request, url_for
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError, generate_csrf

from kita import access
from kita.access import DocumentationAccess
from kita.blobs import BlobStore
from kita.errors import KitaError, ValidationError
from kita.forms import parse_uuid
from kita.push.endpoints import (
    MAX_SUBSCRIPTION_JSON_BYTES,
    InvalidSubscriptionError,
    parse_subscription,
)
from kita.services import documentation, photos, push_subscriptions
from kita.services.documentation import EntryInput, EntryView, StaleEditError
from kita.web import ERROR_TITLES, current_actor, get_db, login_required, require_actor, state

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# Room for the multipart envelope around a photo of the maximum size.
UPLOAD_LIMIT = photos.MAX_UPLOAD_BYTES + 256 * 1024
# GET endpoints that write an audit event: they take SQLite's write lock from the start.
AUDITED_READS = frozenset({"api.get_observation", "api.get_photo", "api.timeline"})


# --- hooks and errors ------------------------------------------------------------------------


@bp.url_value_preprocessor
def _upload_limit(endpoint: str | None, _values: dict[str, Any] | None) -> None:
    # URL value preprocessors run before every before_request hook, in particular before the
    # CSRF check, which parses (and so size-checks) a multipart body.
    if endpoint == "api.upload_photo":
        request.max_content_length = UPLOAD_LIMIT


@bp.before_request
def _api_request() -> Any:
    if request.endpoint in AUDITED_READS and "db" not in g:
        # kita.web.get_db() opens read sessions for GET; an audited read also writes, and a
        # read transaction upgraded to a write can fail under concurrent writers on SQLite.
        g.db = state().database.session(write=True)
    if current_actor() is None:
        return _error("Unauthorized", str(ERROR_TITLES[401]), 401)
    return None


def _error(name: str, message: str, status: int, **extra: Any) -> tuple[Response, int]:
    return jsonify(error=name, message=message, **extra), status


@bp.errorhandler(ValidationError)
def _validation_error(error: ValidationError) -> Any:
    fields = {name: str(message) for name, message in error.fields.items()}
    return _error("ValidationError", str(error.message), error.status, fields=fields)


@bp.errorhandler(StaleEditError)
def _stale_error(error: StaleEditError) -> Any:
    return _error("StaleEditError", str(error.message), 409, current_version=error.current_version)


@bp.errorhandler(CSRFError)
def _csrf_error(_error_: CSRFError) -> Any:
    return _error(
        "CSRFError", _("The form has expired. Please reload the page and try again."), 400
    )


# --- parsing ---------------------------------------------------------------------------------


def _json_object() -> dict[str, Any]:
    """The request body as a JSON object, or 400."""
    body = request.get_json(silent=True) if request.is_json else None
    if not isinstance(body, dict):
        raise KitaError(_("Please send a JSON object (Content-Type: application/json)."))
    return body


def _check_idempotency_key(object_id: uuid.UUID) -> None:
    """The optional ``Idempotency-Key`` header must name the object the URL names."""
    raw = request.headers.get("Idempotency-Key")
    if raw is not None and parse_uuid(raw.strip()) != object_id:
        raise KitaError(_("The Idempotency-Key header must be the id in the address."))


def _string(body: dict[str, Any], name: str, default: str, errors: dict[str, object]) -> str:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str):
        errors[name] = _("Please enter a text.")
        return default
    return value


def _string_list(body: dict[str, Any], name: str, errors: dict[str, object]) -> list[str]:
    value = body.get(name) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors[name] = _("Please choose from the offered options.")
        return []
    return value


def _entry_input(body: dict[str, Any]) -> EntryInput:
    """Shape checks of a PUT body (types, ids, dates); the service checks meaning."""
    errors: dict[str, object] = {}
    child_id = parse_uuid(body.get("child_id"))
    if child_id is None:
        errors["child_id"] = _("Please choose a child.")
    template_id = None
    if body.get("template_id") is not None:
        template_id = parse_uuid(body.get("template_id"))
        if template_id is None:
            errors["template_id"] = _("Please choose one of the Kita's templates.")
    values = body.get("template_values") or {}
    if not isinstance(values, dict) or not all(
        isinstance(v, str | int) or v is None for v in values.values()
    ):
        errors["template_values"] = _("Please fill in the template's fields.")
        values = {}
    observed_on = None
    if body.get("observed_on") is not None:
        try:
            observed_on = date.fromisoformat(str(body["observed_on"])[:10])
        except ValueError:
            errors["observed_on"] = _("Please enter a date like 2024-03-31.")
    base_version = body.get("base_version", 0)
    if base_version is None:
        base_version = 0
    if isinstance(base_version, bool) or not isinstance(base_version, int) or base_version < 0:
        errors["base_version"] = _("Please send the version the change is based on.")
        base_version = 0
    data = EntryInput(
        child_id=child_id or uuid.UUID(int=0),
        kind=_string(body, "kind", "observation", errors),
        status=_string(body, "status", "draft", errors),
        title=_string(body, "title", "", errors),
        text=_string(body, "text", "", errors),
        areas=_string_list(body, "areas", errors),
        dispositions=_string_list(body, "dispositions", errors),
        template_id=template_id,
        template_values=values,
        observed_on=observed_on,
        base_version=base_version,
    )
    if errors:
        raise ValidationError(errors)
    return data


def _date_arg(name: str, errors: dict[str, object]) -> date | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw[:10])
    except ValueError:
        errors[name] = _("Please enter a date like 2024-03-31.")
        return None


def _page_arg() -> int:
    raw = request.args.get("page", "1")
    return int(raw) if raw.isdigit() and len(raw) < 7 else 1


# --- output ----------------------------------------------------------------------------------


def _entry_json(entry: EntryView) -> dict[str, Any]:
    return {
        "id": str(entry.id),
        "child_id": str(entry.child_id),
        "author": {"id": str(entry.author_id), "name": entry.author_name},
        "kind": entry.kind.value,
        "status": entry.status.value,
        "title": entry.title,
        "text": entry.text,
        "areas": [area.value for area in entry.areas],
        "dispositions": [d.value for d in entry.dispositions],
        "template_id": str(entry.template_id) if entry.template_id else None,
        "template_values": entry.template_values,
        "observed_on": entry.observed_on.isoformat(),
        "version": entry.version,
        "created_at": entry.created_at.isoformat(),
        "updated_at": entry.updated_at.isoformat(),
        "shared_with_family_at": (
            entry.shared_with_family_at.isoformat() if entry.shared_with_family_at else None
        ),
        "photos": [
            {"id": str(photo_id), "url": url_for("api.get_photo", photo_id=photo_id)}
            for photo_id in entry.photo_ids
        ],
    }


def _blobs() -> BlobStore:
    return BlobStore(state().config.blob_dir)


# --- routes ----------------------------------------------------------------------------------


@bp.route("/session")
@login_required
def session_info() -> Any:
    """The current user's id and a CSRF token for the ``X-CSRFToken`` header."""
    actor = require_actor()
    return {"user_id": str(actor.id), "csrf_token": generate_csrf()}


@bp.route("/observations/<uuid:entry_id>", methods=["PUT"])
@login_required
def put_observation(entry_id: uuid.UUID) -> Any:
    """Create (201) or change (200) an observation; a replayed save answers 200 unchanged,
    a stale ``base_version`` 409, another person's child 404, missing consent 403."""
    _check_idempotency_key(entry_id)
    result = documentation.save_entry(
        get_db(),
        actor=require_actor(),
        keys=state().keys,
        entry_id=entry_id,
        data=_entry_input(_json_object()),
    )
    response = jsonify(_entry_json(result.entry))
    if result.created:
        response.status_code = 201
        response.headers["Location"] = url_for("api.get_observation", entry_id=entry_id)
    return response


@bp.route("/observations/<uuid:entry_id>")
@login_required
def get_observation(entry_id: uuid.UUID) -> Any:
    """One entry (audited); 404 unless the actor may read it."""
    entry = documentation.read_entry(
        get_db(), actor=require_actor(), keys=state().keys, entry_id=entry_id
    )
    return _entry_json(entry)


@bp.route("/observations/<uuid:entry_id>/share", methods=["POST"])
@login_required
def share_observation(entry_id: uuid.UUID) -> Any:
    """Share a final entry with the family (``{"shared": true}``) or stop sharing it."""
    db, actor = get_db(), require_actor()
    access.get_documentation_entry(db, actor, entry_id, write=True)  # 404 before any 4xx
    shared = _json_object().get("shared")
    if not isinstance(shared, bool):
        raise ValidationError({"shared": _("Please choose one of the offered options.")})
    entry = documentation.share_entry(db, actor=actor, entry_id=entry_id, shared=shared)
    shared_at = entry.shared_with_family_at
    return {
        "id": str(entry.id),
        "shared_with_family_at": shared_at.isoformat() if shared_at else None,
    }


@bp.route("/observations/<uuid:entry_id>/photos", methods=["POST"])
@login_required
def upload_photo(entry_id: uuid.UUID) -> Any:
    """Attach a photo (multipart ``file`` and ``photo_id``, or the id as Idempotency-Key):
    201 when stored, 200 when this photo id was stored before."""
    db, actor = get_db(), require_actor()
    access.get_documentation_entry(db, actor, entry_id, write=True)  # 404 before any 4xx
    photo_id = parse_uuid(request.form.get("photo_id") or request.headers.get("Idempotency-Key"))
    if photo_id is None:
        raise ValidationError({"photo_id": _("Please send the photo's id.")})
    _check_idempotency_key(photo_id)
    upload = request.files.get("file")
    data = upload.read(photos.MAX_UPLOAD_BYTES + 1) if upload is not None else b""
    photo, created = photos.add_photo(
        db,
        actor=actor,
        keys=state().keys,
        blobs=_blobs(),
        entry_id=entry_id,
        photo_id=photo_id,
        data=data,
    )
    body = {
        "id": str(photo.id),
        "entry_id": str(photo.entry_id),
        "width": photo.width,
        "height": photo.height,
        "url": url_for("api.get_photo", photo_id=photo.id),
    }
    return body, 201 if created else 200


@bp.route("/photos/<uuid:photo_id>")
@login_required
def get_photo(photo_id: uuid.UUID) -> Any:
    """The photo as JPEG (audited, never cached); 404 unless the actor may read its entry."""
    data = photos.read_photo(
        get_db(), actor=require_actor(), keys=state().keys, blobs=_blobs(), photo_id=photo_id
    )
    response = Response(data, mimetype="image/jpeg")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/children/<uuid:child_id>/timeline")
@login_required
def timeline(child_id: uuid.UUID) -> Any:
    """The child's entries, 50 per page: all of them for staff (filters ``area``, ``author``,
    ``since``, ``until``), the shared ones for the family; one audit event per call."""
    db, actor = get_db(), require_actor()
    child, scope = access.get_documentation_child(db, actor, child_id)
    errors: dict[str, object] = {}
    since, until = _date_arg("since", errors), _date_arg("until", errors)
    author_id = None
    if request.args.get("author"):
        author_id = parse_uuid(request.args["author"])
        if author_id is None:
            errors["author"] = _("Please choose one of the offered options.")
    if errors:
        raise ValidationError(errors)
    if scope is DocumentationAccess.FAMILY:
        page = documentation.list_shared_for_family(
            db, actor=actor, keys=state().keys, child=child, page=_page_arg()
        )
    else:
        page = documentation.list_timeline(
            db,
            actor=actor,
            keys=state().keys,
            child=child,
            area=request.args.get("area") or None,
            author_id=author_id,
            since=since,
            until=until,
            page=_page_arg(),
        )
    return {
        "entries": [_entry_json(entry) for entry in page.items],
        "page": page.number,
        "pages": page.pages,
        "total": page.total,
    }


# --- Web Push --------------------------------------------------------------------------------


@bp.route("/push/key")
@login_required
def push_key() -> Any:
    """The VAPID public key for ``pushManager.subscribe({applicationServerKey})``."""
    return {"publicKey": push_subscriptions.vapid_key(state().config).application_server_key}


@bp.route("/push/subscriptions", methods=["POST"])
@login_required
def push_subscribe() -> Any:
    """Store this device's subscription (``PushSubscription.toJSON()``): 201, or 200 when the
    same person sent it before; 422 for a malformed one or a push service not allowed."""
    if (request.content_length or 0) > MAX_SUBSCRIPTION_JSON_BYTES:
        raise InvalidSubscriptionError("subscription")
    subscription = parse_subscription(_json_object(), push_subscriptions.allow_list(state().config))
    result = push_subscriptions.subscribe(
        get_db(), user_id=require_actor().id, subscription=subscription, now=datetime.now(UTC)
    )
    return {"id": str(result.subscription.id)}, 201 if result.created else 200


@bp.route("/push/subscriptions", methods=["DELETE"])
@login_required
def push_unsubscribe() -> Any:
    """Forget this device's subscription (``{"endpoint": ...}``): 204, also when unknown."""
    body = _json_object()
    push_subscriptions.unsubscribe(
        get_db(), user_id=require_actor().id, endpoint=body.get("endpoint")
    )
    return "", 204


@bp.route("/tablet/outbox-key")
@login_required
def tablet_outbox_key() -> Any:
    """The key that encrypts this person's offline outbox on this tablet (base64url), only in
    a session unlocked on a paired tablet (else 404). The page imports it as a
    non-extractable AES-GCM key and forgets it when the tablet locks."""
    # Local imports keep this addition apart from the module's import block.
    import base64

    from flask import session as flask_session

    from kita.errors import NotFoundError
    from kita.models.messaging import Tablet
    from kita.services import tablets

    raw_id = flask_session.get("tablet_id")
    tablet = get_db().get(Tablet, uuid.UUID(raw_id)) if raw_id else None
    if tablet is None:
        raise NotFoundError()
    actor = require_actor()
    if not access.may_use_tablet(actor, tablet):
        raise NotFoundError()
    secret = tablets.outbox_key(get_db(), state().keys, tablet=tablet, user=actor.user)
    response = jsonify(
        key=base64.urlsafe_b64encode(secret).decode().rstrip("="),
        user_id=str(actor.id),
        tablet_id=str(tablet.id),
    )
    response.headers["Cache-Control"] = "no-store"
    return response
