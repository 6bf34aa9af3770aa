"""VAPID keys on disk and the tokens signed with them."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from py_vapid import Vapid02

from kita.push.vapid import (
    TOKEN_LIFETIME_S,
    VapidError,
    VapidKey,
    VapidSigner,
    create_vapid_key,
    ensure_vapid_key,
    load_vapid_key,
    vapid_key_path,
)

SUBJECT = "mailto:betrieb@kita.example"
AUDIENCE = "https://fcm.googleapis.com"


def unb64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def decode_token(token: str, public_key: bytes) -> tuple[dict[str, object], dict[str, object]]:
    """Verify the ES256 signature independently and return (header, claims)."""
    header, claims, signature = token.split(".")
    raw = unb64(signature)
    assert len(raw) == 64
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)
    key.verify(der, f"{header}.{claims}".encode(), ec.ECDSA(hashes.SHA256()))
    return json.loads(unb64(header)), json.loads(unb64(claims))


def test_created_key_file_is_private_and_loads_back(tmp_path: Path) -> None:
    path = vapid_key_path(tmp_path)

    key = create_vapid_key(path)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert load_vapid_key(path).application_server_key == key.application_server_key
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_application_server_key_is_the_uncompressed_public_point(tmp_path: Path) -> None:
    key = VapidKey.generate()

    raw = unb64(key.application_server_key)

    assert len(raw) == 65 and raw[0] == 4
    assert "=" not in key.application_server_key
    assert raw == key.private_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def test_an_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "vapid.pem"
    first = create_vapid_key(path)

    with pytest.raises(VapidError, match="refusing to overwrite"):
        create_vapid_key(path)
    again, created = ensure_vapid_key(path)

    assert not created
    assert again.application_server_key == first.application_server_key


def test_ensure_creates_the_key_once(tmp_path: Path) -> None:
    path = tmp_path / "instance" / "vapid.pem"

    key, created = ensure_vapid_key(path)

    assert created and path.is_file()
    assert load_vapid_key(path).application_server_key == key.application_server_key


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "vapid.pem"
    create_vapid_key(path)
    os.chmod(path, 0o644)

    with pytest.raises(VapidError, match="chmod 600"):
        load_vapid_key(path)


@pytest.mark.parametrize(
    "content",
    [
        b"not a key",
        rsa.generate_private_key(65537, 2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        ec.generate_private_key(ec.SECP384R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        VapidKey.generate().private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        ),
    ],
    ids=["garbage", "rsa", "p384", "encrypted"],
)
def test_a_key_file_that_is_not_an_unencrypted_p256_key_is_refused(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "vapid.pem"
    path.write_bytes(content)
    path.chmod(0o600)

    with pytest.raises(VapidError):
        load_vapid_key(path)


def test_a_missing_or_symlinked_key_file_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.pem"
    create_vapid_key(real)
    link = tmp_path / "link.pem"
    link.symlink_to(real)

    with pytest.raises(VapidError, match="cannot open"):
        load_vapid_key(tmp_path / "missing.pem")
    with pytest.raises(VapidError, match="cannot open"):
        load_vapid_key(link)


def test_token_is_an_es256_jwt_for_the_push_service_origin() -> None:
    key = VapidKey.generate()

    token = key.sign_token(audience=AUDIENCE, subject=SUBJECT, expires_at=1_900_000_000)

    header, claims = decode_token(token, key.public_bytes)
    assert header == {"typ": "JWT", "alg": "ES256"}
    assert claims == {"aud": AUDIENCE, "exp": 1_900_000_000, "sub": SUBJECT}


def test_authorization_header_verifies_with_py_vapid() -> None:
    signer = VapidSigner(VapidKey.generate(), SUBJECT)

    header = signer.authorization(AUDIENCE)

    assert header.startswith("vapid t=")
    assert Vapid02.verify(header)


def test_signer_reuses_a_token_per_origin_until_shortly_before_it_expires() -> None:
    now = [1_800_000_000.0]
    key = VapidKey.generate()
    signer = VapidSigner(key, SUBJECT, clock=lambda: now[0])

    first = signer.authorization(AUDIENCE)
    other = signer.authorization("https://updates.push.services.mozilla.com")
    now[0] += TOKEN_LIFETIME_S - 3601
    still = signer.authorization(AUDIENCE)
    now[0] += 2
    renewed = signer.authorization(AUDIENCE)

    assert still == first and other != first
    assert renewed != first
    token = renewed.split("t=", 1)[1].split(",", 1)[0]
    _, claims = decode_token(token, key.public_bytes)
    assert claims["exp"] == int(now[0]) + TOKEN_LIFETIME_S


@pytest.mark.parametrize(
    "subject", ["", "betrieb@kita.example", "http://kita.example", "mailto:nobody", "x" * 300]
)
def test_subject_must_be_mailto_or_https(subject: str) -> None:
    with pytest.raises(VapidError, match="subject"):
        VapidSigner(VapidKey.generate(), subject)


@pytest.mark.parametrize(
    "audience", ["fcm.googleapis.com", "https://fcm.googleapis.com/fcm/send", "ftp://x.example"]
)
def test_audience_must_be_an_origin(audience: str) -> None:
    with pytest.raises(VapidError, match="audience"):
        VapidKey.generate().sign_token(audience=audience, subject=SUBJECT, expires_at=1)


def test_repr_does_not_show_the_private_key() -> None:
    key = VapidKey.generate()

    assert "private" not in repr(key).lower()
