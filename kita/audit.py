"""Append-only security audit log with a SHA-256 hash chain.

Each event's hash covers the previous event's hash and the event's own fields, and the head row
records the newest hash and the count. ``verify_chain`` detects a changed, inserted or deleted row.
Events carry no content: actor, action, object reference, Kita, time and a short code at most.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from kita.db import utcnow
from kita.models.audit import AuditEvent, AuditHead

GENESIS = b"\x00" * 32
HEAD_ID = 1


def _canonical(event: AuditEvent) -> bytes:
    fields = {
        "id": event.id,
        "at": event.at.isoformat(timespec="microseconds"),
        "actor": str(event.actor_id) if event.actor_id else None,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "kita": str(event.kita_id) if event.kita_id else None,
        "detail": event.detail,
    }
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def chain_hash(prev_hash: bytes, event: AuditEvent) -> bytes:
    return hashlib.sha256(prev_hash + _canonical(event)).digest()


def record(
    db: Session,
    *,
    action: str,
    actor_id: uuid.UUID | None = None,
    object_type: str = "",
    object_id: object = "",
    kita_id: uuid.UUID | None = None,
    detail: str = "",
    at: datetime | None = None,
) -> AuditEvent:
    """Append one event.

    Appends are serialised by locking the head row (PostgreSQL) or by the write transaction
    (SQLite, where request and job sessions that write start with BEGIN IMMEDIATE).
    """
    head = db.scalars(select(AuditHead).where(AuditHead.id == HEAD_ID).with_for_update()).one()
    at = at or utcnow()
    event = AuditEvent(
        id=head.last_id + 1,
        at=at,
        actor_id=actor_id,
        action=action,
        object_type=object_type,
        object_id=str(object_id) if object_id else "",
        kita_id=kita_id,
        detail=detail[:200],
        prev_hash=head.hash,
    )
    event.hash = chain_hash(head.hash, event)
    head.last_id = event.id
    head.count += 1
    head.hash = event.hash
    db.add(event)
    db.flush()
    return event


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    checked: int
    problem: str = ""
    event_id: int | None = None


def verify_chain(db: Session, batch: int = 5000) -> ChainReport:
    """Walk the chain in id order and report the first inconsistency."""
    head = db.get(AuditHead, HEAD_ID)
    if head is None:
        return ChainReport(False, 0, "the audit head row is missing")
    prev_hash = GENESIS
    expected_id = 1
    checked = 0
    last_id = 0
    while True:
        rows = db.scalars(
            select(AuditEvent).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch)
        ).all()
        if not rows:
            break
        for event in rows:
            if event.id != expected_id:
                return ChainReport(False, checked, "an event is missing before this one", event.id)
            if event.prev_hash != prev_hash:
                return ChainReport(
                    False, checked, "the link to the previous event is broken", event.id
                )
            if chain_hash(prev_hash, event) != event.hash:
                return ChainReport(False, checked, "the event was changed", event.id)
            prev_hash = event.hash
            expected_id += 1
            checked += 1
            last_id = event.id
    if head.count != checked or head.last_id != last_id or head.hash != prev_hash:
        return ChainReport(False, checked, "events at the end of the log are missing", last_id + 1)
    return ChainReport(True, checked)


def install_head(db: Session) -> None:
    """Create the head row (migrations do this; tests that build tables directly call it)."""
    if db.get(AuditHead, HEAD_ID) is None:
        db.add(AuditHead(id=HEAD_ID, count=0, last_id=0, hash=GENESIS))
        db.flush()
