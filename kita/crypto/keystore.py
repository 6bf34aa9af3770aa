"""Where wrapped data keys live: a small protocol and its SQLite implementation.

The keystore is a separate database from the application data so that its backups can be kept
briefly and apart: once a shredded child's key has left every keystore backup, no copy of the
child's data anywhere can be decrypted again. The protocol is small so that a PostgreSQL (or
KMS-backed) adapter can live outside this package.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kita.crypto.errors import KeystoreError


@dataclass(frozen=True)
class WrappedKey:
    """A data key as stored: wrapped by KEK ``kek_version``; never the key itself."""

    subject_id: str
    kind: str
    version: int
    kek_version: int
    wrapped: bytes = field(repr=False)


class Keystore(Protocol):
    """Storage of wrapped data keys, one per ``(subject_id, kind)``."""

    def get(self, subject_id: str, kind: str) -> WrappedKey | None:
        """The subject's wrapped key of that kind, or None."""
        ...

    def add(self, key: WrappedKey) -> WrappedKey:
        """Insert unless a key for ``(subject_id, kind)`` exists; return the stored one.

        Two processes creating the same key at once both get the winner's key.
        """
        ...

    def update_wrapping(self, changes: Sequence[tuple[WrappedKey, WrappedKey]]) -> int:
        """Replace ``old`` by ``new`` for each pair, atomically for the batch.

        Only rows still equal to ``old`` (same subject, kind, version and KEK version) change,
        so a concurrently shredded key is never written back. Returns the rows changed.
        """
        ...

    def delete_subject(self, subject_id: str) -> int:
        """Delete every key of the subject and purge them from the storage files."""
        ...

    def list_by_kek_version(self, kek_version: int, limit: int) -> list[WrappedKey]:
        """Up to ``limit`` keys wrapped by that KEK version (for rewrapping in batches)."""
        ...

    def count_by_kek_version(self) -> dict[int, int]:
        """``{kek_version: number of keys}`` for versions that wrap at least one key."""
        ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS data_keys (
    subject_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    version INTEGER NOT NULL CHECK (version > 0),
    kek_version INTEGER NOT NULL CHECK (kek_version > 0),
    wrapped BLOB NOT NULL,
    PRIMARY KEY (subject_id, kind)
);
CREATE INDEX IF NOT EXISTS ix_data_keys_kek_version ON data_keys (kek_version);
"""
_COLUMNS = "subject_id, kind, version, kek_version, wrapped"


class SqliteKeystore:
    """The keystore in its own SQLite file (default ``instance/keystore.sqlite3``).

    WAL mode, ``synchronous=FULL`` (a lost key is lost data) and ``secure_delete=ON`` (deleted
    rows are zeroed in the pages); after deleting a subject's keys the WAL is checkpointed and
    truncated so no old page copy keeps the wrapped key. Each thread uses its own connection,
    which makes the object safe to share between threads.
    """

    def __init__(self, path: Path | str, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Create the file 0600 before SQLite does; the -wal and -shm files inherit its mode.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._pid = os.getpid()
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        # One connection per thread (and per process: never reuse one across a fork). Closing
        # the last connection makes SQLite checkpoint and delete the WAL, which per call would
        # cost an fsync; a kept connection leaves checkpoints to SQLite and to delete_subject.
        if self._pid != os.getpid():  # a forked child: leave the parent's connections alone
            self._pid, self._local, self._opened = os.getpid(), threading.local(), []
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            # check_same_thread is off only so that close() can close every thread's
            # connection at shutdown; each connection is used by its own thread alone.
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            with self._opened_lock:
                self._opened.append(conn)
            conn.execute("PRAGMA secure_delete=ON")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
        except sqlite3.Error as error:
            raise KeystoreError(f"cannot open the keystore {self.path}: {error}") from None
        self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._connection()
        except sqlite3.Error as error:
            self._discard()  # start from a fresh connection next time
            raise KeystoreError(f"keystore {self.path}: {error}") from error

    def close(self) -> None:
        """Close the connections of every thread (the next call opens a new one)."""
        self._local = threading.local()
        with self._opened_lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _discard(self) -> None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._opened_lock:
                self._opened = [other for other in self._opened if other is not conn]
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @staticmethod
    def _row(row: tuple[str, str, int, int, bytes]) -> WrappedKey:
        return WrappedKey(row[0], row[1], int(row[2]), int(row[3]), bytes(row[4]))

    def get(self, subject_id: str, kind: str) -> WrappedKey | None:
        """The subject's wrapped key of that kind, or None."""
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM data_keys WHERE subject_id = ? AND kind = ?",  # noqa: S608
                (subject_id, kind),
            ).fetchall()
        return self._row(rows[0]) if rows else None

    def add(self, key: WrappedKey) -> WrappedKey:
        """Insert unless present; return the stored key (ours or a concurrent winner's)."""
        with self._write() as conn:
            conn.execute(
                f"INSERT INTO data_keys ({_COLUMNS}) VALUES (?, ?, ?, ?, ?) "  # noqa: S608
                "ON CONFLICT (subject_id, kind) DO NOTHING",
                (key.subject_id, key.kind, key.version, key.kek_version, key.wrapped),
            )
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM data_keys WHERE subject_id = ? AND kind = ?",  # noqa: S608
                (key.subject_id, key.kind),
            ).fetchall()
        return self._row(rows[0])

    def update_wrapping(self, changes: Sequence[tuple[WrappedKey, WrappedKey]]) -> int:
        """Compare-and-swap each ``(old, new)`` pair in one transaction; returns rows changed."""
        if not changes:
            return 0
        for old, new in changes:
            if (old.subject_id, old.kind, old.version) != (new.subject_id, new.kind, new.version):
                raise ValueError("update_wrapping changes the wrapping, not the key")
        with self._write() as conn:
            cursor = conn.executemany(
                "UPDATE data_keys SET kek_version = ?, wrapped = ? "
                "WHERE subject_id = ? AND kind = ? AND version = ? AND kek_version = ?",
                [
                    (
                        new.kek_version,
                        new.wrapped,
                        old.subject_id,
                        old.kind,
                        old.version,
                        old.kek_version,
                    )
                    for old, new in changes
                ],
            )
            return cursor.rowcount

    def delete_subject(self, subject_id: str) -> int:
        """Delete the subject's keys, then checkpoint and truncate the WAL.

        Raises KeystoreError if the WAL could not be truncated (a long reader in another
        process); the keys are deleted all the same and calling again finishes the purge.
        """
        with self._write() as conn:
            deleted = conn.execute(
                "DELETE FROM data_keys WHERE subject_id = ?", (subject_id,)
            ).rowcount
        self.checkpoint()
        return deleted

    def checkpoint(self, attempts: int = 20) -> None:
        """Copy the WAL into the database and truncate it to zero bytes."""
        with self._connect() as conn:
            for _ in range(attempts):
                busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()[0]
                if busy == 0:
                    return
                time.sleep(0.05)
        raise KeystoreError(
            f"keystore {self.path}: keys deleted, but the WAL is still in use and could not be "
            "truncated; run the operation again"
        )

    def list_by_kek_version(self, kek_version: int, limit: int) -> list[WrappedKey]:
        """Up to ``limit`` keys wrapped by that KEK version."""
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM data_keys WHERE kek_version = ? LIMIT ?",  # noqa: S608
                (kek_version, limit),
            ).fetchall()
        return [self._row(row) for row in rows]

    def count_by_kek_version(self) -> dict[int, int]:
        """``{kek_version: number of keys}``."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT kek_version, COUNT(*) FROM data_keys GROUP BY kek_version ORDER BY 1"
            ).fetchall()
        return {int(version): int(count) for version, count in rows}
