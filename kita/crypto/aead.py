"""AES-256-GCM with a versioned binary format and associated data that names the row.

Blob layout (all integers big endian)::

    magic  b"KT"          2 bytes
    format version        1 byte   (1)
    algorithm id          1 byte   (1 = AES-256-GCM)
    key version           4 bytes  (the data key's version; the KEK's for wrapped keys)
    nonce                12 bytes  (random, made here)
    ciphertext + tag      n + 16 bytes

The associated data is the first 20 bytes (header and nonce), a domain label, and the canonical
serialisation of the :class:`Context`, so changing any header byte or any context field fails
authentication.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import uuid
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kita.crypto.errors import DecryptionError, UnsupportedFormatError

log = logging.getLogger(__name__)

MAGIC = b"KT"
FORMAT_VERSION = 1
ALG_AES_256_GCM = 1
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_HEADER = struct.Struct(">2sBBI")
HEADER_BYTES = _HEADER.size  # 8
PREFIX_BYTES = HEADER_BYTES + NONCE_BYTES  # 20
MIN_BLOB_BYTES = PREFIX_BYTES + TAG_BYTES
MAX_KEY_VERSION = 2**32 - 1

# Distinct labels keep data ciphertexts and wrapped keys in separate domains: a wrapped data key
# can never be passed off as a ciphertext of some row, even under a related key.
DATA_LABEL = b"kita.aead.data.v1\x00"
WRAP_LABEL = b"kita.aead.dek-wrap.v1\x00"


def canonical_id(value: uuid.UUID | str) -> str:
    """Return the canonical lower-case hyphenated form of a UUID (given as UUID or string).

    Ids are normalised so that ``UUID(x)`` and ``str(UUID(x)).upper()`` name the same key and
    the same associated data; anything that is not a UUID is refused.
    """
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            pass
    raise ValueError(f"expected a UUID, got {type(value).__name__}")


def check_version(version: int, what: str = "key version") -> int:
    """Validate a key version (1 to 2**32-1) and return it."""
    if isinstance(version, bool) or not isinstance(version, int):
        raise TypeError(f"{what} must be an int")
    if not 1 <= version <= MAX_KEY_VERSION:
        raise ValueError(f"{what} must be between 1 and {MAX_KEY_VERSION}")
    return version


@dataclass(frozen=True)
class DataKey:
    """An unwrapped data key (DEK): 32 random bytes for one subject and kind, in memory only."""

    key: bytes = field(repr=False)
    version: int
    subject_id: str
    kind: str

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != KEY_BYTES:
            raise ValueError("a data key is exactly 32 bytes")
        check_version(self.version)
        object.__setattr__(self, "subject_id", canonical_id(self.subject_id))
        if not self.kind:
            raise ValueError("a data key needs a kind")

    @property
    def id(self) -> str:
        """A stable, non-secret name of this key: ``subject:kind:version``."""
        return f"{self.subject_id}:{self.kind}:{self.version}"


@dataclass(frozen=True, init=False)
class Context:
    """Everything a ciphertext is bound to; all of it goes into the associated data.

    ``subject_id`` is the child (or conversation) whose data key encrypts the value, ``row_id``
    the row that holds it (a UUID made before the insert), ``kita_id`` the Kita it belongs to
    (``None`` only for data that belongs to no single Kita), ``key_version`` the data key's
    version. Ids may be given as :class:`uuid.UUID` or string and are stored canonically.
    """

    purpose: str
    table: str
    column: str
    row_id: str
    subject_id: str
    kita_id: str | None
    key_version: int

    def __init__(
        self,
        *,
        purpose: str,
        table: str,
        column: str,
        row_id: uuid.UUID | str,
        subject_id: uuid.UUID | str,
        kita_id: uuid.UUID | str | None,
        key_version: int,
    ) -> None:
        for name, text in (("purpose", purpose), ("table", table), ("column", column)):
            if not isinstance(text, str) or not text:
                raise ValueError(f"context {name} must be a non-empty string")
        object.__setattr__(self, "purpose", purpose)
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "column", column)
        object.__setattr__(self, "row_id", canonical_id(row_id))
        object.__setattr__(self, "subject_id", canonical_id(subject_id))
        object.__setattr__(self, "kita_id", None if kita_id is None else canonical_id(kita_id))
        object.__setattr__(self, "key_version", check_version(key_version))

    def serialise(self) -> bytes:
        """Canonical bytes: JSON with sorted keys, no whitespace, ASCII only."""
        return _canonical_json(
            {
                "purpose": self.purpose,
                "table": self.table,
                "column": self.column,
                "row_id": self.row_id,
                "subject_id": self.subject_id,
                "kita_id": self.kita_id,
                "key_version": self.key_version,
            }
        )


def _canonical_json(value: dict[str, str | int | None]) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def encrypt(key: DataKey, plaintext: bytes, context: Context) -> bytes:
    """Encrypt ``plaintext`` under ``key``, bound to ``context``; a fresh random nonce each call.

    ``context.key_version`` must equal ``key.version`` (a mismatch is a programming error and
    raises ``ValueError``).
    """
    if context.key_version != key.version:
        raise ValueError("context.key_version must be the data key's version")
    return seal(key.key, key.version, plaintext, DATA_LABEL + context.serialise())


def decrypt(key: DataKey, blob: bytes, context: Context) -> bytes:
    """Decrypt a blob made by :func:`encrypt` with the same key and an equal context.

    Raises :class:`UnsupportedFormatError` for an unknown magic, format version or algorithm,
    and :class:`DecryptionError` for anything else that does not authenticate. Never returns
    the ciphertext or an empty value on failure.
    """
    try:
        return open_blob(key.key, key.version, blob, DATA_LABEL + context.serialise())
    except DecryptionError as error:
        # Ids and names only: the plaintext is unknown here and the blob says nothing useful.
        log.warning(
            "decryption failed: purpose=%s table=%s column=%s row=%s key=%s (%s)",
            context.purpose,
            context.table,
            context.column,
            context.row_id,
            key.id,
            error,
        )
        raise


def blob_key_version(blob: bytes) -> int:
    """The key version named in a blob's header (after checking the format is known)."""
    return _parse_header(blob)


