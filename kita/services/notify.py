"""Notifications of a new message: the push outbox, the e-mail fallback and each person's
preferences (muted categories, quiet hours, e-mail fallback).

``enqueue`` runs in the transaction that writes the message, so a message and its deliveries
commit together; the worker (:mod:`kita.services.push_delivery`) sends them later. A push
holds a category, a generic title in the recipient's language and a link: never a name or
message text, since it passes through the browser vendor's servers and shows on lock screens.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from babel.support import NullTranslations, Translations
from flask_babel import lazy_gettext as _l
from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from kita.catalogs import TRANSLATIONS
from kita.config import SUPPORTED_LOCALES
from kita.db import utcnow
from kita.errors import ValidationError
from kita.models.messaging import (
    DeliveryStatus,
    EmailDelivery,
    NotificationSettings,
    PushDelivery,
    PushSubscription,
)
from kita.push.payload import build_payload, topic_for, urgency_for
from kita.services.lifecycle import LOCAL_TIMEZONE

KINDS = frozenset({"announcement", "conversation"})
#: Categories a person may switch off: everything but urgent messages.
MUTABLE_CATEGORIES: tuple[str, ...] = ("information", "event", "closure", "health", "conversation")
#: How long a push service keeps an undelivered notice: an urgent one is stale after a day.
TTL_SECONDS = {"urgent": 24 * 3600}
DEFAULT_TTL_SECONDS = 4 * 24 * 3600
FALLBACK_LOCALE = "de"
_CHUNK = 5000  # ids per IN (...) list: below SQLite's (32766) and PostgreSQL's parameter limits


def N_(message: str) -> str:
    """Mark a msgid for extraction; it is translated per recipient by :func:`generic_title`."""
    return message


#: The generic title per category: no Kita, group, child or author name, no message text.
TITLES: dict[str, str] = {
    "information": N_("New information from your Kita"),
    "event": N_("New event at your Kita"),
    "closure": N_("Closure notice from your Kita"),
    "health": N_("Health notice from your Kita"),
    "urgent": N_("Urgent message from your Kita"),
    "conversation": N_("New message in a conversation"),
}


@dataclass(frozen=True)
class Recipient:
    user_id: uuid.UUID
    locale: str


@dataclass(frozen=True)
class EnqueueReport:
    """What ``enqueue`` wrote: push rows, e-mail rows, and who was left out or delayed."""

    push: int = 0
    email: int = 0
    muted: int = 0
    delayed: int = 0
    without_device: int = 0


@functools.cache
def _translations(locale: str) -> NullTranslations:
    # The compiled catalogs the app reads; works inside and outside a Flask app context (the
    # worker sends scheduled messages without one). A missing catalog gives the msgid.
    return Translations.load(str(TRANSLATIONS), [locale], domain="messages")


def generic_title(category: str, locale: str) -> str:
    """The push title of ``category`` in ``locale`` (the default language for unknown ones)."""
    if locale not in SUPPORTED_LOCALES:
        locale = FALLBACK_LOCALE
    return str(_translations(locale).gettext(TITLES[category]))


# --- quiet hours -----------------------------------------------------------------------------


def in_quiet_hours(settings: NotificationSettings | None, now: datetime) -> bool:
    """Whether ``now`` falls in the person's quiet hours (local time of the city)."""
    if settings is None or settings.quiet_from is None or settings.quiet_until is None:
        return False
    start, end = settings.quiet_from, settings.quiet_until
    local = now.astimezone(LOCAL_TIMEZONE).time().replace(tzinfo=None)
    if start < end:
        return start <= local < end
    return local >= start or local < end  # the period spans midnight (22:00-07:00)


def quiet_hours_end(settings: NotificationSettings, now: datetime) -> datetime:
    """The next end of the quiet period after ``now``, as an aware UTC-comparable datetime."""
    if settings.quiet_until is None:
        return now
    local = now.astimezone(LOCAL_TIMEZONE)
    end = datetime.combine(local.date(), settings.quiet_until, tzinfo=LOCAL_TIMEZONE)
    if end <= local:
        end = datetime.combine(
            local.date() + timedelta(days=1), settings.quiet_until, tzinfo=LOCAL_TIMEZONE
        )
    return end


# --- enqueue and cancel ----------------------------------------------------------------------


