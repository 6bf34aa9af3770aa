"""The push sender: backoff and classification as pure functions, then real requests against
local aiohttp servers that answer like push services (retries, redirects, timeouts, limits)."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import http_ece
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from py_vapid import Vapid02

from kita.push.endpoints import PushServiceAllowList, Subscription
from kita.push.payload import Urgency, build_payload
from kita.push.sender import (
    BACKOFF_BASE_S,
    BACKOFF_CAP_S,
    RETRY_AFTER_CAP_S,
    Notification,
    Outcome,
    PushSender,
    SendResult,
    backoff_delay,
    classify_status,
    parse_retry_after,
)
from kita.push.vapid import VapidKey, VapidSigner

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
KEY = VapidKey.generate()
SIGNER = VapidSigner(KEY, "mailto:betrieb@kita.example")
PAYLOAD = build_payload("urgent", "Acil duyuru", "/announcements/7", "t0pic")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- pure functions -------------------------------------------------------------------------


def test_retry_after_in_seconds() -> None:
    assert parse_retry_after("2", NOW) == 2.0
    assert parse_retry_after(" 120 ", NOW) == 120.0
    assert parse_retry_after("0", NOW) == 0.0
    assert parse_retry_after("9" * 40, NOW) == RETRY_AFTER_CAP_S


def test_retry_after_as_http_date() -> None:
    later = format_datetime(NOW + timedelta(seconds=90), usegmt=True)
    earlier = format_datetime(NOW - timedelta(minutes=5), usegmt=True)

    assert parse_retry_after(later, NOW) == 90.0
    assert parse_retry_after(earlier, NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "²", "Mon, 99 Foo 2026"])
def test_unreadable_retry_after_is_ignored(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


def test_retry_after_wins_over_the_exponential_backoff() -> None:
    assert backoff_delay(5, 2.0) == 2.0
    assert backoff_delay(0, 0.0) == 0.0
    assert backoff_delay(0, 10 * RETRY_AFTER_CAP_S) == RETRY_AFTER_CAP_S


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    rng = random.Random(7)
    for attempt in range(15):
        step = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt)
        delays = [backoff_delay(attempt, rng=rng) for _ in range(50)]
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 1  # jittered
    assert backoff_delay(10**9, rng=rng) <= BACKOFF_CAP_S
    assert BACKOFF_BASE_S / 2 <= backoff_delay(-3, rng=rng) <= BACKOFF_BASE_S


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (201, Outcome.DELIVERED),
        (202, Outcome.DELIVERED),
        (404, Outcome.GONE),
        (410, Outcome.GONE),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (502, Outcome.RETRY),
        (503, Outcome.RETRY),
        (400, Outcome.ALERT),
        (401, Outcome.ALERT),
        (403, Outcome.ALERT),
        (413, Outcome.ALERT),
        (301, Outcome.ALERT),
        (307, Outcome.ALERT),
    ],
)
def test_classify_status(status: int, outcome: Outcome) -> None:
    result = classify_status(status, attempt=2, now=NOW)

    assert result.outcome is outcome and result.status == status
    assert (result.retry_in is not None) == (outcome is Outcome.RETRY)


def test_classify_honours_retry_after_for_429_and_5xx() -> None:
    assert classify_status(429, "30", now=NOW).retry_in == 30.0
    assert classify_status(503, "2", attempt=4, now=NOW).retry_in == 2.0


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ttl": -1}, "ttl"),
        ({"ttl": 10**9}, "ttl"),
        ({"topic": "x" * 33}, "topic"),
        ({"topic": "a b"}, "topic"),
        ({"payload": b""}, "payload"),
        ({"payload": b"x" * 4000}, "payload"),
        ({"attempt": -1}, "attempt"),
    ],
)
def test_notification_checks_its_headers(changes: dict[str, Any], message: str) -> None:
    sub = Subscription("https://fcm.googleapis.com/x", b"\x04" * 65, b"0" * 16)
    fields: dict[str, Any] = {"subscription": sub, "payload": PAYLOAD, "ttl": 60} | changes

    with pytest.raises(ValueError, match=message):
        Notification(**fields)


# --- a local push service -------------------------------------------------------------------


@dataclass
class Device:
    """A browser's side of a subscription: it can decrypt what it receives."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth: bytes = field(default_factory=lambda: random.randbytes(16))

    def subscription(self, endpoint: str) -> Subscription:
        public = self.key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        return Subscription(endpoint, public, self.auth)

    def decrypt(self, body: bytes) -> bytes:
        return bytes(
            http_ece.decrypt(body, private_key=self.key, auth_secret=self.auth, version="aes128gcm")
        )


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int]


@dataclass
class Service:
    origin: str
    seen: list[Seen]

    @property
    def allow_list(self) -> PushServiceAllowList:
        return PushServiceAllowList.with_origins([self.origin])

    def endpoint(self, name: str = "device-1") -> str:
        return f"{self.origin}/push/{name}"