def seal(key: bytes, key_version: int, plaintext: bytes, aad: bytes) -> bytes:
    """Low-level AES-256-GCM sealing into the blob format; ``aad`` is appended to the prefix."""
    if not isinstance(plaintext, bytes | bytearray | memoryview):
        raise TypeError("plaintext must be bytes")
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, ALG_AES_256_GCM, check_version(key_version))
    nonce = os.urandom(NONCE_BYTES)
    prefix = header + nonce
    return prefix + AESGCM(key).encrypt(nonce, bytes(plaintext), prefix + aad)


def open_blob(key: bytes, key_version: int, blob: bytes, aad: bytes) -> bytes:
    """Low-level counterpart of :func:`seal`."""
    blob = bytes(blob)
    version = _parse_header(blob)
    if len(blob) < MIN_BLOB_BYTES:
        raise DecryptionError("the ciphertext is truncated")
    if version != key_version:
        raise DecryptionError(f"the ciphertext names key version {version}, not {key_version}")
    prefix = blob[:PREFIX_BYTES]
    nonce = blob[HEADER_BYTES:PREFIX_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, blob[PREFIX_BYTES:], prefix + aad)
    except InvalidTag:
        raise DecryptionError("the ciphertext does not authenticate") from None


def _parse_header(blob: bytes) -> int:
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise TypeError("blob must be bytes")
    if len(blob) < HEADER_BYTES or bytes(blob[:2]) != MAGIC:
        raise UnsupportedFormatError("not a kita ciphertext (unknown magic)")
    _magic, version, algorithm, key_version = _HEADER.unpack_from(blob)
    if version != FORMAT_VERSION:
        raise UnsupportedFormatError(f"unsupported ciphertext format version {version}")
    if algorithm != ALG_AES_256_GCM:
        raise UnsupportedFormatError(f"unsupported ciphertext algorithm id {algorithm}")
    return int(key_version)
