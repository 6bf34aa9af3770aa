"""Push subscriptions from browsers: the JSON checks and the push-service allow-list (the
guard against server-side request forgery)."""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from kita.errors import ValidationError
from kita.push.endpoints import (
    EndpointNotAllowedError,
    InvalidSubscriptionError,
    PushServiceAllowList,
    Subscription,
    parse_subscription,
)

ALLOW = PushServiceAllowList()
P256DH = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
)
AUTH = bytes(range(16))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def subscription(
    endpoint: str = "https://fcm.googleapis.com/fcm/send/abc:APA91b",
) -> dict[str, Any]:
    return {"endpoint": endpoint, "expirationTime": None,
            "keys": {"p256dh": b64(P256DH), "auth": b64(AUTH)}}  # fmt: skip


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://fcm.googleapis.com/fcm/send/dGVzdA:APA91bH-x_y",
        "https://updates.push.services.mozilla.com/wpush/v2/gAAAAABk",
        "https://updates-autopush.stage.push.services.mozilla.com/wpush/v2/gAAA",
        "https://web.push.apple.com/QGr8w-bmHLmDgn2Ixh3jwgf2",
        "https://wns2-par02p.notify.windows.com/w/?token=BQYAAADk%2fa",
        "https://FCM.googleapis.com/fcm/send/x",
        "https://fcm.googleapis.com:443/fcm/send/x",
    ],
)
def test_endpoints_of_the_known_push_services_are_allowed(endpoint: str) -> None:
    assert ALLOW.allows(endpoint)
    assert parse_subscription(subscription(endpoint), ALLOW).endpoint == endpoint


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://fcm.googleapis.com/fcm/send/x",  # not HTTPS
        "ftp://fcm.googleapis.com/fcm/send/x",
        "file:///etc/passwd",
        "https://fcm.googleapis.com:8443/fcm/send/x",  # another port
        "https://fcm.googleapis.com:0/x",
        "https://fcm.googleapis.com:99999/x",
        "https://user:pw@fcm.googleapis.com/fcm/send/x",  # user info
        "https://fcm.googleapis.com@evil.example/x",
        "https://evil.example/fcm.googleapis.com/x",
        "https://fcm.googleapis.com.evil.example/x",
        "https://evilfcm.googleapis.com/x",
        "https://push.apple.com/x",  # "*." needs a subdomain
        "https://evilpush.apple.com/x",
        "https://notify.windows.com.evil.example/x",
        "https://127.0.0.1/x",  # IP literals
        "https://[::1]/x",
        "https://2130706433/x",
        "https://169.254.169.254/latest/meta-data",
        "https://localhost/x",
        "https://fcm.googleapis.com./x",  # trailing dot
        "https://fcm.googleapis.com",  # no path
        "https://fcm.googleapis.com/",
        "https://fcm.googleapis.com/x#fragment",
        "https://fcm.googleapis.com/x y",
        "https://fcm.googleapis.com/x\n",
        "https://fcm.googleapis.com\\@evil.example/x",
        "https://fcm.googleapis.com/\u00e4",
        "https://xn--fcm-googleapis-com/x",
        "//fcm.googleapis.com/x",
        "https://" + "a." * 200 + "push.apple.com/x",
        "https://fcm.googleapis.com/" + "x" * 2100,
        "",
    ],
)
def test_other_endpoints_are_refused(endpoint: str) -> None:
    assert not ALLOW.allows(endpoint)
    with pytest.raises(InvalidSubscriptionError) as caught:
        parse_subscription(subscription(endpoint), ALLOW)
    assert set(caught.value.fields) == {"endpoint"}


def test_a_configured_origin_is_allowed_exactly() -> None:
    allow = PushServiceAllowList.with_origins(["http://localhost:8090"])

    assert allow.allows("http://localhost:8090/notify/abc")
    assert allow.allows("https://fcm.googleapis.com/fcm/send/x")  # the defaults stay
    assert not allow.allows("http://localhost:8091/notify/abc")
    assert not allow.allows("https://localhost:8090/notify/abc")
    assert not allow.allows("http://localhost/notify/abc")
    assert not ALLOW.allows("http://localhost:8090/notify/abc")


