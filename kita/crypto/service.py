"""KeyService: the one object services use to get data keys, shred them and rotate KEKs."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from kita.crypto.aead import KEY_BYTES, DataKey, canonical_id
from kita.crypto.errors import CryptoError, KeyNotFoundError, RetireRefusedError
from kita.crypto.keyring import Keyring, MasterKey, unwrap_data_key, wrap_data_key
from kita.crypto.keystore import Keystore, WrappedKey

#: ``progress(done, total)`` after each committed batch of a rewrap.
Progress = Callable[[int, int], None]

#: Data keys are created at version 1; the header and context carry the version so that data
#: re-keying can be added later without a format change.
DATA_KEY_VERSION = 1


class KeyKind(StrEnum):
    """What a data key protects: a child's general or health data, or a conversation."""

    GENERAL = "general"
    HEALTH = "health"
    CONVERSATION = "conversation"
    ANNOUNCEMENT = "announcement"


@dataclass(frozen=True)
class KeyStatus:
    """What ``kita keys status`` shows."""

    kek_versions: tuple[int, ...]
    primary: int
    sources: Mapping[int, str]
    #: Data keys per KEK version, including versions whose KEK is missing (see ``missing``).
    data_keys: Mapping[int, int]

    @property
    def pending(self) -> int:
        """Data keys not yet wrapped by the primary (an unfinished rotation)."""
        return sum(n for version, n in self.data_keys.items() if version != self.primary)

    @property
    def missing(self) -> tuple[int, ...]:
        """KEK versions that wrap data keys but are not available: those keys cannot be used."""
        return tuple(v for v in sorted(self.data_keys) if v not in self.kek_versions)

    @property
    def retirable(self) -> tuple[int, ...]:
        """File-based KEK versions that no data key needs and that are not the primary."""
        return tuple(
            v
            for v in self.kek_versions
            if v != self.primary and not self.data_keys.get(v) and self.sources[v] == "file"
        )


@dataclass(frozen=True)
class RotationResult:
    """Outcome of :meth:`KeyService.rotate` or :meth:`KeyService.rewrap`."""

    kek_version: int
    created: bool
    rewrapped: int


