"""aes128gcm push encryption: RFC 8291's worked example to the byte, and interoperability
with the http_ece library that pywebpush uses."""

from __future__ import annotations

import base64

import http_ece
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from kita.push.ece import MAX_PLAINTEXT_BYTES, EncryptionError, encrypt, encrypt_batch

# RFC 8291, section 5 and Appendix A.
PLAINTEXT = b"When I grow up, I want to be a watermelon"
UA_PUBLIC = (
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
)
UA_PRIVATE = "q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"
AS_PRIVATE = "yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw"
AUTH = "BTBZMqHH6r4Tts7J_aSIgg"
SALT = "DGv6ra1nlYgDCS1FRnbzlw"
BODY = (
    "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS"
    "6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Q"
    "ulcy4a-fN"
)


def unb64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def private_key(value: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(unb64(value), "big"), ec.SECP256R1())


def user_agent() -> tuple[ec.EllipticCurvePrivateKey, bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
    return key, public, b"0123456789abcdef"


def test_encrypt_matches_the_rfc_8291_example() -> None:
    body = encrypt(
        PLAINTEXT,
        unb64(UA_PUBLIC),
        unb64(AUTH),
        salt=unb64(SALT),
        sender_key=private_key(AS_PRIVATE),
    )

    assert body == unb64(BODY)


def test_the_browser_side_decrypts_with_http_ece() -> None:
    key, public, auth = user_agent()
    message = '{"title":"Нове оголошення"}'.encode()

    body = encrypt(message, public, auth)

    assert http_ece.decrypt(body, private_key=key, auth_secret=auth, version="aes128gcm") == message


def test_every_message_has_its_own_salt_and_sender_key() -> None:
    _, public, auth = user_agent()

    first, second = encrypt(b"same", public, auth), encrypt(b"same", public, auth)

    assert first[:16] != second[:16]  # salt
    assert first[21:86] != second[21:86]  # ephemeral sender key
    assert first != second


def test_rfc_example_decrypts_with_the_user_agent_key() -> None:
    decrypted = http_ece.decrypt(
        unb64(BODY), private_key=private_key(UA_PRIVATE), auth_secret=unb64(AUTH),
        version="aes128gcm",
    )  # fmt: skip

    assert decrypted == PLAINTEXT


@pytest.mark.parametrize(
    ("p256dh", "auth"),
    [
        (b"\x04" + b"\x01" * 64, b"0" * 16),  # not on the curve
        (b"\x02" + b"\x01" * 32, b"0" * 16),  # compressed point
        (unb64(UA_PUBLIC), b"short"),
        (unb64(UA_PUBLIC)[:-1], b"0" * 16),
    ],
)
def test_unusable_keys_are_refused(p256dh: bytes, auth: bytes) -> None:
    with pytest.raises(EncryptionError):
        encrypt(b"x", p256dh, auth)


def test_a_message_must_fit_one_record() -> None:
    _, public, auth = user_agent()

    assert len(encrypt(b"x" * MAX_PLAINTEXT_BYTES, public, auth)) == 4096
    with pytest.raises(EncryptionError):
        encrypt(b"x" * (MAX_PLAINTEXT_BYTES + 1), public, auth)


def test_encrypt_batch_gives_an_empty_body_for_unusable_keys() -> None:
    key, public, auth = user_agent()

    good, bad = encrypt_batch([(b"hello", public, auth), (b"hello", b"\x04" * 65, auth)])

    assert http_ece.decrypt(good, private_key=key, auth_secret=auth, version="aes128gcm") == (
        b"hello"
    )
    assert bad == b""
