"""VAPID (RFC 8292): the application server's P-256 key and the signed tokens that identify it
to push services.

The key is one PEM file in the instance folder (mode 0600), made by ``kita init``. Browsers get
its public half as ``applicationServerKey`` and bind each subscription to it, so replacing the
key silently breaks every subscription: the file is never overwritten.

This module uses ``cryptography`` directly rather than ``py_vapid``: py_vapid writes key files
with the process umask (often world-readable) and re-signs a token for every message, while a
token here is signed once per push service and reused until shortly before it expires.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import secrets
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

#: The key file's name inside the instance folder.
VAPID_KEY_FILE = "vapid-private.pem"
#: RFC 8292 allows at most 24 hours; 12 hours leaves room for clock skew at the push service.
TOKEN_LIFETIME_S = 12 * 3600
#: A cached token is replaced once less than this is left of its lifetime.
TOKEN_RENEW_BEFORE_S = 3600
_MAX_KEY_FILE_BYTES = 4096
_JWT_HEADER = b'{"typ":"JWT","alg":"ES256"}'
_SUBJECT = re.compile(r"^(mailto:[^@\s]+@[^@\s]+|https://[^\s/]+(/\S*)?)\Z")
_ORIGIN = re.compile(r"^https?://[^/?#@\s]+\Z")


class VapidError(Exception):
    """The VAPID key file is missing, unsafe on disk or malformed, or a claim is invalid."""


def b64url(data: bytes) -> str:
    """base64url without padding, as JWTs and the Push API use it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class VapidKey:
    """The application server's signing key. ``application_server_key`` goes to browsers."""

    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.private_key, ec.EllipticCurvePrivateKey) or not isinstance(
            self.private_key.curve, ec.SECP256R1
        ):
            raise VapidError("a VAPID key must be a P-256 (secp256r1) private key")

    @classmethod
    def generate(cls) -> VapidKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_pem(cls, data: bytes) -> VapidKey:
        """Parse an unencrypted PEM private key (PKCS#8 or SEC1) and check it is P-256."""
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise VapidError("the VAPID key is not an unencrypted PEM private key") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise VapidError("a VAPID key must be a P-256 (secp256r1) private key")
        return cls(key)

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @cached_property
    def public_bytes(self) -> bytes:
        """The public key as a 65-byte uncompressed point."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    @cached_property
    def application_server_key(self) -> str:
        """The public key as base64url: ``pushManager.subscribe({applicationServerKey})``."""
        return b64url(self.public_bytes)

    def sign_token(self, *, audience: str, subject: str, expires_at: int) -> str:
        """A VAPID JWT (ES256) for one push service origin, valid until ``expires_at``."""
        if not _ORIGIN.match(audience):
            raise VapidError("the audience must be a push service origin (scheme://host[:port])")
        check_subject(subject)
        claims = json.dumps(
            {"aud": audience, "exp": int(expires_at), "sub": subject},
            separators=(",", ":"),
            sort_keys=True,
        ).encode("utf-8")
        signing_input = f"{b64url(_JWT_HEADER)}.{b64url(claims)}"
        der = self.private_key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        # JWS wants the raw 64-byte r || s, not the DER structure cryptography returns.
        return f"{signing_input}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def check_subject(subject: str) -> str:
    """The VAPID contact: a ``mailto:`` address or an ``https:`` URL (RFC 8292, section 2.1)."""
    if not isinstance(subject, str) or len(subject) > 256 or not _SUBJECT.match(subject):
        raise VapidError("the VAPID subject must be a mailto: address or an https: URL")
    return subject


class VapidSigner:
    """``Authorization`` header values for one key and contact, one token per push service
    origin, reused until :data:`TOKEN_RENEW_BEFORE_S` before it expires."""

    def __init__(
        self,
        key: VapidKey,
        subject: str,
        *,
        lifetime_s: int = TOKEN_LIFETIME_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not TOKEN_RENEW_BEFORE_S < lifetime_s <= 24 * 3600:
            raise VapidError("a VAPID token lives longer than an hour and at most 24 hours")
        self.key = key
        self.subject = check_subject(subject)
        self._lifetime_s = lifetime_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[int, str]] = {}

    def authorization(self, audience: str) -> str:
        """``vapid t=<jwt>,k=<public key>`` for requests to ``audience`` (an origin)."""
        now = int(self._clock())
        with self._lock:
            cached = self._cache.get(audience)
            if cached is None or cached[0] - now < TOKEN_RENEW_BEFORE_S:
                expires_at = now + self._lifetime_s
                token = self.key.sign_token(
                    audience=audience, subject=self.subject, expires_at=expires_at
                )
                cached = (expires_at, f"vapid t={token},k={self.key.application_server_key}")
                self._cache[audience] = cached
        return cached[1]


def vapid_key_path(instance_path: Path) -> Path:
    return Path(instance_path) / VAPID_KEY_FILE


def load_vapid_key(path: Path) -> VapidKey:
    """Read the key file, refusing it when group or others have any permission on it."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as error:
        raise VapidError(f"cannot open VAPID key file {path}: {error.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise VapidError(f"VAPID key file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise VapidError(
                f"VAPID key file {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}`"
            )
        data = handle.read(_MAX_KEY_FILE_BYTES + 1)
    if len(data) > _MAX_KEY_FILE_BYTES:
        raise VapidError(f"VAPID key file {path} is too large to be a key")
    try:
        return VapidKey.from_pem(data)
    except VapidError as error:
        raise VapidError(f"VAPID key file {path}: {error}") from None


def create_vapid_key(path: Path) -> VapidKey:
    """Make a new key and write it to ``path`` (mode 0600); never overwrites a file.

    Written under a temporary name, synced and linked into place, so a crash never leaves a
    half-written key under the real name.
    """
    path = Path(path)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.exists():
        raise VapidError(f"VAPID key file {path} already exists; refusing to overwrite it")
    key = VapidKey.generate()
    temporary = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask can only narrow the mode; make it exact anyway
        os.write(fd, key.private_pem())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)  # atomic and, unlike rename, refuses an existing target
    except FileExistsError:
        raise VapidError(
            f"VAPID key file {path} already exists; refusing to overwrite it"
        ) from None
    finally:
        temporary.unlink()
    with contextlib.suppress(OSError):  # not every platform can fsync a directory
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return key


def ensure_vapid_key(path: Path) -> tuple[VapidKey, bool]:
    """Load the key, or create it when the file does not exist (for ``kita init``; safe to
    repeat). Returns the key and whether it was created now."""
    if Path(path).exists():
        return load_vapid_key(path), False
    return create_vapid_key(path), True
