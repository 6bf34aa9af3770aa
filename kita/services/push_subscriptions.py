"""Browser push subscriptions of a person's devices, and the VAPID public key they bind to.

Subscriptions arrive as ``PushSubscription.toJSON()`` from the browser and are checked by
:func:`kita.push.endpoints.parse_subscription` (shape, keys, the push-service allow-list)
before they get here.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kita.config import KitaConfig
from kita.errors import KitaError, ValidationError
from kita.models.messaging import PushSubscription
from kita.push.endpoints import MAX_ENDPOINT_LENGTH, PushServiceAllowList, Subscription
from kita.push.vapid import VapidError, VapidKey, load_vapid_key

#: Devices per person; the oldest subscription goes when a new one would exceed this.
MAX_SUBSCRIPTIONS_PER_USER = 20


class PushUnavailableError(KitaError):
    """Web Push is not set up on this server (no VAPID key: ``kita init`` makes one)."""

    status = 503
    default_message = _l("Notifications are not available on this server at the moment.")


@dataclass(frozen=True)
class SubscribeResult:
    subscription: PushSubscription
    created: bool


@functools.cache
def _load_key(path: Path) -> VapidKey:
    return load_vapid_key(path)


def vapid_key(config: KitaConfig) -> VapidKey:
    """The server's VAPID key (read once per process), or :class:`PushUnavailableError`."""
    try:
        return _load_key(config.vapid_key_path)
    except VapidError as error:
        raise PushUnavailableError() from error


@functools.cache
def _allow_list(origins: tuple[str, ...]) -> PushServiceAllowList:
    return PushServiceAllowList.with_origins(origins)


def allow_list(config: KitaConfig) -> PushServiceAllowList:
    """The known push services plus the origins configured in KITA_PUSH_ALLOWED_ORIGINS."""
    return _allow_list(tuple(config.push_allowed_origins))


def subscribe(
    db: Session, *, user_id: uuid.UUID, subscription: Subscription, now: datetime
) -> SubscribeResult:
    """Store a device's subscription for ``user_id``.

    The same endpoint again from the same person updates its keys (``created`` False). An
    endpoint another person had registered moves to this person (a shared device where
    someone else logged in): the old row and its pending deliveries are deleted, so nothing
    meant for the other person reaches this device.
    """
    existing = db.scalars(
        select(PushSubscription).where(PushSubscription.endpoint == subscription.endpoint)
    ).first()
    if existing is not None and existing.user_id == user_id:
        existing.p256dh, existing.auth = subscription.p256dh, subscription.auth
        db.flush()
        return SubscribeResult(existing, created=False)
    if existing is not None:
        db.delete(existing)
        db.flush()
    _make_room(db, user_id)
    row = PushSubscription(
        user_id=user_id,
        endpoint=subscription.endpoint,
        p256dh=subscription.p256dh,
        auth=subscription.auth,
        created_at=now,
    )
    try:
        with db.begin_nested():
            db.add(row)
    except IntegrityError:
        # The same browser sent it twice at once: the other request stored it.
        winner = db.scalars(
            select(PushSubscription).where(PushSubscription.endpoint == subscription.endpoint)
        ).one()
        return SubscribeResult(winner, created=False)
    return SubscribeResult(row, created=True)


def _make_room(db: Session, user_id: uuid.UUID) -> None:
    ids = list(
        db.scalars(
            select(PushSubscription.id)
            .where(PushSubscription.user_id == user_id)
            .order_by(PushSubscription.created_at.desc(), PushSubscription.id)
        )
    )
    stale = ids[MAX_SUBSCRIPTIONS_PER_USER - 1 :]
    if stale:
        db.execute(
            delete(PushSubscription)
            .where(PushSubscription.id.in_(stale))
            .execution_options(synchronize_session=False)
        )


def unsubscribe(db: Session, *, user_id: uuid.UUID, endpoint: object) -> bool:
    """Delete this person's subscription with ``endpoint`` (its pending deliveries go with
    it). Returns whether one existed; another person's subscription is never touched."""
    if not isinstance(endpoint, str) or not 0 < len(endpoint) <= MAX_ENDPOINT_LENGTH:
        raise ValidationError({"endpoint": _l("Please send the subscription's endpoint.")})
    result = db.execute(
        delete(PushSubscription)
        .where(PushSubscription.endpoint == endpoint, PushSubscription.user_id == user_id)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))
