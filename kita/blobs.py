"""The blob store: encrypted files (photos, attachments) under ``instance/blobs/`` by content id.

The store keeps bytes it is given and knows nothing about what they are: callers encrypt before
``put`` and decrypt after ``get``. Content ids are random (never derived from names or from the
plaintext, which would let anyone holding a copy confirm a guess), 32 lower-case hex digits,
stored as ``<root>/<first two digits>/<id>`` with mode 0600. Writes are atomic: a crash leaves
either no file or the whole file.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

_ID_RE = re.compile(r"\A[0-9a-f]{32}\Z")


class BlobError(Exception):
    """Base class of blob store failures."""


class BlobNotFoundError(BlobError):
    """No blob with this content id exists (never stored, or deleted)."""


class BlobStore:
    """Files by content id in one directory tree."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @staticmethod
    def is_valid_id(blob_id: str) -> bool:
        return isinstance(blob_id, str) and _ID_RE.match(blob_id) is not None

    def path(self, blob_id: str) -> Path:
        """Where the blob lives; refuses anything that is not a content id (no path tricks)."""
        if not self.is_valid_id(blob_id):
            raise ValueError("not a blob content id")
        return self.root / blob_id[:2] / blob_id

    def put(self, data: bytes) -> str:
        """Store ``data`` under a new random content id and return the id."""
        blob_id = secrets.token_hex(16)
        target = self.path(blob_id)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = target.with_name(f".{blob_id}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        return blob_id

    def get(self, blob_id: str) -> bytes:
        """The stored bytes; :class:`BlobNotFoundError` if there are none."""
        try:
            return self.path(blob_id).read_bytes()
        except FileNotFoundError:
            raise BlobNotFoundError(blob_id) from None

    def exists(self, blob_id: str) -> bool:
        return self.path(blob_id).is_file()

    def delete(self, blob_id: str) -> bool:
        """Remove the blob; True if it existed. Its content is encrypted with a key that is
        shredded along with it, so unlinking is enough."""
        try:
            self.path(blob_id).unlink()
        except FileNotFoundError:
            return False
        return True

    def ids(self) -> Iterator[str]:
        """Every stored content id (for sweeping blobs no row refers to)."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if not folder.is_dir():
                continue
            for item in sorted(folder.iterdir()):
                if self.is_valid_id(item.name):
                    yield item.name

    def modified_at(self, blob_id: str) -> float:
        """The file's modification time (seconds since the epoch)."""
        try:
            return self.path(blob_id).stat().st_mtime
        except FileNotFoundError:
            raise BlobNotFoundError(blob_id) from None
