"""The worker runs due jobs, spaces them out, and survives a failing job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.models.accounts import ServerSession
from kita.models.imports import CsvImport
from kita.worker import Job, Worker, WorkerContext
from tests.factories import make_kita, make_user


def _context(app: Flask) -> WorkerContext:
    state = app.extensions["kita"]
    return WorkerContext(state.config, state.database, state.keys)


def test_jobs_purge_sessions_and_erase_old_uploads(app: Flask, db: Session) -> None:
    kita = make_kita(db)
    user = make_user(db)
    old = datetime.now(UTC) - timedelta(days=2)
    db.add(ServerSession(id=b"x" * 32, user_id=user.id, data={}, created_at=old, last_seen_at=old))
    db.add(CsvImport(kita_id=kita.id, created_by_id=user.id, content="a;b", created_at=old))
    db.commit()
    done = Worker(_context(app)).run_due()
    assert {name: done[name] for name in ("sessions.purge", "imports.erase_expired")} == {
        "sessions.purge": 1,
        "imports.erase_expired": 1,
    }
    assert done["retention.shred"] == 0
    db.expire_all()
    assert db.scalar(select(func.count()).select_from(ServerSession)) == 0
    assert db.scalars(select(CsvImport.content)).one() == ""


def test_jobs_wait_for_their_interval_and_failures_are_retried(app: Flask) -> None:
    calls: list[str] = []

    def ok(_ctx: WorkerContext) -> int:
        calls.append("ok")
        return 1

    def broken(_ctx: WorkerContext) -> int:
        calls.append("broken")
        raise RuntimeError("boom")

    worker = Worker(
        _context(app),
        jobs=[Job("ok", timedelta(hours=1), ok), Job("broken", timedelta(hours=1), broken)],
    )
    assert worker.run_due(now=0) == {"ok": 1}
    assert worker.run_due(now=30) == {}
    worker.run_due(now=61)  # the failed job is retried after a minute, the good one waits
    assert calls == ["ok", "broken", "broken"]
    assert worker.run_due(now=3601) == {"ok": 1}


def test_a_second_run_changes_nothing(app: Flask, db: Session) -> None:
    make_user(db)
    worker = Worker(_context(app))
    worker.run_due(now=0)
    again = Worker(_context(app)).run_due(now=0)
    assert set(again.values()) == {0}
    assert {"sessions.purge", "imports.erase_expired", "retention.shred"} <= again.keys()
