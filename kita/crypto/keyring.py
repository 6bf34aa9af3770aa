"""Master keys (KEKs): versioned 256-bit keys in ``instance/keys/`` or ``KITA_MASTER_KEY``.

Each version lives in its own file ``kek-<version>.key`` (base64url text, mode 0600). The highest
version is the primary: new data keys are wrapped by it, and rotation rewraps the rest to it.
The environment value is version 1 and meant for development only.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
import secrets
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kita.crypto.aead import (
    KEY_BYTES,
    MAX_KEY_VERSION,
    WRAP_LABEL,
    DataKey,
    canonical_id,
    check_version,
    open_blob,
    seal,
)
from kita.crypto.errors import DecryptionError, KeyringError, RetireRefusedError

ENV_VAR = "KITA_MASTER_KEY"
SOURCE_FILE = "file"
SOURCE_ENVIRONMENT = "environment"
_FILE_NAME = re.compile(r"^kek-([1-9][0-9]{0,9})\.key$")


@dataclass(frozen=True)
class MasterKey:
    """One KEK version. ``source`` is ``"file"`` or ``"environment"``."""

    version: int
    key: bytes = field(repr=False)
    source: str = SOURCE_FILE

    def __post_init__(self) -> None:
        check_version(self.version, "master key version")
        if not isinstance(self.key, bytes) or len(self.key) != KEY_BYTES:
            raise ValueError("a master key is exactly 32 bytes")


def key_file(key_dir: Path, version: int) -> Path:
    """The path of one KEK version's file."""
    return Path(key_dir) / f"kek-{check_version(version, 'master key version')}.key"


def encode_master_key(key: bytes) -> str:
    """base64url without padding: the text of a key file and of ``KITA_MASTER_KEY``."""
    return base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")


def generate_master_key_value() -> str:
    """A fresh random value suitable for ``KITA_MASTER_KEY`` (development only)."""
    return encode_master_key(secrets.token_bytes(KEY_BYTES))


def decode_master_key(text: str, where: str) -> bytes:
    """Decode base64url (padding optional) into exactly 32 bytes, or raise KeyringError."""
    value = text.strip()
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError(f"{where} is not base64url text") from None
    if len(raw) != KEY_BYTES:
        raise KeyringError(f"{where} must hold exactly 32 bytes, not {len(raw)}")
    return raw


def _file_versions(key_dir: Path) -> list[int]:
    try:
        names = os.listdir(key_dir)
    except FileNotFoundError:
        return []
    found = (int(m.group(1)) for m in map(_FILE_NAME.match, names) if m)
    return sorted(version for version in found if version <= MAX_KEY_VERSION)


