"""The push worker: claim due deliveries of the outbox, send them, record the outcomes.

Claiming sets a lease (``claimed_until``) in its own short transaction: on PostgreSQL with
``SELECT ... FOR UPDATE SKIP LOCKED`` so several workers take disjoint rows, on SQLite under
the write lock (``BEGIN IMMEDIATE``). Outcomes are committed in small batches while results
stream in, so a worker killed mid-batch loses at most the sends in flight whose answer was not
yet committed: their lease expires and another run sends them again (at least once). A row
committed as SENT is never claimed again.

- delivered: SENT, ``sent_at``, the recipient's ``delivered_at`` (announcements);
- gone (404/410): the subscription is deleted (its deliveries with it); a person left without
  any device gets the e-mail fallback for what did not reach them;
- retry (429/5xx/network): ``attempts + 1``, the next try after ``retry_in`` (Retry-After);
  after ``MAX_ATTEMPTS`` tries (a day and more of backoff) the notice is given up (SKIPPED,
  logged): it would arrive too late to help, and the message itself waits in the app;
- alert (other 4xx): ALERT, an operator alert (host and status only) and an ERROR log line;
  the subscription is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import Table, bindparam, delete, exists, func, select, update
from sqlalchemy.orm import Session

from kita.config import KitaConfig
from kita.db import Database
from kita.models.messaging import (
    AnnouncementRecipient,
    DeliveryStatus,
    EmailDelivery,
    NotificationSettings,
    OperatorAlert,
    PushDelivery,
    PushSubscription,
)
from kita.push.endpoints import PushServiceAllowList, Subscription
from kita.push.payload import PayloadError, Urgency, build_payload
from kita.push.sender import Notification, Outcome, PushSender, SendResult
from kita.push.vapid import VapidSigner, load_vapid_key
from kita.services.notify import _insert_ignoring_duplicates

log = logging.getLogger("kita.push")

ALERT_KIND = "push_rejected"
#: A retry is never sooner than this, whatever Retry-After says.
MIN_RETRY_S = 1.0
#: Tries before a notice that keeps failing (429/5xx/network) is given up. With the sender's
#: backoff (capped at an hour) this is more than a day.
MAX_ATTEMPTS = 30
#: An identical unresolved alert younger than this is not written again.
ALERT_QUIET_PERIOD = timedelta(hours=1)
_CHUNK = 5000  # ids per IN (...): below SQLite's and PostgreSQL's parameter limits


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class DeliverySettings:
    """How the worker sends: the VAPID signer, the allow-list and the pacing."""

    signer: VapidSigner
    allow_list: PushServiceAllowList
    concurrency: int = 64
    lease: timedelta = timedelta(seconds=120)
    #: Rows per claim; the next claim is prefetched while these are sent.
    claim_size: int = 500
    #: Results per outcome transaction, and the longest a result waits to be committed.
    commit_every: int = 500
    commit_interval_s: float = 0.1
    encrypt_processes: int = 0
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: KitaConfig, **overrides: Any) -> DeliverySettings:
        """Settings from the configuration; reads the VAPID key file made by ``kita init``."""
        key = load_vapid_key(config.vapid_key_path)
        values: dict[str, Any] = {
            "signer": VapidSigner(key, config.push_subject),
            "allow_list": PushServiceAllowList.with_origins(config.push_allowed_origins),
            "concurrency": config.push_concurrency,
            "lease": timedelta(seconds=config.push_lease_seconds),
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class DeliveryReport:
    claimed: int = 0
    delivered: int = 0
    gone: int = 0
    retried: int = 0
    alerts: int = 0
    emails: int = 0
    given_up: int = 0

    def total(self) -> int:
        return self.delivered + self.gone + self.retried + self.alerts + self.given_up


@dataclass(frozen=True)
class Claimed:
    """A claimed delivery with what sending it needs."""

    id: uuid.UUID
    message_id: uuid.UUID
    kind: str
    user_id: uuid.UUID
    subscription_id: uuid.UUID
    endpoint: str
    p256dh: bytes
    auth: bytes
    category: str
    urgency: str
    topic: str
    title: str
    url: str
    ttl: int
    attempts: int


# --- claiming --------------------------------------------------------------------------------


def _due(now: datetime) -> Any:
    return (
        (PushDelivery.status == DeliveryStatus.PENDING)
        & (PushDelivery.next_attempt_at <= now)
        & ((PushDelivery.claimed_until.is_(None)) | (PushDelivery.claimed_until <= now))
    )


def has_due(database: Database, now: datetime) -> bool:
    """Whether any delivery is due (a read, so an idle worker takes no write lock)."""
    with database.session() as db:
        return db.scalar(select(exists().where(_due(now)))) is True


def claim_due(database: Database, *, now: datetime, limit: int, lease: timedelta) -> list[Claimed]:
    """Take up to ``limit`` due deliveries for ``lease``, in one short transaction."""
    with database.transaction() as db:
        rows = db.execute(
            select(
                PushDelivery.id,
                PushDelivery.message_id,
                PushDelivery.kind,
                PushDelivery.user_id,
                PushDelivery.subscription_id,
                PushSubscription.endpoint,
                PushSubscription.p256dh,
                PushSubscription.auth,
                PushDelivery.category,
                PushDelivery.urgency,
                PushDelivery.topic,
                PushDelivery.title,
                PushDelivery.url,
                PushDelivery.ttl,
                PushDelivery.attempts,
            )
            .join(PushSubscription, PushSubscription.id == PushDelivery.subscription_id)
            .where(_due(now))
            .order_by(PushDelivery.next_attempt_at)
            .limit(limit)
            # PostgreSQL: rows another worker holds are skipped, not waited for (SQLite
            # ignores this; its write lock, taken at BEGIN, serialises claims).
            .with_for_update(skip_locked=True, of=PushDelivery)
        ).all()
        claimed = [Claimed(*cast(tuple[Any, ...], row)) for row in rows]
        for chunk in _chunks([c.id for c in claimed]):
            db.execute(
                update(PushDelivery)
                .where(PushDelivery.id.in_(chunk))
                .values(claimed_until=now + lease)
                .execution_options(synchronize_session=False)
            )
        return claimed


def release(database: Database, claimed: Sequence[Claimed]) -> None:
    """Give claimed but unsent deliveries back at once (instead of after the lease)."""
    if not claimed:
        return
    with database.transaction() as db:
        for chunk in _chunks([c.id for c in claimed]):
            db.execute(
                update(PushDelivery)
                .where(PushDelivery.id.in_(chunk), PushDelivery.status == DeliveryStatus.PENDING)
                .values(claimed_until=None)
                .execution_options(synchronize_session=False)
            )


def _chunks(items: Sequence[Any]) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


# --- outcomes --------------------------------------------------------------------------------


def _host(endpoint: str) -> str:
    """Host (and port) of an endpoint for alerts and logs; never the path (a device id)."""
    try:
        parts = urlsplit(endpoint[:300])
        host = parts.hostname or "?"
        return f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "?"


def apply_outcomes(
    database: Database, results: Sequence[tuple[Claimed, SendResult]], now: datetime
) -> DeliveryReport:
    """Record a batch of results in one transaction (see the module docstring)."""
    report = DeliveryReport()
    if not results:
        return report
    with database.transaction() as db:
        _apply(db, results, now, report)
    return report


def _apply(
    db: Session,
    results: Sequence[tuple[Claimed, SendResult]],
    now: datetime,
    report: DeliveryReport,
) -> None:
    pending = PushDelivery.status == DeliveryStatus.PENDING
    by_outcome: dict[Outcome, list[tuple[Claimed, SendResult]]] = defaultdict(list)
    for item in results:
        by_outcome[item[1].outcome].append(item)

    delivered = by_outcome[Outcome.DELIVERED]
    by_status: dict[int | None, list[uuid.UUID]] = defaultdict(list)
    for claimed, result in delivered:
        by_status[result.status].append(claimed.id)
    for status, ids in by_status.items():
        for chunk in _chunks(ids):
            db.execute(
                update(PushDelivery)
                .where(PushDelivery.id.in_(chunk), pending)
                .values(
                    status=DeliveryStatus.SENT, sent_at=now, last_status=status, claimed_until=None
                )
                .execution_options(synchronize_session=False)
            )
    # To the day: a device that works is not rewritten with every message it gets.
    for chunk in _chunks(sorted({c.subscription_id for c, _ in delivered})):
        db.execute(
            update(PushSubscription)
            .where(
                PushSubscription.id.in_(chunk),
                (PushSubscription.last_success_at.is_(None))
                | (PushSubscription.last_success_at < now - timedelta(days=1)),
            )
            .values(last_success_at=now)
            .execution_options(synchronize_session=False)
        )
    announcement_users: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    for claimed, _ in delivered:
        if claimed.kind == "announcement":
            announcement_users[claimed.message_id].add(claimed.user_id)
    for announcement_id, users in announcement_users.items():
        for chunk in _chunks(sorted(users)):
            db.execute(
                update(AnnouncementRecipient)
                .where(
                    AnnouncementRecipient.announcement_id == announcement_id,
                    AnnouncementRecipient.user_id.in_(chunk),
                    AnnouncementRecipient.delivered_at.is_(None),
                )
                .values(delivered_at=now)
                .execution_options(synchronize_session=False)
            )
    report.delivered += len(delivered)

    retries = [item for item in by_outcome[Outcome.RETRY] if item[0].attempts + 1 < MAX_ATTEMPTS]
    given_up = [item for item in by_outcome[Outcome.RETRY] if item[0].attempts + 1 >= MAX_ATTEMPTS]
    for chunk in _chunks([claimed.id for claimed, _ in given_up]):
        db.execute(
            update(PushDelivery)
            .where(PushDelivery.id.in_(chunk), pending)
            .values(
                status=DeliveryStatus.SKIPPED,
                attempts=PushDelivery.attempts + 1,
                claimed_until=None,
            )
            .execution_options(synchronize_session=False)
        )
    if given_up:
        log.warning("push: %d notices given up after %d tries", len(given_up), MAX_ATTEMPTS)
    report.given_up += len(given_up)
    if retries:
        table = cast(Table, PushDelivery.__table__)
        db.execute(
            update(table)
            .where(table.c.id == bindparam("rid"), table.c.status == DeliveryStatus.PENDING.value)
            .values(
                attempts=table.c.attempts + 1,
                next_attempt_at=bindparam("when"),
                last_status=bindparam("code"),
                claimed_until=None,
            ),
            [
                {
                    "rid": claimed.id,
                    "when": now + timedelta(seconds=max(result.retry_in or 0.0, MIN_RETRY_S)),
                    "code": result.status,
                }
                for claimed, result in retries
            ],
        )
    report.retried += len(retries)

    alerts = by_outcome[Outcome.ALERT]
    if alerts:
        table = cast(Table, PushDelivery.__table__)
        db.execute(
            update(table)
            .where(table.c.id == bindparam("rid"), table.c.status == DeliveryStatus.PENDING.value)
            .values(
                status=DeliveryStatus.ALERT.value,
                attempts=table.c.attempts + 1,
                last_status=bindparam("code"),
                claimed_until=None,
            ),
            [{"rid": claimed.id, "code": result.status} for claimed, result in alerts],
        )
        details = sorted(
            {
                f"{_host(c.endpoint)} answered {r.status}"
                if r.status is not None
                else f"{_host(c.endpoint)}: {r.reason or 'not sent'}"
                for c, r in alerts
            }
        )
        for detail in details:
            _raise_alert(db, detail[:300], now)
    report.alerts += len(alerts)

    gone = by_outcome[Outcome.GONE]
    if gone:
        report.emails += _remove_gone(db, [c for c, _ in gone], now)
    report.gone += len(gone)


def _raise_alert(db: Session, detail: str, now: datetime) -> None:
    log.error("push rejected: %s; deliveries kept as ALERT, subscriptions kept", detail)
    recent = db.scalar(
        select(func.count())
        .select_from(OperatorAlert)
        .where(
            OperatorAlert.kind == ALERT_KIND,
            OperatorAlert.detail == detail,
            OperatorAlert.resolved_at.is_(None),
            OperatorAlert.created_at > now - ALERT_QUIET_PERIOD,
        )
    )
    if not recent:
        db.add(OperatorAlert(kind=ALERT_KIND, detail=detail, created_at=now))
        db.flush()


def _remove_gone(db: Session, gone: Sequence[Claimed], now: datetime) -> int:
    """Delete expired subscriptions; people left without a device get the e-mail fallback
    for the messages still undelivered on them. Returns the e-mail rows written."""
    subscription_ids = sorted({c.subscription_id for c in gone})
    undelivered: list[tuple[uuid.UUID, str, str, uuid.UUID]] = []
    for chunk in _chunks(subscription_ids):
        undelivered.extend(
            db.execute(
                select(
                    PushDelivery.message_id,
                    PushDelivery.kind,
                    PushDelivery.category,
                    PushDelivery.user_id,
                ).where(
                    PushDelivery.subscription_id.in_(chunk),
                    PushDelivery.status == DeliveryStatus.PENDING,
                )
            )
        )
        db.execute(
            delete(PushSubscription)
            .where(PushSubscription.id.in_(chunk))
            .execution_options(synchronize_session=False)
        )
    users = sorted({c.user_id for c in gone})
    still_subscribed: set[uuid.UUID] = set()
    wants_email: dict[uuid.UUID, bool] = {}
    for chunk in _chunks(users):
        still_subscribed.update(
            db.scalars(select(PushSubscription.user_id).where(PushSubscription.user_id.in_(chunk)))
        )
        for user_id, fallback in db.execute(
            select(NotificationSettings.user_id, NotificationSettings.email_fallback).where(
                NotificationSettings.user_id.in_(chunk)
            )
        ):
            wants_email[user_id] = fallback
    rows: dict[tuple[uuid.UUID, uuid.UUID], dict[str, Any]] = {}
    for message_id, kind, category, user_id in undelivered:
        if user_id in still_subscribed or not wants_email.get(user_id, True):
            continue
        if kind == "announcement":
            reached = db.scalar(
                select(AnnouncementRecipient.delivered_at).where(
                    AnnouncementRecipient.announcement_id == message_id,
                    AnnouncementRecipient.user_id == user_id,
                )
            )
            if reached is not None:
                continue
        rows[(message_id, user_id)] = {
            "message_id": message_id,
            "kind": kind,
            "user_id": user_id,
            "digest": category != "urgent",
            "next_attempt_at": now,
            "created_at": now,
        }
    if rows:
        already = {
            (m, u)
            for m, u in db.execute(
                select(EmailDelivery.message_id, EmailDelivery.user_id).where(
                    EmailDelivery.message_id.in_({m for m, _ in rows})
                )
            )
        }
        fresh = [row for pair, row in rows.items() if pair not in already]
        _insert_ignoring_duplicates(db, EmailDelivery, fresh)
        return len(fresh)
    return 0


# --- sending ---------------------------------------------------------------------------------


# Every device of a message in one language gets the same payload: built once per run.
_payload = functools.lru_cache(maxsize=256)(build_payload)


def _notification(claimed: Claimed) -> Notification:
    return Notification(
        subscription=Subscription(claimed.endpoint, claimed.p256dh, claimed.auth),
        payload=_payload(claimed.category, claimed.title, claimed.url, claimed.topic),
        ttl=claimed.ttl,
        urgency=Urgency(claimed.urgency),
        topic=claimed.topic,
        attempt=claimed.attempts,
        ref=claimed,
    )


async def deliver_due_async(
    database: Database,
    settings: DeliverySettings,
    *,
    clock: Callable[[], datetime] = _utcnow,
    max_seconds: float | None = None,
    sender: PushSender | None = None,
) -> DeliveryReport:
    """Send every due delivery (claiming more while there is due work, for at most
    ``max_seconds`` of claiming) and record the outcomes as they come in. ``sender`` is an
    open sender to reuse (its pool and connections stay warm); by default one is opened."""
    report = DeliveryReport()
    started = time.monotonic()
    claims = ThreadPoolExecutor(1, thread_name_prefix="push-claim")
    commits = ThreadPoolExecutor(1, thread_name_prefix="push-commit")
    loop = asyncio.get_running_loop()
    # The claim made ahead and not yet taken: given back if sending stops before it is used.
    outstanding: list[Future[tuple[float, list[Claimed]]]] = []
    unusable: list[tuple[Claimed, SendResult]] = []
    expiring: list[Claimed] = []
    lease_s = settings.lease.total_seconds()

    def claim() -> tuple[float, list[Claimed]]:
        # The lease runs from here, also for a claim made ahead while the last batch is sent.
        at = time.monotonic()
        rows = claim_due(database, now=clock(), limit=settings.claim_size, lease=settings.lease)
        return at, rows

    def notifications() -> Iterator[Notification]:
        outstanding.append(claims.submit(claim))
        while outstanding:
            claimed_at, batch = outstanding.pop().result()
            if not batch:
                return
            report.claimed += len(batch)
            if max_seconds is None or time.monotonic() - started <= max_seconds:
                outstanding.append(claims.submit(claim))  # runs while this batch is sent
            for position, claimed in enumerate(batch):
                if time.monotonic() - claimed_at > lease_s * 0.75:
                    # A slow push service: rows whose lease is running out go back rather
                    # than risk that another worker takes and sends them as well.
                    expiring.extend(batch[position:])
                    return
                try:
                    notification = _notification(claimed)
                except (PayloadError, ValueError):
                    # A row that cannot become a push (enqueue never writes one): an alert.
                    unusable.append((claimed, SendResult(Outcome.ALERT, reason="invalid payload")))
                    continue
                yield notification

    def record(batch: list[tuple[Claimed, SendResult]]) -> None:
        done = apply_outcomes(database, batch, clock())
        for name in ("delivered", "gone", "retried", "alerts", "emails", "given_up"):
            setattr(report, name, getattr(report, name) + getattr(done, name))

    buffer: list[tuple[Claimed, SendResult]] = []
    committing: asyncio.Future[None] | None = None

    async def flush() -> None:
        nonlocal buffer, committing
        if committing is not None:
            await committing  # one outcome transaction at a time, in order
            committing = None
        if buffer or unusable:
            batch, buffer = buffer + unusable, []
            unusable.clear()
            committing = loop.run_in_executor(commits, record, batch)

    async def send(open_sender: PushSender) -> None:
        last = time.monotonic()
        stream = cast(
            AsyncGenerator[tuple[Notification, SendResult], None],
            open_sender.send_many(notifications()),
        )
        async with contextlib.aclosing(stream) as results:
            async for notification, result in results:
                buffer.append((cast(Claimed, notification.ref), result))
                now = time.monotonic()
                if len(buffer) >= settings.commit_every or now - last > settings.commit_interval_s:
                    last = now
                    await flush()
        await flush()
        await flush()

    try:
        if sender is not None:
            await send(sender)
        else:
            async with PushSender(
                settings.signer,
                settings.allow_list,
                concurrency=settings.concurrency,
                ssl_context=settings.ssl_context,
                encrypt_processes=settings.encrypt_processes,
            ) as opened:
                await send(opened)
    finally:
        claims.shutdown(wait=True)
        commits.shutdown(wait=True)
        for future in outstanding:
            if future.exception() is None:
                expiring.extend(future.result()[1])
        release(database, expiring)
    return report


def deliver_due(
    database: Database,
    settings: DeliverySettings,
    *,
    clock: Callable[[], datetime] = _utcnow,
    max_seconds: float | None = None,
) -> DeliveryReport:
    """Synchronous :func:`deliver_due_async` for the worker and the CLI."""
    return asyncio.run(deliver_due_async(database, settings, clock=clock, max_seconds=max_seconds))


# --- for the operator ------------------------------------------------------------------------

#: How far back the administration page lists operator alerts.
ALERTS_SHOWN_DAYS = 14


def recent_alerts(db: Session, *, now: datetime, limit: int = 20) -> list[OperatorAlert]:
    """Unresolved operator alerts of the last ``ALERTS_SHOWN_DAYS`` days, newest first. They
    name a kind, a host and a status, never a person, so every provider admin may see them."""
    return list(
        db.scalars(
            select(OperatorAlert)
            .where(
                OperatorAlert.resolved_at.is_(None),
                OperatorAlert.created_at >= now - timedelta(days=ALERTS_SHOWN_DAYS),
            )
            .order_by(OperatorAlert.created_at.desc())
            .limit(limit)
        )
    )
