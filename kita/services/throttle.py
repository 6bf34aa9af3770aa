"""Login throttling that works across processes (it lives in the database) and cannot be used
to lock someone out.

Failures are counted per (account, client address) pair and per client address. An attacker
who guesses passwords for a victim's account blocks only their own address for that account;
the victim, coming from another address, still logs in. Keys are HMACs, so the table holds
neither e-mail addresses nor IP addresses.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from kita.errors import ThrottledError
from kita.models.accounts import LoginFailure


@dataclass(frozen=True)
class ThrottlePolicy:
    secret: bytes
    pair_limit: int = 5
    client_limit: int = 50
    window_seconds: int = 900

    def _key(self, *parts: str) -> bytes:
        return hmac.new(self.secret, "\x1f".join(parts).encode(), hashlib.sha256).digest()

    def keys(self, email: str, client: str) -> tuple[bytes, bytes]:
        return self._key("pair", email.strip().lower(), client), self._key("client", client)


def check_login_allowed(
    db: Session, policy: ThrottlePolicy, *, email: str, client: str, now: datetime
) -> None:
    """Raise ``ThrottledError`` when this client has failed too often (for this account)."""
    pair_key, client_key = policy.keys(email, client)
    since = now - timedelta(seconds=policy.window_seconds)
    for key, limit in ((pair_key, policy.pair_limit), (client_key, policy.client_limit)):
        count, oldest = db.execute(
            select(func.count(), func.min(LoginFailure.at)).where(
                LoginFailure.key == key, LoginFailure.at > since
            )
        ).one()
        if count >= limit:
            retry = (oldest + timedelta(seconds=policy.window_seconds) - now).total_seconds()
            raise ThrottledError(retry_after=max(1, math.ceil(retry)))


def record_login_failure(
    db: Session, policy: ThrottlePolicy, *, email: str, client: str, now: datetime
) -> None:
    """Count one failure for the pair and the client, and drop their expired failures."""
    since = now - timedelta(seconds=policy.window_seconds)
    keys = policy.keys(email, client)
    db.execute(delete(LoginFailure).where(LoginFailure.key.in_(keys), LoginFailure.at <= since))
    db.add_all([LoginFailure(key=key, at=now) for key in keys])
    db.flush()


def clear_login_failures(db: Session, policy: ThrottlePolicy, *, email: str, client: str) -> None:
    """After a successful login the pair starts afresh (the per-client count stays)."""
    pair_key, _ = policy.keys(email, client)
    db.execute(delete(LoginFailure).where(LoginFailure.key == pair_key))