class KeyService:
    """Data keys for subjects, with a short-lived cache of unwrapped keys.

    The cache is per process and bounded in time (``cache_ttl`` seconds) and size; it is
    cleared by :meth:`shred` and :meth:`rotate`. A shred in another process takes effect here
    within ``cache_ttl`` at the latest.
    """

    def __init__(
        self,
        keyring: Keyring,
        keystore: Keystore,
        *,
        cache_ttl: float = 60.0,
        cache_size: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keyring = keyring
        self.keystore = keystore
        self._ttl = cache_ttl
        self._size = cache_size
        self._clock = clock
        self._cache: OrderedDict[tuple[str, str], tuple[float, DataKey]] = OrderedDict()
        self._lock = threading.Lock()
        # Bumped by every cache clear, so a lookup that raced a shred does not cache its result.
        self._generation = 0

    # --- data keys ---------------------------------------------------------------------------

    def data_key(
        self, subject_id: uuid.UUID | str, kind: KeyKind | str, *, create: bool = True
    ) -> DataKey:
        """The subject's data key of that kind, created (and wrapped by the primary) if missing.

        With ``create=False`` a missing key raises :class:`KeyNotFoundError` (never created, or
        shredded): use that when decrypting. A wrapped key that does not unwrap raises
        :class:`DecryptionError`; an unavailable KEK version raises :class:`KeyringError`.
        """
        subject = canonical_id(subject_id)
        kind = KeyKind(kind).value
        cached = self._cache_get((subject, kind))
        if cached is not None:
            return cached
        generation = self._generation
        stored = self.keystore.get(subject, kind)
        if stored is None:
            if not create:
                raise KeyNotFoundError(f"no {kind} data key for subject {subject}")
            key = self._create(subject, kind)
        else:
            key = self._unwrap(stored)
        self._cache_put((subject, kind), key, generation)
        return key

    def _create(self, subject: str, kind: str) -> DataKey:
        self.keyring.refresh()  # another process may have rotated: wrap with the real primary
        key = DataKey(secrets.token_bytes(KEY_BYTES), DATA_KEY_VERSION, subject, kind)
        mine = self._wrap(self.keyring.primary, key)
        stored = self.keystore.add(mine)
        if stored != mine:  # another process won the insert: its key is the key
            key = self._unwrap(stored)
        # A concurrent `retire` may have destroyed the KEK we just used; rewrap while we can.
        self.keyring.refresh()
        if stored.kek_version not in self.keyring.versions:
            primary = self.keyring.primary
            self.keystore.update_wrapping([(stored, self._wrap(primary, key))])
        return key

    @staticmethod
    def _wrap(kek: MasterKey, key: DataKey) -> WrappedKey:
        return WrappedKey(
            key.subject_id, key.kind, key.version, kek.version, wrap_data_key(kek, key)
        )

    def _unwrap(self, stored: WrappedKey, kek: MasterKey | None = None) -> DataKey:
        kek = kek or self.keyring.get(stored.kek_version)
        return unwrap_data_key(
            kek,
            stored.wrapped,
            subject_id=stored.subject_id,
            kind=stored.kind,
            version=stored.version,
        )

    def shred(self, subject_id: uuid.UUID | str) -> int:
        """Delete every data key of the subject (purged from the keystore files); clear the cache.

        Afterwards nothing encrypted for the subject can be decrypted, in the database or in
        any backup of it, once the keystore backups holding the key have expired. Returns the
        number of keys deleted (0 when called again).
        """
        subject = canonical_id(subject_id)
        self.clear_cache()
        try:
            return self.keystore.delete_subject(subject)
        finally:
            # A concurrent data_key() may have cached the key while we deleted it.
            self.clear_cache()

    # --- cache ----------------------------------------------------------------------------

    def clear_cache(self) -> None:
        """Forget every unwrapped key held by this process."""
        with self._lock:
            self._cache.clear()
            self._generation += 1

    def _cache_get(self, slot: tuple[str, str]) -> DataKey | None:
        now = self._clock()
        with self._lock:
            entry = self._cache.get(slot)
            if entry is None:
                return None
            expires, key = entry
            if expires <= now:
                del self._cache[slot]
                return None
            self._cache.move_to_end(slot)
            return key

    def _cache_put(self, slot: tuple[str, str], key: DataKey, generation: int) -> None:
        if self._ttl <= 0 or self._size <= 0:
            return
        with self._lock:
            if generation != self._generation:
                return
            self._cache[slot] = (self._clock() + self._ttl, key)
            self._cache.move_to_end(slot)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)

    # --- master key lifecycle -------------------------------------------------------------

    def status(self) -> KeyStatus:
        """KEK versions, the primary, their sources and data key counts per KEK version."""
        self.keyring.refresh()
        return KeyStatus(
            kek_versions=self.keyring.versions,
            primary=self.keyring.primary.version,
            sources=self.keyring.sources(),
            data_keys=self.keystore.count_by_kek_version(),
        )

    def rotate(
        self, progress: Progress | None = None, *, resume: bool = True, batch_size: int = 500
    ) -> RotationResult:
        """Make a new KEK version the primary and rewrap every data key to it.

        Resumable: with ``resume`` (the default), if data keys are still wrapped by older
        versions (an interrupted rotation), this finishes that rotation instead of creating
        yet another version. ``resume=False`` always creates a new version (for a KEK that
        must be replaced at once). Data rows are untouched.
        """
        self.keyring.refresh()
        created = False
        if not (resume and self.status().pending):
            self.keyring.create_version()
            created = True
        self.clear_cache()
        result = self.rewrap(progress, batch_size=batch_size)
        return RotationResult(result.kek_version, created, result.rewrapped)

    def rewrap(self, progress: Progress | None = None, *, batch_size: int = 500) -> RotationResult:
        """Rewrap every data key not wrapped by the primary, in committed batches.

        Idempotent: keys already wrapped by the primary are skipped, so an interrupted run
        is finished by running again. ``progress(done, total)`` is called after each batch.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.keyring.refresh()
        target = self.keyring.primary
        counts = self.keystore.count_by_kek_version()
        total = sum(n for version, n in counts.items() if version != target.version)
        done = 0
        if progress is not None:
            progress(done, total)
        # Repeat until nothing older is left: a process with a stale keyring may have wrapped
        # a new key with an older version meanwhile.
        while others := [v for v in counts if v != target.version]:
            for version in others:
                kek = self.keyring.get(version)
                while batch := self.keystore.list_by_kek_version(version, batch_size):
                    changes = [(old, self._wrap(target, self._unwrap(old, kek))) for old in batch]
                    changed = self.keystore.update_wrapping(changes)
                    if changed == 0:
                        raise CryptoError("rewrap made no progress; run it again")
                    done += changed
                    total = max(total, done)
                    if progress is not None:
                        progress(done, total)
            counts = self.keystore.count_by_kek_version()
        self.clear_cache()
        return RotationResult(target.version, False, done)

    def retire(self, version: int) -> None:
        """Destroy a KEK version once no data key is wrapped by it and it is not the primary.

        Keystore backups made before the rewrap still need this version: retire only after
        they have expired.
        """
        status = self.status()
        if version not in status.kek_versions:
            raise RetireRefusedError(f"master key version {version} does not exist")
        if version == status.primary:
            raise RetireRefusedError(f"master key version {version} is the primary")
        needed = status.data_keys.get(version, 0)
        if needed:
            raise RetireRefusedError(
                f"{needed} data keys are still wrapped by master key version {version}; "
                "run `kita keys rotate` to finish rewrapping first"
            )
        if status.sources[version] != "file":
            raise RetireRefusedError(
                f"master key version {version} comes from the environment; unset it there"
            )
        self.keyring.destroy_version(
            version, still_needed=lambda: self.keystore.count_by_kek_version().get(version, 0)
        )
        self.clear_cache()
