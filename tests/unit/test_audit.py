"""The audit log: append-only in the database, and a hash chain that detects tampering."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from kita import audit
from kita.db import Database
from kita.models.audit import AuditEvent


def _fill(db: Session, count: int = 5) -> None:
    for number in range(count):
        audit.record(db, action="test.event", object_type="thing", object_id=f"id-{number}")
    db.commit()


@pytest.fixture
def drop_guards(db: Session, database: Database) -> Iterator[Callable[[], None]]:
    """What an attacker with database access would do first. On PostgreSQL the schema outlives
    the test, so the trigger is put back afterwards."""

    def drop() -> None:
        if database.is_sqlite:
            db.execute(text("DROP TRIGGER audit_events_no_update"))
            db.execute(text("DROP TRIGGER audit_events_no_delete"))
        else:
            db.execute(text("DROP TRIGGER audit_events_append_only ON audit_events"))
        db.commit()

    yield drop
    if not database.is_sqlite:
        db.rollback()
        db.execute(text("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events"))
        db.execute(
            text(
                "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
                "FOR EACH ROW EXECUTE FUNCTION kita_audit_append_only()"
            )
        )
        db.commit()


def test_intact_chain_verifies(db: Session) -> None:
    _fill(db)
    report = audit.verify_chain(db)
    assert report.ok and report.checked == 5


def test_rows_cannot_be_updated_or_deleted(db: Session) -> None:
    _fill(db, 2)
    for statement in ("UPDATE audit_events SET action = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError):
            db.execute(text(statement))
        db.rollback()
    assert audit.verify_chain(db).ok


@pytest.mark.parametrize(
    ("statement", "problem", "event_id"),
    [
        ("UPDATE audit_events SET object_id = 'other' WHERE id = 3", "changed", 3),
        ("DELETE FROM audit_events WHERE id = 2", "missing", 3),
        ("DELETE FROM audit_events WHERE id = 5", "end of the log", 5),
    ],
)
def test_tampering_is_detected(
    db: Session, drop_guards: Callable[[], None], statement: str, problem: str, event_id: int
) -> None:
    _fill(db)
    drop_guards()
    db.execute(text(statement))
    db.commit()
    report = audit.verify_chain(db)
    assert not report.ok
    assert problem in report.problem
    assert report.event_id == event_id


def test_recomputed_hash_still_breaks_the_next_link(
    db: Session, drop_guards: Callable[[], None]
) -> None:
    """Changing a row and fixing its own hash is caught by the following row's prev_hash."""
    _fill(db)
    drop_guards()
    event = db.get(AuditEvent, 2)
    assert event is not None
    event.detail = "forged"
    event.hash = audit.chain_hash(event.prev_hash, event)
    db.commit()
    report = audit.verify_chain(db)
    assert not report.ok and report.event_id == 3


def test_cli_verify_exits_nonzero_on_tampering(
    db: Session,
    database: Database,
    drop_guards: Callable[[], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from kita.cli import main

    _fill(db)
    monkeypatch.setenv("KITA_DATABASE_URL", database.url)
    monkeypatch.setenv("KITA_SECRET_KEY", "s" * 40)
    runner = CliRunner()
    ok = runner.invoke(main, ["audit", "verify"])
    assert ok.exit_code == 0 and "5 events verified" in ok.output
    drop_guards()
    db.execute(text("UPDATE audit_events SET actor_id = NULL, action = 'x' WHERE id = 4"))
    db.commit()
    bad = runner.invoke(main, ["audit", "verify"])
    assert bad.exit_code == 1


def test_database_errors_do_not_repeat_personal_data(db: Session) -> None:
    """A failed INSERT's message (logged as the cause of a 500) names no bound value."""
    from sqlalchemy.exc import IntegrityError

    from kita.errors import describe_exception
    from tests.factories import make_user

    make_user(db, email="secret.person@example.org")
    with pytest.raises(IntegrityError) as caught:
        make_user(db, email="secret.person@example.org", name="Aylin Canary")
    db.rollback()
    # hide_parameters: no bound value in the message. (PostgreSQL's own DETAIL still names the
    # duplicated key, which is why logs carry describe_exception(), never the message.)
    assert "Canary" not in str(caught.value)
    logged = describe_exception(caught.value)
    assert "IntegrityError" in logged
    assert "secret.person" not in logged
    assert "Canary" not in logged
