"""Exceptions of the crypto package. Messages name ids and versions, never content."""

from __future__ import annotations


class CryptoError(Exception):
    """Base class of every failure in ``kita.crypto``."""


class UnsupportedFormatError(CryptoError):
    """The blob has an unknown magic, format version or algorithm id."""


class DecryptionError(CryptoError):
    """Authentication failed: wrong key, wrong context, or the blob was changed."""


class KeyringError(CryptoError):
    """A master key (KEK) is missing, malformed, unsafe on disk or cannot be created."""


class KeyNotFoundError(CryptoError):
    """The subject has no data key of that kind (never created, or shredded)."""


class KeystoreError(CryptoError):
    """The keystore database could not complete an operation."""


class RetireRefusedError(CryptoError):
    """A master key version cannot be retired because something still needs it."""