@asynccontextmanager
async def push_service(handler: Handler) -> AsyncIterator[Service]:
    seen: list[Seen] = []

    async def record(request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        seen.append(
            Seen(request.method, request.path, dict(request.headers), await request.read(), peer)
        )
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield Service(f"http://127.0.0.1:{port}", seen)
    finally:
        await runner.cleanup()


def answers(*responses: tuple[int, dict[str, str]]) -> Handler:
    """A handler giving these answers in turn (the last one repeats)."""
    queue = list(responses)

    async def handler(request: web.Request) -> web.StreamResponse:
        status, headers = queue.pop(0) if len(queue) > 1 else queue[0]
        return web.Response(status=status, headers=headers, text="reason text")

    return handler


def notification(sub: Subscription, **changes: Any) -> Notification:
    fields: dict[str, Any] = {"subscription": sub, "payload": PAYLOAD, "ttl": 3600} | changes
    return Notification(**fields)


async def send_one(service: Service, note: Notification, **options: Any) -> SendResult:
    async with PushSender(SIGNER, service.allow_list, **options) as sender:
        return await sender.send(note)


# --- real requests --------------------------------------------------------------------------


def test_request_is_encrypted_signed_and_has_the_push_headers() -> None:
    device = Device()

    async def run() -> tuple[SendResult, Service]:
        async with push_service(answers((201, {}))) as service:
            sub = device.subscription(service.endpoint())
            note = notification(sub, urgency=Urgency.HIGH, topic="announcement-7", ttl=86400)
            return await send_one(service, note), service

    result, service = asyncio.run(run())

    assert result == SendResult(Outcome.DELIVERED, 201)
    [request] = service.seen
    assert request.method == "POST" and request.path == "/push/device-1"
    headers = request.headers
    assert headers["TTL"] == "86400"
    assert headers["Urgency"] == "high"
    assert headers["Topic"] == "announcement-7"
    assert headers["Content-Encoding"] == "aes128gcm"
    assert headers["Content-Type"] == "application/octet-stream"
    assert device.decrypt(request.body) == PAYLOAD
    assert Vapid02.verify(headers["Authorization"])
    token = headers["Authorization"].split("t=", 1)[1].split(",", 1)[0]
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["aud"] == service.origin
    assert headers["Authorization"].endswith(f",k={KEY.application_server_key}")


def test_normal_urgency_and_no_topic_by_default() -> None:
    async def run() -> Service:
        async with push_service(answers((201, {}))) as service:
            await send_one(service, notification(Device().subscription(service.endpoint())))
            return service

    headers = asyncio.run(run()).seen[0].headers

    assert headers["Urgency"] == "normal"
    assert "Topic" not in headers


def test_503_with_retry_after_is_retried_after_that_delay_then_delivered() -> None:
    async def run() -> tuple[SendResult, SendResult, int]:
        async with push_service(answers((503, {"Retry-After": "2"}), (201, {}))) as service:
            sub = Device().subscription(service.endpoint())
            first = await send_one(service, notification(sub))
            second = await send_one(service, notification(sub, attempt=1))
            return first, second, len(service.seen)

    first, second, requests = asyncio.run(run())

    assert first == SendResult(Outcome.RETRY, 503, retry_in=2.0, reason="http 503")
    assert second == SendResult(Outcome.DELIVERED, 201)
    assert requests == 2


def test_retry_after_as_a_date_is_honoured() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)

    async def run() -> SendResult:
        async with push_service(answers((503, {"Retry-After": later}))) as service:
            return await send_one(service, notification(Device().subscription(service.endpoint())))

    result = asyncio.run(run())

    assert result.outcome is Outcome.RETRY
    assert result.retry_in is not None and 110 <= result.retry_in <= 120


def test_429_without_retry_after_backs_off_exponentially() -> None:
    async def run() -> SendResult:
        async with push_service(answers((429, {}))) as service:
            sub = Device().subscription(service.endpoint())
            return await send_one(service, notification(sub, attempt=3))

    result = asyncio.run(run())

    assert result.outcome is Outcome.RETRY and result.status == 429
    step = BACKOFF_BASE_S * 2**3
    assert result.retry_in is not None and step / 2 <= result.retry_in <= step


@pytest.mark.parametrize("status", [404, 410])
def test_expired_subscriptions_are_gone(status: int) -> None:
    async def run() -> SendResult:
        async with push_service(answers((status, {}))) as service:
            return await send_one(service, notification(Device().subscription(service.endpoint())))

    assert asyncio.run(run()) == SendResult(Outcome.GONE, status, reason=f"http {status}")


