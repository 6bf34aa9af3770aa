"""Envelope encryption: master keys (KEKs), per-subject data keys (DEKs), AEAD and shredding.

Imports only the ``cryptography`` package and the standard library: no Flask, no models. A
service encrypts like this::

    key = keys.data_key(child.id, KeyKind.GENERAL)
    context = Context(purpose="observation", table="observations", column="text",
                      row_id=row_id, subject_id=child.id, kita_id=child.kita_id,
                      key_version=key.version)
    blob = encrypt(key, text.encode(), context)

and decrypts with ``keys.data_key(child.id, KeyKind.GENERAL, create=False)`` and the same context.
"""

from kita.crypto.aead import Context, DataKey, blob_key_version, decrypt, encrypt
from kita.crypto.errors import (
    CryptoError,
    DecryptionError,
    KeyNotFoundError,
    KeyringError,
    KeystoreError,
    RetireRefusedError,
    UnsupportedFormatError,
)
from kita.crypto.keyring import (
    ENV_VAR,
    Keyring,
    MasterKey,
    create_master_key,
    ensure_master_key,
    generate_master_key_value,
    load_master_keys,
    unwrap_data_key,
    wrap_data_key,
)
from kita.crypto.keystore import Keystore, SqliteKeystore, WrappedKey
from kita.crypto.service import KeyKind, KeyService, KeyStatus, Progress, RotationResult

__all__ = [
    "ENV_VAR",
    "Context",
    "CryptoError",
    "DataKey",
    "DecryptionError",
    "KeyKind",
    "KeyNotFoundError",
    "KeyService",
    "KeyStatus",
    "Keyring",
    "KeyringError",
    "Keystore",
    "KeystoreError",
    "MasterKey",
    "Progress",
    "RetireRefusedError",
    "RotationResult",
    "SqliteKeystore",
    "UnsupportedFormatError",
    "WrappedKey",
    "blob_key_version",
    "create_master_key",
    "decrypt",
    "encrypt",
    "ensure_master_key",
    "generate_master_key_value",
    "load_master_keys",
    "unwrap_data_key",
    "wrap_data_key",
]