@pytest.mark.parametrize("origin", ["localhost:8090", "http://x.example/path", "gopher://x"])
def test_a_configured_origin_must_be_an_origin(origin: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        PushServiceAllowList.with_origins([origin])


def test_parse_returns_decoded_keys_and_round_trips() -> None:
    parsed = parse_subscription(json.dumps(subscription()), ALLOW)

    assert parsed == Subscription(subscription()["endpoint"], P256DH, AUTH)
    assert parse_subscription(parsed.to_json(), ALLOW) == parsed
    assert b64(P256DH) not in repr(parsed)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda s: s.pop("keys"), "keys"),
        (lambda s: s.update(keys="x"), "keys"),
        (lambda s: s["keys"].pop("auth"), "keys.auth"),
        (lambda s: s["keys"].update(auth=b64(AUTH[:15])), "keys.auth"),
        (lambda s: s["keys"].update(auth=b64(AUTH) + "A"), "keys.auth"),
        (lambda s: s["keys"].update(auth=b64(AUTH)[:-1] + "B"), "keys.auth"),  # stray bits
        (lambda s: s["keys"].update(auth=123), "keys.auth"),
        (lambda s: s["keys"].update(p256dh="+" + b64(P256DH)[1:]), "keys.p256dh"),
        (lambda s: s["keys"].update(p256dh=b64(b"\x04" + b"\x01" * 64)), "keys.p256dh"),
        (lambda s: s["keys"].update(p256dh=b64(P256DH[:33])), "keys.p256dh"),
        (lambda s: s["keys"].update(p256dh="A" * 5000), "keys.p256dh"),
        (lambda s: s.update(endpoint=None), "endpoint"),
        (lambda s: s.update(endpoint=["https://fcm.googleapis.com/x"]), "endpoint"),
    ],
)
def test_malformed_subscriptions_name_the_field(change: Any, field: str) -> None:
    data = subscription()
    change(data)

    with pytest.raises(InvalidSubscriptionError) as caught:
        parse_subscription(data, ALLOW)

    assert set(caught.value.fields) == {field}


@pytest.mark.parametrize("data", ["", "{", "[]", "null", "1", b"\xff", "[" * 3000, "x" * 5000])
def test_malformed_json_is_a_validation_error(data: str | bytes) -> None:
    with pytest.raises(InvalidSubscriptionError):
        parse_subscription(data, ALLOW)


def test_padded_keys_are_accepted() -> None:
    data = subscription()
    data["keys"]["auth"] += "=="
    data["keys"]["p256dh"] += "="

    assert parse_subscription(data, ALLOW).auth == AUTH


def test_the_not_allowed_error_is_a_validation_error_with_a_message() -> None:
    with pytest.raises(EndpointNotAllowedError) as caught:
        ALLOW.check("https://evil.example/x")

    assert isinstance(caught.value, ValidationError)
    assert "push service" in str(caught.value.fields["endpoint"])


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_arbitrary_strings_as_endpoint_never_raise_anything_else(endpoint: str) -> None:
    allowed = ALLOW.allows(endpoint)
    try:
        parsed = parse_subscription(subscription(endpoint), ALLOW)
    except InvalidSubscriptionError:
        assert not allowed
    else:
        assert allowed and parsed.endpoint == endpoint


@settings(max_examples=300)
@given(st.from_regex(r"\Ahttps?://[a-z0-9.:@\[\]%-]{0,40}(/[ -~]{0,30})?\Z"))
def test_url_like_strings_are_allowed_only_on_push_service_hosts(endpoint: str) -> None:
    if ALLOW.allows(endpoint):
        host = endpoint.split("/")[2].lower().removesuffix(":443")
        assert endpoint.startswith("https://")
        assert host == "fcm.googleapis.com" or host.endswith(
            (".push.services.mozilla.com", ".push.apple.com", ".notify.windows.com")
        )


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300)
@given(
    st.one_of(
        JSON,
        st.text(max_size=200),
        st.binary(max_size=200),
        st.fixed_dictionaries({"endpoint": st.one_of(st.text(max_size=80), JSON), "keys": JSON}),
        st.fixed_dictionaries(
            {
                "endpoint": st.just("https://fcm.googleapis.com/fcm/send/x"),
                "keys": st.fixed_dictionaries(
                    {
                        "p256dh": st.one_of(st.text(max_size=100), JSON),
                        "auth": st.one_of(st.text(max_size=30), JSON),
                    }
                ),
            }
        ),
    )
)
def test_arbitrary_input_never_raises_anything_but_a_validation_error(data: object) -> None:
    with contextlib.suppress(InvalidSubscriptionError):
        parse_subscription(data, ALLOW)


@settings(max_examples=500)
@given(
    st.one_of(
        st.text(max_size=120),
        st.from_regex(r"\A(?i:https?)://[a-zA-Z0-9.:@\[\]%?#/-]{0,40}(/[ -~]{0,30})?\Z"),
        st.sampled_from(["https://fcm.googleapis.com", "http://localhost:8090"]).flatmap(
            lambda origin: st.text(max_size=40).map(lambda rest: origin + rest)
        ),
    )
)
def test_the_remembered_decision_equals_the_full_check(endpoint: str) -> None:
    allow = PushServiceAllowList.with_origins(["http://localhost:8090"])

    origin = allow.allowed_origin(endpoint)

    assert (origin is not None) == allow.allows(endpoint)
    if origin is not None:
        assert endpoint.lower().startswith(origin.lower())


def test_allowed_origin_is_the_vapid_audience() -> None:
    allow = PushServiceAllowList.with_origins(["http://localhost:8090"])

    assert allow.allowed_origin("https://fcm.googleapis.com:443/fcm/send/x") == (
        "https://fcm.googleapis.com"
    )
    assert allow.allowed_origin("https://Web.Push.Apple.com/x") == "https://web.push.apple.com"
    assert allow.allowed_origin("http://localhost:8090/notify/x") == "http://localhost:8090"
    assert allow.allowed_origin("https://evil.example/x") is None