@pytest.mark.parametrize("status", [400, 401, 403, 413])
def test_other_client_errors_alert_and_log_without_the_endpoint(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    async def run() -> SendResult:
        async with push_service(answers((status, {}))) as service:
            sub = Device().subscription(service.endpoint("secret-device-token"))
            return await send_one(service, notification(sub))

    with caplog.at_level(logging.INFO, logger="kita.push"):
        result = asyncio.run(run())

    assert result == SendResult(Outcome.ALERT, status, reason=f"http {status}")
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert f"answered {status}" in record.getMessage()
    assert "reason text" in record.getMessage()
    assert "secret-device-token" not in caplog.text


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirects_are_not_followed(status: int) -> None:
    async def run() -> tuple[SendResult, list[str]]:
        async with push_service(answers((status, {"Location": "/elsewhere"}))) as service:
            result = await send_one(
                service, notification(Device().subscription(service.endpoint()))
            )
            return result, [s.path for s in service.seen]

    result, paths = asyncio.run(run())

    assert result.outcome is Outcome.ALERT and result.status == status
    assert paths == ["/push/device-1"]


def test_a_timeout_is_retried() -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.Response(status=201)

    async def run() -> SendResult:
        async with push_service(slow) as service:
            note = notification(Device().subscription(service.endpoint()))
            return await send_one(service, note, timeout_s=0.2)

    result = asyncio.run(run())

    assert result.outcome is Outcome.RETRY and result.status is None
    assert result.retry_in is not None and result.retry_in > 0


def test_a_refused_connection_is_retried() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    service = Service(f"http://127.0.0.1:{port}", [])

    result = asyncio.run(send_one(service, notification(Device().subscription(service.endpoint()))))

    assert result.outcome is Outcome.RETRY and result.status is None


def test_an_endpoint_outside_the_allow_list_is_not_contacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def run() -> tuple[SendResult, int]:
        async with push_service(answers((201, {}))) as service:
            sub = Device().subscription(service.endpoint())
            async with PushSender(SIGNER, PushServiceAllowList()) as sender:
                return await sender.send(notification(sub)), len(service.seen)

    with caplog.at_level(logging.WARNING, logger="kita.push"):
        result, requests = asyncio.run(run())

    assert result == SendResult(Outcome.ALERT, reason="endpoint not allowed")
    assert requests == 0
    assert "allow-list" in caplog.text


def test_unusable_keys_alert_without_a_request() -> None:
    async def run() -> tuple[SendResult, int]:
        async with push_service(answers((201, {}))) as service:
            sub = Subscription(service.endpoint(), b"\x04" + b"\x01" * 64, b"0" * 16)
            return await send_one(service, notification(sub)), len(service.seen)

    result, requests = asyncio.run(run())

    assert result.outcome is Outcome.ALERT and requests == 0


@pytest.mark.parametrize("processes", [0, 1])
def test_send_many_bounds_concurrency_and_reuses_connections(processes: int) -> None:
    in_flight = 0
    peak = 0

    async def slow(request: web.Request) -> web.StreamResponse:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return web.Response(status=201)

    devices = [Device() for _ in range(60)]

    async def run() -> tuple[list[tuple[Notification, SendResult]], Service]:
        async with push_service(slow) as service:
            notes = [
                notification(d.subscription(service.endpoint(f"d{i}")), ref=i)
                for i, d in enumerate(devices)
            ]
            options: dict[str, Any] = {"concurrency": 4, "encrypt_processes": processes}
            async with PushSender(SIGNER, service.allow_list, **options) as sender:
                results = [item async for item in sender.send_many(notes)]
            return results, service

    results, service = asyncio.run(run())

    assert sorted(note.ref for note, _ in results) == list(range(60))  # type: ignore[type-var]
    assert {result.outcome for _, result in results} == {Outcome.DELIVERED}
    assert 1 < peak <= 4
    assert len({s.peer for s in service.seen}) <= 4  # kept-alive connections, not 60
    for seen in service.seen:
        index = int(seen.path.rsplit("/d", 1)[1])
        assert devices[index].decrypt(seen.body) == PAYLOAD


def test_send_many_reports_every_outcome() -> None:
    async def by_path(request: web.Request) -> web.StreamResponse:
        status = int(request.path.rsplit("/", 1)[1])
        return web.Response(status=status, headers={"Retry-After": "5"})

    async def run() -> dict[int, Outcome]:
        async with push_service(by_path) as service:
            notes = [
                notification(Device().subscription(service.endpoint(str(s))), ref=s)
                for s in (201, 410, 503, 403)
            ]
            async with PushSender(SIGNER, service.allow_list, concurrency=2) as sender:
                return {n.ref: r.outcome async for n, r in sender.send_many(notes)}  # type: ignore[misc]

    assert asyncio.run(run()) == {
        201: Outcome.DELIVERED,
        410: Outcome.GONE,
        503: Outcome.RETRY,
        403: Outcome.ALERT,
    }


def test_send_many_passes_on_an_error_of_its_input() -> None:
    def broken() -> Any:
        yield notification(Device().subscription("http://127.0.0.1:9/push/x"))
        raise LookupError("the outbox query failed")

    async def run() -> None:
        async with (
            push_service(answers((201, {}))) as service,
            PushSender(SIGNER, service.allow_list) as sender,
        ):
            async for _ in sender.send_many(broken()):
                pass

    with pytest.raises(LookupError):
        asyncio.run(run())


def test_sender_must_be_opened_first() -> None:
    sender = PushSender(SIGNER, PushServiceAllowList())
    sub = Subscription("https://fcm.googleapis.com/x", b"\x04" * 65, b"0" * 16)

    with pytest.raises(RuntimeError, match="context manager"):
        asyncio.run(sender.send(notification(sub)))
