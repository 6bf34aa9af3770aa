"""The e-mail fallback: parents without a push subscription get urgent messages by e-mail at
once and everything else in one daily digest, each in their own language.

``kita.services.notify.enqueue`` writes the ``EmailDelivery`` rows in the transaction of the
message; the worker jobs ``email.urgent`` and ``email.digest`` send them.

What an e-mail says: the generic title of each message in the recipient's language (the same
titles as the push notifications: "Urgent message from your Kita", "New message in a
conversation"), when it came, and a link into the app. Never the message text, a child's or a
person's name: e-mail travels through providers outside the Kita's control and stays in
mailboxes for years, while the app shows the message only after a login (data minimisation,
GDPR Art. 5(1)(c)). The link is enough to read it.

Delivery is at least once, never twice after a commit: each e-mail is sent inside the
transaction that marks its rows SENT, which commits right after the SMTP server accepted it. A
crash between the two sends that e-mail again after the restart; a committed row is never sent
again. On PostgreSQL rows are locked with ``SKIP LOCKED``, so two workers do not send the same
e-mail. A refused or unreachable SMTP server leaves the rows PENDING with a growing delay; after
``MAX_ATTEMPTS`` urgent rows become ALERT with an operator alert (no personal data).

The digest goes out once a day at ``KITA_DIGEST_HOUR`` (local time, default 17): it lists every
pending non-urgent message created before that hour; later ones wait for the next day's digest.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from babel.dates import format_date, format_time
from babel.support import NullTranslations, Translations
from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from kita.catalogs import TRANSLATIONS
from kita.config import SUPPORTED_LOCALES, KitaConfig
from kita.db import Database
from kita.mail import MailError, send_mail
from kita.models.accounts import User
from kita.models.messaging import (
    Announcement,
    ConversationMessage,
    DeliveryStatus,
    EmailDelivery,
    OperatorAlert,
)
from kita.services.lifecycle import LOCAL_TIMEZONE
from kita.services.notify import generic_title

#: Urgent e-mails refused this many times become ALERT (an operator must look at SMTP).
MAX_ATTEMPTS = 8
#: Delay before the n-th retry (the last value repeats).
BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
)
ALERT_KIND = "smtp_refused"
#: Rows of one digest at most (a parent away for weeks gets the rest the next day).
DIGEST_MAX_ITEMS = 200


def N_(message: str) -> str:
    """Mark a msgid for extraction; translated per recipient with :func:`_translations`."""
    return message


URGENT_SUBJECT = N_("%(title)s")
DIGEST_SUBJECT = N_("Your Kita messages of %(date)s")
OPEN_LINK = N_("Open it in the app:")
FOOTER = N_(
    "You receive this e-mail because notifications are not switched on on any of your "
    "devices. The message itself is only shown in the app. You can switch these e-mails off "
    "in the app under My account, Notifications:"
)


@functools.cache
def _translations(locale: str) -> NullTranslations:
    # The worker has no Flask app context: read the compiled catalogs directly.
    return Translations.load(str(TRANSLATIONS), [locale], domain="messages")


def _gettext(locale: str, message: str, **values: object) -> str:
    text = str(_translations(locale).gettext(message))
    return text % values if values else text


def _locale(user: User, config: KitaConfig) -> str:
    return user.locale if user.locale in SUPPORTED_LOCALES else config.default_locale


@dataclass(frozen=True)
class Item:
    """One message in an e-mail: its generic title, when it came, and its link."""

    title: str
    at: datetime
    url: str


def _item(db: Session, row: EmailDelivery, locale: str) -> Item | None:
    """The e-mail line for a delivery row, or None when the message is gone."""
    if row.kind == "announcement":
        announcement = db.get(Announcement, row.message_id)
        if announcement is None:
            return None
        return Item(
            generic_title(announcement.category.value, locale),
            row.created_at,
            f"/messages/a/{announcement.id}",
        )
    message = db.get(ConversationMessage, row.message_id)
    if message is None:
        return None
    return Item(
        generic_title("conversation", locale),
        row.created_at,
        f"/conversations/{message.conversation_id}",
    )


def _line(item: Item, locale: str, config: KitaConfig) -> str:
    local = item.at.astimezone(LOCAL_TIMEZONE)
    day = format_date(local.date(), "medium", locale=locale)
    when = f"{day} {format_time(local, 'HH:mm', locale=locale)}"
    return f"• {item.title} ({when})\n  {config.base_url}{item.url}"


def _footer(locale: str, config: KitaConfig) -> str:
    return f"-- \n{_gettext(locale, FOOTER)}\n{config.base_url}/settings/notifications\n"


def compose_urgent(item: Item, locale: str, config: KitaConfig) -> tuple[str, str]:
    """Subject and body of an urgent e-mail: the generic title and the link."""
    subject = _gettext(locale, URGENT_SUBJECT, title=item.title)
    body = (
        f"{item.title}\n\n{_gettext(locale, OPEN_LINK)}\n{config.base_url}{item.url}\n\n"
        f"{_footer(locale, config)}"
    )
    return subject, body


def compose_digest(
    items: Sequence[Item], locale: str, config: KitaConfig, day: datetime
) -> tuple[str, str]:
    """Subject and body of a digest: one line per message, oldest first."""
    date_text = format_date(day.astimezone(LOCAL_TIMEZONE).date(), "long", locale=locale)
    subject = _gettext(locale, DIGEST_SUBJECT, date=date_text)
    count = str(
        _translations(locale).ngettext(
            "%(num)d new message from your Kita:",
            "%(num)d new messages from your Kita:",
            len(items),
        )
    ) % {"num": len(items)}
    lines = "\n".join(_line(item, locale, config) for item in items)
    return subject, f"{count}\n\n{lines}\n\n{_footer(locale, config)}"


def _due_rows(db: Session, *conditions: ColumnElement[bool], limit: int) -> list[EmailDelivery]:
    query = (
        select(EmailDelivery)
        .where(EmailDelivery.status == DeliveryStatus.PENDING, *conditions)
        .order_by(EmailDelivery.created_at, EmailDelivery.id)
        .limit(limit)
    )
    return list(db.scalars(query.with_for_update(skip_locked=True)))


def _failed(db: Session, rows: Sequence[EmailDelivery], now: datetime, *, alert: bool) -> None:
    for row in rows:
        row.attempts += 1
        row.next_attempt_at = now + BACKOFF[min(row.attempts, len(BACKOFF)) - 1]
        if alert and row.attempts >= MAX_ATTEMPTS:
            row.status = DeliveryStatus.ALERT
    if alert and any(row.status is DeliveryStatus.ALERT for row in rows):
        db.add(
            OperatorAlert(
                kind=ALERT_KIND,
                detail="the SMTP server refused or was unreachable for an urgent e-mail",
                created_at=now,
            )
        )


def _recipient(db: Session, user_id: uuid.UUID) -> User | None:
    user = db.get(User, user_id)
    return user if user is not None and user.is_active else None


def send_urgent(database: Database, config: KitaConfig, now: datetime, limit: int = 200) -> int:
    """Job ``email.urgent``: send each due urgent e-mail at once, one transaction per e-mail.
    Returns how many were sent. Without SMTP nothing happens (the rows wait)."""
    if not config.smtp_configured:
        return 0
    sent = 0
    for _ in range(limit):
        with database.transaction() as db:
            rows = _due_rows(
                db, EmailDelivery.digest.is_(False), EmailDelivery.next_attempt_at <= now, limit=1
            )
            if not rows:
                break
            row = rows[0]
            user = _recipient(db, row.user_id)
            locale = _locale(user, config) if user is not None else config.default_locale
            item = _item(db, row, locale) if user is not None else None
            if user is None or item is None:
                row.status = DeliveryStatus.SKIPPED
                continue
            subject, body = compose_urgent(item, locale, config)
            try:
                send_mail(config, to=user.email, subject=subject, body=body, language=locale)
            except MailError:
                _failed(db, rows, now, alert=True)
                # The server refuses: the next run tries again, the other rows wait too.
                break
            row.status = DeliveryStatus.SENT
            row.sent_at = now
            row.attempts += 1
            sent += 1
    return sent


def digest_cutoff(config: KitaConfig, now: datetime) -> datetime | None:
    """Today's digest time (local ``digest_hour``), or None before it."""
    local = now.astimezone(LOCAL_TIMEZONE)
    cutoff = datetime.combine(local.date(), time(config.digest_hour), tzinfo=LOCAL_TIMEZONE)
    return cutoff if local >= cutoff else None


