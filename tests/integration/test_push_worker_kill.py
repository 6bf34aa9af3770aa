"""A push worker killed with SIGKILL mid-batch and restarted: every delivery arrives at least
once, and no (message, subscription) pair whose send was committed as SENT is sent again.

The worker is the real ``kita worker`` in a subprocess against the test database (a SQLite
file or PostgreSQL). The push service is a local sink that acknowledges slowly and, for every
request it receives, looks up whether our side had already committed that pair as SENT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.config import KitaConfig
from kita.db import Database
from kita.models.messaging import DeliveryStatus, PushDelivery, PushSubscription
from kita.push.vapid import VapidKey
from kita.services import notify
from tests.conftest import MASTER_KEY, TEST_SECRET
from tests.factories import make_user

PARENTS = 40
MESSAGES = 3
ACK_DELAY_S = 0.08
LEASE_S = 2


@dataclass
class Receipt:
    topic: str
    path: str
    committed_before: bool


@dataclass
class Sink:
    database: Database
    receipts: list[Receipt] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def committed(self, topic: str, endpoint_path: str) -> bool:
        with self.database.session() as db:
            status = db.scalar(
                select(PushDelivery.status)
                .join(PushSubscription, PushSubscription.id == PushDelivery.subscription_id)
                .where(
                    PushDelivery.topic == topic,
                    PushSubscription.endpoint.endswith(endpoint_path),
                )
            )
        return status == DeliveryStatus.SENT


def _handler(sink: Sink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            topic = self.headers.get("Topic", "")
            committed = sink.committed(topic, self.path)
            with sink.lock:
                sink.receipts.append(Receipt(topic, self.path, committed))
            time.sleep(ACK_DELAY_S)  # acknowledged slowly: sends are in flight at the kill
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def sink(app: Flask, config: KitaConfig) -> Iterator[tuple[Sink, str]]:
    state = Sink(Database(config.database_url))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    state.database.dispose()


def _start_worker(config: KitaConfig, origin: str, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KITA_DATABASE_URL": config.database_url,
        "KITA_INSTANCE_PATH": str(config.instance_path),
        "KITA_SECRET_KEY": TEST_SECRET,
        "KITA_MASTER_KEY": MASTER_KEY,
        "KITA_PUSH_ALLOWED_ORIGINS": origin,
        "KITA_PUSH_LEASE_SECONDS": str(LEASE_S),
        "KITA_PUSH_CONCURRENCY": "8",
    }
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-c", "from kita.cli import main; main()", "worker"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def _wait(condition: Any, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; worker log:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def test_sigkill_mid_batch_loses_nothing_and_resends_nothing_acknowledged(
    app: Flask,
    db: Session,
    config: KitaConfig,
    sink: tuple[Sink, str],
    tmp_path: Path,
) -> None:
    state, origin = sink
    device = VapidKey.generate()
    parents = [make_user(db, locale="tr") for _ in range(PARENTS)]
    for number, parent in enumerate(parents):
        db.add(
            PushSubscription(
                user_id=parent.id,
                endpoint=f"{origin}/push/{number}",
                p256dh=device.public_bytes,
                auth=os.urandom(16),
            )
        )
    db.commit()
    messages = [uuid.uuid4() for _ in range(MESSAGES)]
    for message_id in messages:
        notify.enqueue(
            db,
            message_id=message_id,
            kind="conversation",
            category="conversation",
            recipients=[notify.Recipient(p.id, "tr") for p in parents],
            url=f"/conversations/{message_id}",
            now=datetime.now(UTC),
        )
    db.commit()
    expected = {(m.hex, f"/push/{n}") for m in messages for n in range(PARENTS)}
    log = tmp_path / "worker.log"

    def pending() -> int:
        db.rollback()
        return int(
            db.scalar(
                select(func.count())
                .select_from(PushDelivery)
                .where(PushDelivery.status == DeliveryStatus.PENDING)
            )
            or 0
        )

    first = _start_worker(config, origin, log)
    try:
        _wait(lambda: len(state.receipts) >= len(expected) // 3, 60, "the first sends", log)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    killed_at = len(state.receipts)
    assert 0 < killed_at < len(expected)
    assert pending() > 0, "the kill came too late to interrupt anything"

    second = _start_worker(config, origin, log)
    try:
        _wait(lambda: pending() == 0, 90, "the restarted worker to finish", log)
    finally:
        second.send_signal(signal.SIGTERM)
        try:
            second.wait(15)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait()

    received = {(r.topic, r.path) for r in state.receipts}
    assert received == expected, "a delivery never arrived"
    # The sends in flight at the kill (received, not yet committed) were sent again...
    assert len(state.receipts) > len(expected)
    # ...but never one whose outcome had been committed.
    resent_after_commit = [r for r in state.receipts if r.committed_before]
    assert resent_after_commit == [], "a pair committed as SENT was sent again"
    db.rollback()
    statuses = set(db.scalars(select(PushDelivery.status)))
    assert statuses == {DeliveryStatus.SENT}
    assert db.scalar(select(func.count()).select_from(PushDelivery)) == len(expected)
