"""AES-256-GCM format and associated data: properties over thousands of generated cases."""

from __future__ import annotations

import dataclasses
import logging
import struct
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kita.crypto import (
    Context,
    CryptoError,
    DataKey,
    DecryptionError,
    UnsupportedFormatError,
    blob_key_version,
    decrypt,
    encrypt,
)
from kita.crypto.aead import HEADER_BYTES, MIN_BLOB_BYTES, PREFIX_BYTES

MANY = settings(max_examples=2000, deadline=None)

names = st.text(min_size=1, max_size=12)
versions = st.integers(min_value=1, max_value=2**32 - 1)
contexts = st.builds(
    Context,
    purpose=names,
    table=names,
    column=names,
    row_id=st.uuids(),
    subject_id=st.uuids(),
    kita_id=st.none() | st.uuids(),
    key_version=versions,
)
key_bytes = st.binary(min_size=32, max_size=32)
plaintexts = st.binary(max_size=64)


def key_for(raw: bytes, context: Context) -> DataKey:
    return DataKey(raw, context.key_version, context.subject_id, "general")


def sample() -> tuple[DataKey, Context]:
    context = Context(
        purpose="observation",
        table="observations",
        column="text",
        row_id=uuid.uuid4(),
        subject_id=uuid.uuid4(),
        kita_id=uuid.uuid4(),
        key_version=1,
    )
    return key_for(bytes(range(32)), context), context


@MANY
@given(raw=key_bytes, plaintext=plaintexts, context=contexts)
def test_round_trip(raw: bytes, plaintext: bytes, context: Context) -> None:
    key = key_for(raw, context)
    blob = encrypt(key, plaintext, context)
    assert blob[:2] == b"KT"
    assert blob_key_version(blob) == context.key_version
    assert len(blob) == PREFIX_BYTES + len(plaintext) + 16
    if len(plaintext) >= 8:  # shorter strings may occur in random bytes by chance
        assert plaintext not in blob[PREFIX_BYTES:]
    assert decrypt(key, blob, context) == plaintext