def send_digests(database: Database, config: KitaConfig, now: datetime) -> int:
    """Job ``email.digest``: after the digest hour, one e-mail per parent listing the pending
    non-urgent messages created before it; each parent's e-mail is its own transaction.
    Returns how many e-mails were sent."""
    if not config.smtp_configured:
        return 0
    cutoff = digest_cutoff(config, now)
    if cutoff is None:
        return 0
    with database.transaction() as db:
        user_ids = list(
            db.scalars(
                select(EmailDelivery.user_id)
                .where(
                    EmailDelivery.status == DeliveryStatus.PENDING,
                    EmailDelivery.digest.is_(True),
                    EmailDelivery.created_at <= cutoff,
                    EmailDelivery.next_attempt_at <= now,
                )
                .distinct()
            )
        )
    sent = 0
    for user_id in user_ids:
        with database.transaction() as db:
            rows = _due_rows(
                db,
                EmailDelivery.user_id == user_id,
                EmailDelivery.digest.is_(True),
                EmailDelivery.created_at <= cutoff,
                EmailDelivery.next_attempt_at <= now,
                limit=DIGEST_MAX_ITEMS,
            )
            if not rows:
                continue  # another worker sent it meanwhile
            user = _recipient(db, user_id)
            locale = _locale(user, config) if user is not None else config.default_locale
            items: list[Item] = []
            listed: list[EmailDelivery] = []
            for row in rows:
                item = _item(db, row, locale) if user is not None else None
                if item is None:
                    row.status = DeliveryStatus.SKIPPED
                else:
                    items.append(item)
                    listed.append(row)
            if user is None or not items:
                continue
            subject, body = compose_digest(items, locale, config, now)
            try:
                send_mail(config, to=user.email, subject=subject, body=body, language=locale)
            except MailError:
                _failed(db, listed, now, alert=False)
                break
            for row in listed:
                row.status = DeliveryStatus.SENT
                row.sent_at = now
                row.attempts += 1
            sent += 1
    return sent
