"""Send Web Push messages: aes128gcm with VAPID over one pooled aiohttp session.

Many requests are in flight at once (bounded by the number of sending tasks, a semaphore for
single sends, and a keep-alive connection pool of the same size), each with an explicit TTL,
Urgency and Topic, a timeout, and redirects never followed (an endpoint was checked against the
allow-list; a redirect would lead somewhere that was not). Encryption is one ECDH per device and
the CPU-bound part of a fan-out: it runs inline, or in a process pool beside the event loop.
Every answer becomes a :class:`SendResult` the caller acts on:

- ``delivered`` (2xx): done;
- ``gone`` (404, 410): the subscription has expired; the caller deletes it;
- ``retry`` (429, 5xx, network errors, timeouts): try again after ``retry_in`` seconds,
  which honours ``Retry-After``;
- ``alert`` (other 4xx, 3xx, unusable keys): something is wrong on our side (VAPID key,
  payload, an endpoint no longer allowed). Logged for the operator; nothing is deleted.

The sender keeps no state a second worker process would need: the outbox does.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import random
import re
import ssl
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from itertools import islice
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from kita.push.ece import MAX_PLAINTEXT_BYTES, EncryptionError, encrypt, encrypt_batch
from kita.push.endpoints import PushServiceAllowList, Subscription
from kita.push.payload import TOPIC, Urgency
from kita.push.vapid import VapidSigner

log = logging.getLogger("kita.push")

DEFAULT_CONCURRENCY = 64
DEFAULT_TIMEOUT_S = 10.0
#: The longest TTL push services keep a message (FCM's limit, 28 days).
MAX_TTL_S = 28 * 24 * 3600
BACKOFF_BASE_S = 10.0
BACKOFF_CAP_S = 3600.0
#: A Retry-After further away than this is treated as this (a day), so a broken header cannot
#: park a delivery forever.
RETRY_AFTER_CAP_S = 24 * 3600.0
#: Notifications per task handed to the encryption process pool.
ENCRYPT_CHUNK = 256
_MAX_ERROR_BODY = 512
_DETAIL_CHARS = re.compile(r"[^A-Za-z0-9 .,:;()_/-]+")
# Jitter needs no cryptographic randomness, but SystemRandom avoids a shared seeded state.
_JITTER = random.SystemRandom()


class Outcome(StrEnum):
    DELIVERED = "delivered"
    GONE = "gone"
    RETRY = "retry"
    ALERT = "alert"


@dataclass(frozen=True)
class Notification:
    """One push message for one subscription. ``ref`` is the caller's handle (an outbox row
    id); it is never sent. ``attempt`` counts earlier tries, for the backoff."""

    subscription: Subscription
    payload: bytes
    ttl: int
    urgency: Urgency = Urgency.NORMAL
    topic: str | None = None
    attempt: int = 0
    ref: object = None

    def __post_init__(self) -> None:
        if not isinstance(self.ttl, int) or not 0 <= self.ttl <= MAX_TTL_S:
            raise ValueError(f"ttl must be 0 to {MAX_TTL_S} seconds")
        if self.topic is not None and not TOPIC.match(self.topic):
            raise ValueError("a topic is 1 to 32 characters of A-Z, a-z, 0-9, - and _")
        if not 0 < len(self.payload) <= MAX_PLAINTEXT_BYTES:
            raise ValueError(f"a payload holds 1 to {MAX_PLAINTEXT_BYTES} bytes")
        if self.attempt < 0:
            raise ValueError("attempt counts earlier tries and cannot be negative")


@dataclass(frozen=True)
class SendResult:
    """What happened to one notification. ``reason`` is short and content-free."""

    outcome: Outcome
    status: int | None = None
    retry_in: float | None = None
    reason: str = ""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delay-seconds or an HTTP-date), or None
    when it is missing or unreadable. A date in the past means 0."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(int(value)) if len(value) <= 12 else RETRY_AFTER_CAP_S
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" dates are naive; HTTP-dates are always GMT
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def backoff_delay(
    attempt: int,
    retry_after: float | None = None,
    *,
    base: float = BACKOFF_BASE_S,
    cap: float = BACKOFF_CAP_S,
    rng: random.Random | None = None,
) -> float:
    """Seconds before the next try after ``attempt`` earlier tries.

    ``Retry-After`` wins when the push service sent one (capped at a day). Otherwise
    exponential, capped at ``cap``, with "equal jitter": between half and all of the step, so
    workers that failed together do not retry together, and a delay never collapses to 0.
    """
    if retry_after is not None and math.isfinite(retry_after):
        return min(max(retry_after, 0.0), RETRY_AFTER_CAP_S)
    step = min(cap, base * 2.0 ** min(max(attempt, 0), 32))
    return step / 2 + (rng or _JITTER).uniform(0, step / 2)


def classify_status(
    status: int,
    retry_after: str | None = None,
    *,
    attempt: int = 0,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> SendResult:
    """Turn a push service's HTTP status (and ``Retry-After``) into a result."""
    if 200 <= status < 300:
        return SendResult(Outcome.DELIVERED, status)
    if status in (404, 410):
        return SendResult(Outcome.GONE, status, reason=f"http {status}")
    if status == 429 or 500 <= status < 600:
        delay = backoff_delay(attempt, parse_retry_after(retry_after, now), rng=rng)
        return SendResult(Outcome.RETRY, status, retry_in=delay, reason=f"http {status}")
    # 400 (bad request), 401/403 (VAPID), 413 (payload too large), 3xx (redirect not
    # followed) and anything unexpected: our fault or a changed service, so a person looks.
    return SendResult(Outcome.ALERT, status, reason=f"http {status}")