@MANY
@given(raw=key_bytes, plaintext=plaintexts, context=contexts, data=st.data())
def test_any_single_bit_flip_is_rejected(
    raw: bytes, plaintext: bytes, context: Context, data: st.DataObject
) -> None:
    key = key_for(raw, context)
    blob = bytearray(encrypt(key, plaintext, context))
    bit = data.draw(st.integers(min_value=0, max_value=len(blob) * 8 - 1), label="bit")
    blob[bit // 8] ^= 1 << (bit % 8)
    expected = UnsupportedFormatError if bit // 8 < 4 else DecryptionError
    with pytest.raises(expected):
        decrypt(key, bytes(blob), context)


def test_every_bit_of_header_nonce_ciphertext_and_tag_is_covered() -> None:
    """Exhaustive companion of the property above, region by region, on one blob."""
    key, context = sample()
    blob = encrypt(key, b"Marie hat heute mit Bauklotzen gebaut", context)
    regions = {"magic/version/algorithm": range(4), "key version": range(4, HEADER_BYTES)}
    regions["nonce"] = range(HEADER_BYTES, PREFIX_BYTES)
    regions["ciphertext"] = range(PREFIX_BYTES, len(blob) - 16)
    regions["tag"] = range(len(blob) - 16, len(blob))
    for name, positions in regions.items():
        for position in positions:
            for bit in range(8):
                changed = bytearray(blob)
                changed[position] ^= 1 << bit
                with pytest.raises(CryptoError):
                    decrypt(key, bytes(changed), context)
        assert positions, name


FIELDS = ("purpose", "table", "column", "row_id", "subject_id", "kita_id", "key_version")


def other_value(field: str, current: object) -> st.SearchStrategy[object]:
    if field in {"purpose", "table", "column"}:
        return names.filter(lambda value: value != current)
    if field == "key_version":
        return versions.filter(lambda value: value != current)
    if field == "kita_id":
        return (st.none() | st.uuids().map(str)).filter(lambda value: value != current)
    return st.uuids().map(str).filter(lambda value: value != current)


@MANY
@given(raw=key_bytes, plaintext=plaintexts, context=contexts, data=st.data())
def test_changing_any_context_field_is_rejected(
    raw: bytes, plaintext: bytes, context: Context, data: st.DataObject
) -> None:
    """A ciphertext moved to another row, child, column, Kita or key version never decrypts."""
    key = key_for(raw, context)
    blob = encrypt(key, plaintext, context)
    field = data.draw(st.sampled_from(FIELDS), label="field")
    value = data.draw(other_value(field, getattr(context, field)), label="value")
    change: dict[str, Any] = {field: value}
    moved = dataclasses.replace(context, **change)
    assert moved != context
    with pytest.raises(DecryptionError):
        decrypt(key, blob, moved)


@MANY
@given(raw=key_bytes, plaintext=plaintexts, context=contexts, other=key_bytes)
def test_another_key_or_key_version_is_rejected(
    raw: bytes, plaintext: bytes, context: Context, other: bytes
) -> None:
    key = key_for(raw, context)
    blob = encrypt(key, plaintext, context)
    if other != raw:
        with pytest.raises(DecryptionError):
            decrypt(key_for(other, context), blob, context)
    # The same key bytes under another version, with a context naming that version.
    version = context.key_version % (2**32 - 1) + 1
    relabelled = dataclasses.replace(context, key_version=version)
    with pytest.raises(DecryptionError):
        decrypt(DataKey(raw, version, context.subject_id, "general"), blob, relabelled)


@MANY
@given(
    raw=key_bytes,
    context=contexts,
    header=st.tuples(st.binary(min_size=2, max_size=2), st.integers(0, 255), st.integers(0, 255)),
)
def test_unknown_magic_version_or_algorithm_is_refused(
    raw: bytes, context: Context, header: tuple[bytes, int, int]
) -> None:
    magic, version, algorithm = header
    key = key_for(raw, context)
    blob = encrypt(key, b"x", context)
    forged = struct.pack(">2sBB", magic, version, algorithm) + blob[4:]
    if (magic, version, algorithm) == (b"KT", 1, 1):
        assert decrypt(key, forged, context) == b"x"
    else:
        with pytest.raises(UnsupportedFormatError):
            decrypt(key, forged, context)


@pytest.mark.parametrize("version", [0, 2, 255])
def test_future_and_zero_format_versions_are_refused(version: int) -> None:
    key, context = sample()
    blob = bytearray(encrypt(key, b"text", context))
    blob[2] = version
    with pytest.raises(UnsupportedFormatError, match="format version"):
        decrypt(key, bytes(blob), context)


@pytest.mark.parametrize("algorithm", [0, 2, 255])
def test_unknown_algorithm_ids_are_refused(algorithm: int) -> None:
    key, context = sample()
    blob = bytearray(encrypt(key, b"text", context))
    blob[3] = algorithm
    with pytest.raises(UnsupportedFormatError, match="algorithm"):
        decrypt(key, bytes(blob), context)


@pytest.mark.parametrize("blob", [b"", b"K", b"KT", b"KT\x01\x01", b"plain text, not encrypted"])
def test_short_or_foreign_blobs_are_refused(blob: bytes) -> None:
    key, context = sample()
    with pytest.raises(UnsupportedFormatError):
        decrypt(key, blob, context)


def test_truncated_blobs_fail_authentication() -> None:
    key, context = sample()
    blob = encrypt(key, b"", context)
    assert len(blob) == MIN_BLOB_BYTES
    for length in range(HEADER_BYTES, len(blob)):
        with pytest.raises(DecryptionError):
            decrypt(key, blob[:length], context)
    with pytest.raises(DecryptionError):
        decrypt(key, blob + b"\x00", context)


def test_each_encryption_uses_a_fresh_nonce() -> None:
    key, context = sample()
    blobs = {encrypt(key, b"same text", context) for _ in range(200)}
    assert len(blobs) == 200
    assert len({blob[HEADER_BYTES:PREFIX_BYTES] for blob in blobs}) == 200


def test_context_ids_are_canonical_and_validated() -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    as_uuid = Context(
        purpose="p",
        table="t",
        column="c",
        row_id=ids[0],
        subject_id=ids[1],
        kita_id=ids[2],
        key_version=1,
    )
    as_text = Context(
        purpose="p",
        table="t",
        column="c",
        row_id=str(ids[0]).upper(),
        subject_id=ids[1].hex,
        kita_id=str(ids[2]),
        key_version=1,
    )
    assert as_uuid == as_text
    assert as_uuid.serialise() == as_text.serialise()
    with pytest.raises(ValueError, match="UUID"):
        dataclasses.replace(as_uuid, row_id="42")
    with pytest.raises(ValueError, match="purpose"):
        dataclasses.replace(as_uuid, purpose="")
    with pytest.raises(ValueError, match="key version"):
        dataclasses.replace(as_uuid, key_version=0)
    with pytest.raises(TypeError):
        dataclasses.replace(as_uuid, key_version=True)


def test_context_key_version_must_match_the_key() -> None:
    key, context = sample()
    with pytest.raises(ValueError, match="key_version"):
        encrypt(key, b"x", dataclasses.replace(context, key_version=2))


def test_failures_log_ids_but_never_content(caplog: pytest.LogCaptureFixture) -> None:
    key, context = sample()
    blob = encrypt(key, b"MARKER-allergic-to-peanuts", context)
    other = dataclasses.replace(context, row_id=str(uuid.uuid4()))
    with caplog.at_level(logging.WARNING), pytest.raises(DecryptionError) as raised:
        decrypt(key, blob, other)
    assert "MARKER" not in str(raised.value)
    assert other.row_id in caplog.text
    assert "MARKER" not in caplog.text
    assert blob.hex() not in caplog.text
    assert key.key.hex() not in caplog.text
    assert key.key.hex() not in repr(key)


def test_data_keys_must_be_256_bit() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        DataKey(b"short", 1, str(uuid.uuid4()), "general")
