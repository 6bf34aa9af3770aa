"""The background worker: one loop that runs periodic jobs (and, with messaging, push delivery).

Each job is a plain function taking the worker context; each run is one transaction boundary.
Jobs are idempotent, so two workers (or a restart) running the same job is safe.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType

from kita.blobs import BlobStore
from kita.config import KitaConfig
from kita.crypto import KeyService
from kita.db import Database
from kita.errors import describe_exception
from kita.services.imports import erase_expired_imports
from kita.services.lifecycle import run_retention
from kita.services.push_delivery import DeliverySettings, deliver_due, has_due
from kita.sessions import purge_expired_sessions

log = logging.getLogger("kita.worker")


@dataclass(frozen=True)
class WorkerContext:
    config: KitaConfig
    database: Database
    keys: KeyService


@dataclass
class Job:
    name: str
    every: timedelta
    run: Callable[[WorkerContext], int]
    next_at: float = 0.0


def _purge_sessions(ctx: WorkerContext) -> int:
    return purge_expired_sessions(
        ctx.database,
        idle=timedelta(minutes=ctx.config.session_idle_minutes),
        absolute=timedelta(hours=ctx.config.session_absolute_hours),
    )


def _erase_imports(ctx: WorkerContext) -> int:
    with ctx.database.transaction() as db:
        return erase_expired_imports(db, now=datetime.now(UTC))


def _shred_due_children(ctx: WorkerContext) -> int:
    # Each child is its own transaction inside run_retention (erasure is committed step by
    # step), so this job is not wrapped in one.
    report = run_retention(
        ctx.database,
        keys=ctx.keys,
        blobs=BlobStore(ctx.config.blob_dir),
        now=datetime.now(UTC),
        days_after_leave=ctx.config.retention_days_after_leave,
    )
    if report.failed:
        # The worker logs this and retries in a minute; the shredded ones stay shredded.
        raise RuntimeError(f"{len(report.failed)} of {report.due} children were not shredded")
    return len(report.shredded)


class PushDeliveryJob:
    """Job "push.deliver": sends due push deliveries while there are any (for at most
    ``budget_s`` per run, so the other jobs get their turn). An idle run is one read."""

    budget_s = 30.0

    def __init__(self) -> None:
        self._settings: DeliverySettings | None = None

    def __call__(self, ctx: WorkerContext) -> int:
        if not has_due(ctx.database, datetime.now(UTC)):
            return 0
        if self._settings is None:
            self._settings = DeliverySettings.from_config(ctx.config)
        report = deliver_due(ctx.database, self._settings, max_seconds=self.budget_s)
        return report.total()


def _send_urgent_email(ctx: WorkerContext) -> int:
    from kita.services.email_delivery import send_urgent

    return send_urgent(ctx.database, ctx.config, datetime.now(UTC))


def _send_email_digests(ctx: WorkerContext) -> int:
    from kita.services.email_delivery import send_digests

    return send_digests(ctx.database, ctx.config, datetime.now(UTC))


def _retry_conversation_translations(ctx: WorkerContext) -> int:
    from kita.services.conversations import retry_pending_translations
    from kita.services.translation import translator_for

    if ctx.config.translation_provider == "none":
        return 0
    with ctx.database.transaction() as db:
        # Conversation texts never go through the shared translation memory.
        translator = translator_for(db, ctx.config, use_memory=False)
        return retry_pending_translations(
            db, keys=ctx.keys, translator=translator, now=datetime.now(UTC)
        )


def _send_scheduled_announcements(ctx: WorkerContext) -> int:
    """Job "announcements.send_scheduled": sends announcements whose time has come."""
    from kita.services.announcements import send_due
    from kita.services.translation import translator_for

    with ctx.database.transaction() as db:
        return send_due(db, now=datetime.now(UTC), translator=translator_for(db, ctx.config))


def _retry_announcement_translations(ctx: WorkerContext) -> int:
    """Job "translations.retry": translates announcement texts left PENDING while the engine
    was down or missing (each row waits longer after every failed try)."""
    from kita.services.announcements import retry_pending_translations
    from kita.services.translation import translator_for

    if ctx.config.translation_provider == "none":
        return 0
    with ctx.database.transaction() as db:
        translator = translator_for(db, ctx.config)
        return retry_pending_translations(db, translator=translator, now=datetime.now(UTC))


def default_jobs() -> list[Job]:
    """The periodic jobs; capabilities add theirs here."""
    return [
        Job("sessions.purge", timedelta(minutes=15), _purge_sessions),
        Job("imports.erase_expired", timedelta(hours=1), _erase_imports),
        Job("retention.shred", timedelta(days=1), _shred_due_children),
        Job("push.deliver", timedelta(seconds=1), PushDeliveryJob()),
        Job("email.urgent", timedelta(seconds=30), _send_urgent_email),
        Job("email.digest", timedelta(minutes=5), _send_email_digests),
        Job(
            "conversations.translate_retry", timedelta(minutes=5), _retry_conversation_translations
        ),
        Job("announcements.send_scheduled", timedelta(seconds=30), _send_scheduled_announcements),
        Job("translations.retry", timedelta(minutes=1), _retry_announcement_translations),
    ]


@dataclass
class Worker:
    context: WorkerContext
    jobs: list[Job] = field(default_factory=default_jobs)
    stop: threading.Event = field(default_factory=threading.Event)

    def run_due(self, now: float | None = None) -> dict[str, int]:
        """Run every job whose time has come; a failing job is logged and retried next round."""
        now = time.monotonic() if now is None else now
        done: dict[str, int] = {}
        for job in self.jobs:
            if job.next_at > now:
                continue
            try:
                done[job.name] = job.run(self.context)
            except Exception as error:
                # No personal data in job errors: the job, the exception type and its stack.
                log.error("job %s failed: %s", job.name, describe_exception(error))
                job.next_at = now + 60
                continue
            job.next_at = now + job.every.total_seconds()
            if done[job.name] or job.every >= timedelta(minutes=1):  # no line per idle second
                log.info("job %s: %d", job.name, done[job.name])
        return done

    def run_forever(self, tick: float = 1.0) -> None:
        # A short tick: push delivery runs every second; other jobs keep their own periods.
        while not self.stop.is_set():
            self.run_due()
            self.stop.wait(tick)


def run_worker(context: WorkerContext, *, once: bool = False) -> dict[str, int]:
    """Run the worker until SIGTERM/SIGINT, or one round with ``once``."""
    worker = Worker(context)
    if once:
        return worker.run_due()

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        worker.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    worker.run_forever()
    return {}
