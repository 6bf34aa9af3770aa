"""Server-side sessions stored in the database.

The cookie carries a random token; the table stores only its SHA-256. Deleting a row (logout,
password change, account disabled) ends the session at once, in every process. Sessions expire
after an idle and an absolute timeout.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from sqlalchemy import delete, select, update
from werkzeug.datastructures import CallbackDict

from kita.db import Database
from kita.models.accounts import ServerSession

# last_seen_at is written at most this often, so reading pages costs no write.
TOUCH_INTERVAL = timedelta(seconds=60)


class KitaSession(CallbackDict[str, Any], SessionMixin):
    def __init__(
        self,
        initial: dict[str, Any] | None = None,
        *,
        sid: bytes | None = None,
        created_at: datetime | None = None,
        last_seen_at: datetime | None = None,
    ) -> None:
        def on_update(_self: Any) -> None:
            self.modified = True

        super().__init__(initial or {}, on_update)
        self.sid = sid
        self.created_at = created_at
        self.last_seen_at = last_seen_at
        self.modified = False
        self.new = sid is None
        self.destroyed = False
        self.regenerate_requested = False

    def regenerate(self) -> None:
        """Issue a new token on the next save (after login, against session fixation)."""
        self.regenerate_requested = True
        self.modified = True

    def destroy(self) -> None:
        """End this session: the row is deleted and the cookie removed."""
        self.clear()
        self.destroyed = True


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class DatabaseSessionInterface(SessionInterface):
    def __init__(self, database: Database, *, idle: timedelta, absolute: timedelta) -> None:
        self.database = database
        self.idle = idle
        self.absolute = absolute

    def open_session(self, app: Flask, request: Request) -> KitaSession:
        token = request.cookies.get(self.get_cookie_name(app))
        if not token or len(token) > 100:
            return KitaSession()
        sid = _hash(token)
        now = datetime.now(UTC)
        # Core, not the ORM: this runs on every request, and the row is read-only here.
        table = ServerSession.__table__
        with self.database.engine.connect() as conn:
            row = conn.execute(
                select(table.c.data, table.c.created_at, table.c.last_seen_at).where(
                    table.c.id == sid
                )
            ).first()
            conn.rollback()
        if row is None:
            return KitaSession()
        data, created_at, last_seen_at = row
        if last_seen_at + self.idle <= now or created_at + self.absolute <= now:
            with self.database.session(write=True) as db:
                db.execute(delete(ServerSession).where(ServerSession.id == sid))
                db.commit()
            return KitaSession()
        return KitaSession(
            dict(data or {}), sid=sid, created_at=created_at, last_seen_at=last_seen_at
        )

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        if not isinstance(session, KitaSession):
            raise TypeError("kita sessions only")
        name = self.get_cookie_name(app)
        now = datetime.now(UTC)
        if session.destroyed:
            if session.sid is not None:
                with self.database.session(write=True) as db:
                    db.execute(delete(ServerSession).where(ServerSession.id == session.sid))
                    db.commit()
            response.delete_cookie(
                name, path="/", secure=self.get_cookie_secure(app), httponly=True, samesite="Lax"
            )
            return
        if session.new and not session:
            return
        user_id = session.get("uid")
        uid = uuid.UUID(user_id) if user_id else None
        data = dict(session)
        if session.new or session.regenerate_requested:
            token = secrets.token_urlsafe(32)
            with self.database.session(write=True) as db:
                if session.sid is not None:
                    db.execute(delete(ServerSession).where(ServerSession.id == session.sid))
                db.add(
                    ServerSession(
                        id=_hash(token), user_id=uid, data=data, created_at=now, last_seen_at=now
                    )
                )
                db.commit()
            response.set_cookie(
                name,
                token,
                path="/",
                secure=self.get_cookie_secure(app),
                httponly=True,
                samesite="Lax",
            )
            response.vary.add("Cookie")
            return
        values: dict[str, Any] = {}
        if session.modified:
            values.update(data=data, user_id=uid)
        if session.last_seen_at is None or now - session.last_seen_at >= TOUCH_INTERVAL:
            values["last_seen_at"] = now
        if values:
            with self.database.session(write=True) as db:
                # Updates a row that logout or a password change deleted meanwhile: no effect.
                db.execute(
                    update(ServerSession).where(ServerSession.id == session.sid).values(**values)
                )
                db.commit()


def purge_expired_sessions(database: Database, *, idle: timedelta, absolute: timedelta) -> int:
    """Delete sessions past their idle or absolute timeout; returns how many."""
    now = datetime.now(UTC)
    with database.transaction() as db:
        result = db.execute(
            delete(ServerSession).where(
                (ServerSession.last_seen_at <= now - idle)
                | (ServerSession.created_at <= now - absolute)
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)