def _chunks(items: Sequence[uuid.UUID]) -> Iterable[Sequence[uuid.UUID]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _insert_ignoring_duplicates(db: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING: a concurrent enqueue of the same message (or a
    retried job) never fails on the unique (message, subscription/user) pair."""
    if not rows:
        return
    dialect = db.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # A Core executemany on the table (ids made here): the ORM's bulk path costs several
    # times more per row, which a fan-out to a whole Kita district feels.
    table = model.__table__
    for row in rows:
        row.setdefault("id", uuid.uuid4())
    for start in range(0, len(rows), 5000):
        db.execute(insert(table).on_conflict_do_nothing(), rows[start : start + 5000])


def enqueue(
    db: Session,
    *,
    message_id: uuid.UUID,
    kind: str,
    category: str,
    recipients: Sequence[Recipient],
    url: str,
    now: datetime,
) -> EnqueueReport:
    """Write the notifications of one message in the caller's transaction.

    One push delivery per (message, subscription) of each recipient, duplicates ignored (a
    second call for the same message writes nothing new); muted categories are skipped (urgent
    is never muted); in quiet hours the delivery waits for their end unless urgent. Recipients
    without a subscription who keep the e-mail fallback get an e-mail delivery (the daily
    digest, urgent ones at once). Raises ``ValueError`` for an unknown kind or category or a
    link that is not a path of the app.
    """
    if kind not in KINDS:
        raise ValueError("kind must be 'announcement' or 'conversation'")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    topic = topic_for(message_id)
    build_payload(category, "-", url, topic)  # checks category and link once, up front
    urgent = category == "urgent"
    by_user: dict[uuid.UUID, Recipient] = {}
    for recipient in recipients:
        by_user.setdefault(recipient.user_id, recipient)
    user_ids = list(by_user)
    settings: dict[uuid.UUID, NotificationSettings] = {}
    devices: dict[uuid.UUID, list[uuid.UUID]] = {}
    for chunk in _chunks(user_ids):
        for row in db.scalars(
            select(NotificationSettings).where(NotificationSettings.user_id.in_(chunk))
        ):
            settings[row.user_id] = row
        for sub_id, user_id in db.execute(
            select(PushSubscription.id, PushSubscription.user_id).where(
                PushSubscription.user_id.in_(chunk)
            )
        ):
            devices.setdefault(user_id, []).append(sub_id)
    already_pushed = set(
        db.scalars(
            select(PushDelivery.subscription_id).where(PushDelivery.message_id == message_id)
        )
    )
    already_mailed = set(
        db.scalars(select(EmailDelivery.user_id).where(EmailDelivery.message_id == message_id))
    )
    push_rows: list[dict[str, Any]] = []
    email_rows: list[dict[str, Any]] = []
    muted = delayed = without_device = 0
    ttl = TTL_SECONDS.get(category, DEFAULT_TTL_SECONDS)
    urgency = str(urgency_for(category))
    for user_id, recipient in by_user.items():
        preferences = settings.get(user_id)
        if not urgent and preferences is not None and category in preferences.muted_categories:
            muted += 1
            continue
        subscriptions = devices.get(user_id, [])
        if not subscriptions:
            without_device += 1
            fallback = preferences is None or preferences.email_fallback
            if fallback and user_id not in already_mailed:
                email_rows.append(
                    {
                        "message_id": message_id,
                        "kind": kind,
                        "user_id": user_id,
                        "digest": not urgent,
                        "next_attempt_at": now,
                        "created_at": now,
                    }
                )
            continue
        due = now
        if not urgent and preferences is not None and in_quiet_hours(preferences, now):
            due = quiet_hours_end(preferences, now)
            delayed += 1
        title = generic_title(category, recipient.locale)
        for subscription_id in subscriptions:
            if subscription_id in already_pushed:
                continue
            push_rows.append(
                {
                    "message_id": message_id,
                    "kind": kind,
                    "subscription_id": subscription_id,
                    "user_id": user_id,
                    "category": category,
                    "urgency": urgency,
                    "topic": topic,
                    "title": title,
                    "url": url,
                    "ttl": ttl,
                    "next_attempt_at": due,
                    "created_at": now,
                }
            )
    _insert_ignoring_duplicates(db, PushDelivery, push_rows)
    _insert_ignoring_duplicates(db, EmailDelivery, email_rows)
    return EnqueueReport(
        push=len(push_rows),
        email=len(email_rows),
        muted=muted,
        delayed=delayed,
        without_device=without_device,
    )


def cancel(db: Session, message_id: uuid.UUID) -> int:
    """A recalled message: its pending push and e-mail deliveries become SKIPPED (a delivery
    a worker is sending right now is not marked SENT afterwards). Returns how many."""
    skipped = 0
    for model in (PushDelivery, EmailDelivery):
        result = db.execute(
            update(model)
            .where(model.message_id == message_id, model.status == DeliveryStatus.PENDING)
            .values(status=DeliveryStatus.SKIPPED)
            .execution_options(synchronize_session=False)
        )
        skipped += int(getattr(result, "rowcount", 0) or 0)
    return skipped


# --- preferences -----------------------------------------------------------------------------


def get_settings(db: Session, user_id: uuid.UUID) -> NotificationSettings:
    """The person's preferences; the defaults (nothing muted, no quiet hours, e-mail fallback
    on) as an unsaved object when they never changed them."""
    row = db.get(NotificationSettings, user_id)
    if row is not None:
        return row
    return NotificationSettings(
        user_id=user_id, muted_categories=[], quiet_from=None, quiet_until=None, email_fallback=True
    )


def save_settings(
    db: Session,
    user_id: uuid.UUID,
    muted: Iterable[str],
    quiet_from: time | None,
    quiet_until: time | None,
    email_fallback: bool,
) -> NotificationSettings:
    """Store the preferences. Raises ``ValidationError`` for an unknown category, urgent
    messages muted, only one end of the quiet hours, or a period of no length."""
    errors: dict[str, object] = {}
    chosen = sorted(set(muted))
    if "urgent" in chosen:
        errors["muted"] = _l("Urgent messages cannot be switched off.")
    elif any(category not in MUTABLE_CATEGORIES for category in chosen):
        errors["muted"] = _l("Please choose from the offered options.")
    if (quiet_from is None) != (quiet_until is None):
        name = "quiet_until" if quiet_until is None else "quiet_from"
        errors[name] = _l("Please enter both the start and the end of the quiet hours.")
    elif quiet_from is not None and quiet_from == quiet_until:
        errors["quiet_until"] = _l("The quiet hours must end at another time than they start.")
    if errors:
        raise ValidationError(errors)
    row = db.get(NotificationSettings, user_id)
    if row is None:
        row = NotificationSettings(user_id=user_id)
        db.add(row)
    row.muted_categories = chosen
    row.quiet_from = quiet_from.replace(second=0, microsecond=0) if quiet_from else None
    row.quiet_until = quiet_until.replace(second=0, microsecond=0) if quiet_until else None
    row.email_fallback = bool(email_fallback)
    row.updated_at = utcnow()
    db.flush()
    return row