def _host_for_log(endpoint: str) -> str:
    """The host of an endpoint for a log line (never the path: it identifies a device)."""
    try:
        host = urlsplit(endpoint[:300]).hostname or "?"
    except ValueError:
        return "?"
    return _DETAIL_CHARS.sub("?", host)[:100]


def _chunks(items: Iterable[Notification], size: int) -> Iterator[list[Notification]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class PushSender:
    """Sends notifications; use as ``async with PushSender(...) as sender:``.

    ``encrypt_processes`` > 0 encrypts :meth:`send_many` batches in a process pool, which
    frees the event loop for the network when the machine has cores to spare.
    """

    def __init__(
        self,
        signer: VapidSigner,
        allow_list: PushServiceAllowList,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        ssl_context: ssl.SSLContext | None = None,
        encrypt_processes: int = 0,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.signer = signer
        self.allow_list = allow_list
        self.concurrency = concurrency
        self.timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(timeout_s, 5.0))
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._encrypt_processes = encrypt_processes
        self._session: aiohttp.ClientSession | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._pool: Executor | None = None

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(
            limit=self.concurrency,
            limit_per_host=self.concurrency,
            ssl=self._ssl,
            ttl_dns_cache=300,
            keepalive_timeout=30,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self.timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            # No proxy from the environment: the allow-list decides where requests go.
            trust_env=False,
            auto_decompress=False,
            headers={"User-Agent": "kita-push/1"},
        )
        self._semaphore = asyncio.Semaphore(self.concurrency)
        if self._encrypt_processes > 0:
            # "spawn": forking a process that runs an event loop and threads is unsafe.
            self._pool = ProcessPoolExecutor(
                self._encrypt_processes, mp_context=multiprocessing.get_context("spawn")
            )
            # Start the processes now rather than in the middle of the first batch.
            loop = asyncio.get_running_loop()
            await asyncio.gather(
                *(
                    loop.run_in_executor(self._pool, encrypt_batch, [])
                    for _ in range(self._encrypt_processes)
                )
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    def _open(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        if self._session is None or self._semaphore is None:
            raise RuntimeError("use PushSender as an async context manager")
        return self._session, self._semaphore

    async def send(self, notification: Notification) -> SendResult:
        """Encrypt and send one notification."""
        async with self._open()[1]:
            return await self._post(notification, None)

    async def send_many(
        self, notifications: Iterable[Notification]
    ) -> AsyncIterator[tuple[Notification, SendResult]]:
        """Send every notification, at most ``concurrency`` at a time, and yield each with its
        result as soon as it is known (in completion order, not input order).

        A caller that may stop early wraps the iterator in ``contextlib.aclosing`` so the
        requests still in flight are cancelled at once.
        """
        self._open()
        done: asyncio.Queue[tuple[Notification, SendResult] | None] = asyncio.Queue()
        failures: list[Exception] = []
        tasks: list[asyncio.Task[None]] = []
        next_item: Callable[[], Awaitable[tuple[Notification, bytes | None] | None]]
        if self._pool is None:
            # Encrypted inline by each consumer: they take the next notification directly.
            source = iter(notifications)

            async def take() -> tuple[Notification, bytes | None] | None:
                notification = next(source, None)
                return None if notification is None else (notification, None)

            next_item = take
        else:
            ready: asyncio.Queue[tuple[Notification, bytes | None] | None] = asyncio.Queue(
                maxsize=self.concurrency * 4
            )

            async def produce() -> None:
                try:
                    await self._produce_encrypted(notifications, ready)
                finally:
                    for _ in range(self.concurrency):
                        await ready.put(None)

            next_item = ready.get
            tasks.append(asyncio.create_task(produce()))

        async def consume() -> None:
            try:
                # ``concurrency`` consumers bound the requests in flight; the connector's
                # pool of the same size also bounds them together with ``send`` calls.
                while (item := await next_item()) is not None:
                    done.put_nowait((item[0], await self._post(*item)))
            except Exception as error:  # the input or a bug, not a push failure: stop
                failures.append(error)
            finally:
                done.put_nowait(None)

        consumers = [asyncio.create_task(consume()) for _ in range(self.concurrency)]
        try:
            running = len(consumers)
            while running:
                item = await done.get()
                if item is None:
                    running -= 1
                    if failures:
                        raise failures[0]
                else:
                    yield item
            for task in tasks:
                await task  # re-raises an error of the notifications iterable
        finally:
            for task in (*tasks, *consumers):
                task.cancel()
            await asyncio.gather(*tasks, *consumers, return_exceptions=True)

    async def _produce_encrypted(
        self,
        notifications: Iterable[Notification],
        ready: asyncio.Queue[tuple[Notification, bytes | None] | None],
    ) -> None:
        """Encrypt chunks in the process pool, a few chunks ahead of the senders."""
        loop = asyncio.get_running_loop()
        pending: deque[tuple[list[Notification], asyncio.Future[list[bytes]]]] = deque()
        depth = 2 * max(self._encrypt_processes, 1)
        chunks = _chunks(notifications, ENCRYPT_CHUNK)
        for chunk in chunks:
            items = [(n.payload, n.subscription.p256dh, n.subscription.auth) for n in chunk]
            pending.append((chunk, loop.run_in_executor(self._pool, encrypt_batch, items)))
            if len(pending) >= depth:
                await self._hand_over(pending.popleft(), ready)
        while pending:
            await self._hand_over(pending.popleft(), ready)

    @staticmethod
    async def _hand_over(
        entry: tuple[list[Notification], asyncio.Future[list[bytes]]],
        ready: asyncio.Queue[tuple[Notification, bytes | None] | None],
    ) -> None:
        chunk, future = entry
        for notification, body in zip(chunk, await future, strict=True):
            await ready.put((notification, body))

    async def _post(self, notification: Notification, body: bytes | None) -> SendResult:
        session = self._open()[0]
        endpoint = notification.subscription.endpoint
        origin = self.allow_list.allowed_origin(endpoint)
        if origin is None:
            log.warning(
                "push alert: endpoint on %s is not on the allow-list; not sent",
                _host_for_log(endpoint),
            )
            return SendResult(Outcome.ALERT, reason="endpoint not allowed")
        host = origin.partition("://")[2]
        if body is None:
            try:
                body = encrypt(
                    notification.payload,
                    notification.subscription.p256dh,
                    notification.subscription.auth,
                )
            except EncryptionError:
                body = b""
        if not body:
            log.warning("push alert: a subscription on %s has unusable keys; not sent", host)
            return SendResult(Outcome.ALERT, reason="unusable subscription keys")
        headers = {
            "Authorization": self.signer.authorization(origin),
            "TTL": str(notification.ttl),
            "Urgency": str(notification.urgency),
            "Content-Encoding": "aes128gcm",
            # web-push-testing (and some proxies) only read a body of this type.
            "Content-Type": "application/octet-stream",
        }
        if notification.topic is not None:
            headers["Topic"] = notification.topic
        try:
            async with session.post(
                URL(endpoint, encoded=True), data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                retry_after = response.headers.get("Retry-After")
                detail = await response.content.read(_MAX_ERROR_BODY)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            delay = backoff_delay(notification.attempt)
            log.info("push to %s failed (%s); retry in %.0f s", host, type(error).__name__, delay)
            return SendResult(Outcome.RETRY, retry_in=delay, reason=type(error).__name__)
        result = classify_status(status, retry_after, attempt=notification.attempt)
        if result.outcome is Outcome.ALERT:
            # The push service's explanation ("VAPID key mismatch"), reduced to plain
            # characters and kept short; the endpoint (a device identifier) is not logged.
            text = _DETAIL_CHARS.sub(" ", detail.decode("utf-8", "replace"))[:160].strip()
            log.warning("push alert: %s answered %s: %s", host, status, text or "no detail")
        elif result.outcome is Outcome.GONE:
            log.info("push subscription on %s is gone (%s)", host, status)
        elif result.outcome is Outcome.RETRY:
            log.info("push to %s answered %s; retry in %.0f s", host, status, result.retry_in)
        return result