def read_master_key_file(path: Path, version: int) -> MasterKey:
    """Read one key file, refusing it when group or others have any permission on it."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as error:
        raise KeyringError(f"cannot open master key file {path}: {error.strerror}") from None
    with os.fdopen(fd, "r", encoding="ascii") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise KeyringError(f"master key file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise KeyringError(
                f"master key file {path} is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}`"
            )
        try:
            text = handle.read(256)
        except UnicodeDecodeError:
            raise KeyringError(f"master key file {path} is not base64url text") from None
    return MasterKey(version, decode_master_key(text, f"master key file {path}"))


def load_master_keys(key_dir: Path | None, env_value: str | None = None) -> dict[int, MasterKey]:
    """All KEK versions from the key directory and (as version 1) the environment value.

    An environment key and a file for version 1 must agree. Returns an empty dict when there
    are none; :class:`Keyring` turns that into an error.
    """
    keys: dict[int, MasterKey] = {}
    if key_dir is not None:
        for version in _file_versions(Path(key_dir)):
            keys[version] = read_master_key_file(key_file(key_dir, version), version)
    if env_value:
        raw = decode_master_key(env_value, ENV_VAR)
        existing = keys.get(1)
        if existing is not None and not secrets.compare_digest(existing.key, raw):
            raise KeyringError(f"{ENV_VAR} differs from master key version 1 in {key_dir}")
        if existing is None:
            keys[1] = MasterKey(1, raw, SOURCE_ENVIRONMENT)
    return keys


def create_master_key(key_dir: Path, *, version: int | None = None) -> MasterKey:
    """Create a new random KEK file (mode 0600) and return it; never overwrites a file.

    ``version`` defaults to one more than the highest version in the directory. The file is
    written under a temporary name, synced, and linked into place, so a crash never leaves a
    half-written key under the real name.
    """
    key_dir = Path(key_dir)
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if version is None:
        version = max(_file_versions(key_dir), default=0) + 1
    path = key_file(key_dir, version)
    if path.exists():
        raise KeyringError(f"master key file {path} already exists; refusing to overwrite it")
    key = secrets.token_bytes(KEY_BYTES)
    temporary = key_dir / f".kek-{version}.{secrets.token_hex(8)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask can only narrow the mode; make it exact anyway
        os.write(fd, (encode_master_key(key) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(temporary, path)  # atomic and, unlike rename, refuses an existing target
    except FileExistsError:
        raise KeyringError(
            f"master key file {path} already exists; refusing to overwrite it"
        ) from None
    finally:
        temporary.unlink()
    _sync_directory(key_dir)
    return MasterKey(version, key)


def ensure_master_key(key_dir: Path, env_value: str | None = None) -> MasterKey | None:
    """Create version 1 unless a master key exists already (for ``kita init``; safe to repeat).

    Returns the created key, or ``None`` when nothing was created.
    """
    if load_master_keys(key_dir, env_value):
        return None
    return create_master_key(key_dir)


def _sync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can fsync a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class Keyring:
    """The KEK versions available to this process; the highest version is the primary.

    Another process (``kita keys rotate``) may add or retire versions; :meth:`refresh` re-reads
    the directory, and :meth:`get` does so once before giving up on an unknown version.
    """

    def __init__(self, key_dir: Path | None, env_value: str | None = None) -> None:
        self.key_dir = None if key_dir is None else Path(key_dir)
        self._env_value = env_value or None
        self._lock = threading.Lock()
        self._keys: dict[int, MasterKey] = {}
        self.refresh()

    def refresh(self) -> None:
        """Re-read the key directory (and environment value); raise if no key is left."""
        keys = load_master_keys(self.key_dir, self._env_value)
        if not keys:
            where = self.key_dir if self.key_dir is not None else ENV_VAR
            raise KeyringError(f"no master key found in {where}; run `kita init`")
        with self._lock:
            self._keys = keys

    @property
    def versions(self) -> tuple[int, ...]:
        """Known KEK versions, ascending."""
        with self._lock:
            return tuple(sorted(self._keys))

    @property
    def primary(self) -> MasterKey:
        """The highest version: it wraps every new data key."""
        with self._lock:
            return self._keys[max(self._keys)]

    def sources(self) -> dict[int, str]:
        """``{version: "file" | "environment"}``."""
        with self._lock:
            return {version: key.source for version, key in sorted(self._keys.items())}

    def get(self, version: int) -> MasterKey:
        """One KEK version; re-reads the directory once if it is not known yet."""
        with self._lock:
            key = self._keys.get(version)
        if key is None:
            self.refresh()
            with self._lock:
                key = self._keys.get(version)
        if key is None:
            raise KeyringError(f"master key version {version} is not available")
        return key

    def create_version(self) -> MasterKey:
        """Write a new KEK file one above the highest known version; it becomes primary."""
        if self.key_dir is None:
            raise KeyringError(f"creating a master key needs a key directory, not only {ENV_VAR}")
        self.refresh()
        key = create_master_key(self.key_dir, version=max(self.versions) + 1)
        self.refresh()
        return key

    def destroy_version(self, version: int, still_needed: Callable[[], int] | None = None) -> None:
        """Delete one KEK file. Callers check first that nothing needs it (KeyService.retire).

        The file is first renamed out of sight, so that a process creating a data key at that
        moment notices the version is gone and rewraps; then ``still_needed()`` is asked again
        and, if anything appeared, the file is put back and the retirement refused.
        Unlinking is what a filesystem offers; journaling and SSDs may keep old blocks, so
        the key directory belongs on an encrypted volume.
        """
        key = self.get(version)
        if key.source != SOURCE_FILE or self.key_dir is None:
            raise KeyringError(
                f"master key version {version} comes from {ENV_VAR}; remove it there instead"
            )
        path = key_file(self.key_dir, version)
        hidden = self.key_dir / f".kek-{version}.retiring"
        os.replace(path, hidden)
        _sync_directory(self.key_dir)
        needed = still_needed() if still_needed is not None else 0
        if needed:
            os.replace(hidden, path)
            _sync_directory(self.key_dir)
            self.refresh()
            raise RetireRefusedError(
                f"{needed} data keys were just wrapped by master key version {version}"
            )
        hidden.unlink()
        _sync_directory(self.key_dir)
        self.refresh()


# --- wrapping data keys ---------------------------------------------------------------------
# AES-256-GCM with associated data rather than RFC 3394 AES key wrap: RFC 3394 authenticates the
# key but cannot bind it to anything, so someone with write access to the keystore could swap
# two children's wrapped keys (or a general and a health key) and both would unwrap. Binding
# subject id, kind and DEK version in the associated data makes such a swap fail. Random 96-bit
# nonces are safe here: one KEK wraps at most a few million keys, far below the 2**32 bound.


def _wrap_aad(subject_id: str, kind: str, version: int) -> bytes:
    body = json.dumps(
        {"subject_id": canonical_id(subject_id), "kind": kind, "version": version},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return WRAP_LABEL + body.encode("ascii")


def wrap_data_key(kek: MasterKey, key: DataKey) -> bytes:
    """Encrypt a data key under a KEK, bound to its subject, kind and version."""
    return seal(kek.key, kek.version, key.key, _wrap_aad(key.subject_id, key.kind, key.version))


def unwrap_data_key(
    kek: MasterKey, wrapped: bytes, *, subject_id: str, kind: str, version: int
) -> DataKey:
    """Decrypt a wrapped data key; raises DecryptionError if it was moved or changed."""
    raw = open_blob(kek.key, kek.version, wrapped, _wrap_aad(subject_id, kind, version))
    if len(raw) != KEY_BYTES:
        raise DecryptionError("the unwrapped data key has the wrong length")
    return DataKey(raw, version, subject_id, kind)
