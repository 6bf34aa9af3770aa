"""Browser push subscriptions: parse and check the JSON of ``PushSubscription.toJSON()``.

Endpoints come from browsers, so they are an SSRF risk: the server would POST to whatever URL a
client hands it. Only HTTPS endpoints on port 443 of the known push services are accepted, never
IP literals, user info or other ports. Tests (or an operator with a self-hosted push service)
add exact origins explicitly.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urlsplit

from flask_babel import lazy_gettext as _l

from kita.errors import ValidationError
from kita.push.ece import AUTH_BYTES, KEY_BYTES, EncryptionError, load_user_agent_key
from kita.push.vapid import b64url

#: Hosts of the push services of Chrome/Android (FCM), Firefox (Mozilla autopush), Safari
#: (Apple) and Edge (Windows Notification Service). ``*.`` allows any subdomain.
DEFAULT_PUSH_SERVICES: tuple[str, ...] = (
    "fcm.googleapis.com",
    "updates.push.services.mozilla.com",
    "*.push.services.mozilla.com",
    "*.push.apple.com",
    "*.notify.windows.com",
)
MAX_ENDPOINT_LENGTH = 2048
MAX_SUBSCRIPTION_JSON_BYTES = 4096
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Printable ASCII without space and backslash (browsers read "\" as "/" and some parsers don't).
_URL_CHARS = re.compile(r"^[\x21-\x5b\x5d-\x7e]+\Z")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_PATTERN = re.compile(r"^(\*\.)?([a-z0-9-]{1,63}\.)+[a-z0-9-]{1,63}\Z")
_B64URL = re.compile(r"^[A-Za-z0-9_-]*={0,2}\Z")
# scheme, authority and path of an endpoint, split as urlsplit splits a URL without "#".
_ENDPOINT = re.compile(r"^(https?)://([^/?]*)(/.+)\Z", re.DOTALL | re.IGNORECASE)

INVALID_SUBSCRIPTION = _l("This browser sent a push subscription that cannot be used.")
ENDPOINT_NOT_ALLOWED = _l(
    "Notifications through this browser's push service are not supported. "
    "Please use a current version of Chrome, Firefox, Safari or Edge."
)


class InvalidSubscriptionError(ValidationError):
    """The push subscription JSON is malformed, or its endpoint is not an allowed push service."""

    def __init__(self, field_name: str, message: object = INVALID_SUBSCRIPTION) -> None:
        super().__init__({field_name: message}, message)
        self.field_name = field_name


class EndpointNotAllowedError(InvalidSubscriptionError):
    """The endpoint is not on an allowed push service (or not HTTPS, or an IP literal, ...)."""

    def __init__(self) -> None:
        super().__init__("endpoint", ENDPOINT_NOT_ALLOWED)


def _origin_key(scheme: str, host: str, port: int | None) -> tuple[str, str, int]:
    return scheme, host, port if port is not None else _DEFAULT_PORTS[scheme]


def _split(url: str) -> tuple[SplitResult, str] | None:
    """``urlsplit`` of a URL made only of plain printable ASCII, and its host; or None."""
    if not isinstance(url, str) or not 0 < len(url) <= MAX_ENDPOINT_LENGTH:
        return None
    if not _URL_CHARS.match(url) or "#" in url:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number in range)
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or "@" in parts.netloc or not parts.hostname:
        return None
    return parts, parts.hostname


@dataclass(frozen=True)
class PushServiceAllowList:
    """Which endpoints the server may POST to.

    ``hosts`` are HTTPS hosts on port 443 (``*.`` for any subdomain); ``origins`` are exact
    ``scheme://host:port`` origins added on purpose (the push emulator in tests).
    """

    hosts: tuple[str, ...] = DEFAULT_PUSH_SERVICES
    origins: tuple[str, ...] = ()
    _origin_keys: frozenset[tuple[str, str, int]] = field(init=False, repr=False)
    # (scheme, authority) → VAPID audience, or None when not allowed; see ``allowed_origin``.
    _decisions: dict[tuple[str, str], str | None] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        for pattern in self.hosts:
            if not _PATTERN.match(pattern):
                raise ValueError(f"not a host name or *.domain pattern: {pattern!r}")
        keys = set()
        for origin in self.origins:
            split = _split(origin)
            if split is None or split[0].path not in ("", "/") or split[0].query:
                raise ValueError(f"not an origin (scheme://host[:port]): {origin!r}")
            parts, host = split
            keys.add(_origin_key(parts.scheme, host, parts.port))
        object.__setattr__(self, "_origin_keys", frozenset(keys))

    @classmethod
    def with_origins(cls, origins: Iterable[str]) -> PushServiceAllowList:
        """The default push services plus explicitly configured origins."""
        return cls(origins=tuple(origins))

    def _host_allowed(self, host: str) -> bool:
        labels = host.split(".")
        if len(host) > 253 or len(labels) < 2 or not all(map(_LABEL.match, labels)):
            return False
        for pattern in self.hosts:
            if pattern.startswith("*."):
                if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                    return True
            elif host == pattern:
                return True
        return False

    def allows(self, endpoint: str) -> bool:
        """Whether a POST to ``endpoint`` is allowed; never raises."""
        split = _split(endpoint)
        if split is None or not split[0].path.startswith("/") or len(split[0].path) < 2:
            return False
        parts, host = split
        port = parts.port
        if _origin_key(parts.scheme, host, port) in self._origin_keys:
            return True
        if parts.scheme != "https" or port not in (None, 443) or "[" in parts.netloc:
            return False
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return self._host_allowed(host)
        return False

    def allowed_origin(self, endpoint: str) -> str | None:
        """The push service origin of ``endpoint`` (the VAPID audience) if a POST to it is
        allowed, else None. Same answer as :meth:`allows`, but the decision that depends on
        scheme and authority alone is remembered, since a fan-out sends to few services."""
        if len(endpoint) > MAX_ENDPOINT_LENGTH or not _URL_CHARS.match(endpoint):
            return None
        match = _ENDPOINT.match(endpoint)
        if match is None or "#" in endpoint:
            return None
        key = (match.group(1).lower(), match.group(2))
        if key not in self._decisions:
            if len(self._decisions) > 1000:  # never grows without bound
                self._decisions.clear()
            self._decisions[key] = self._origin(f"{key[0]}://{key[1]}/x")
        return self._decisions[key]

    def _origin(self, endpoint: str) -> str | None:
        split = _split(endpoint)
        if split is None or not self.allows(endpoint):
            return None
        parts, host = split
        port = parts.port
        default = _DEFAULT_PORTS[parts.scheme]
        return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")

    def check(self, endpoint: str) -> str:
        """Return ``endpoint`` unchanged, or raise :class:`EndpointNotAllowedError`."""
        if not self.allows(endpoint):
            raise EndpointNotAllowedError()
        return endpoint


def decode_b64url(value: str) -> bytes:
    """Strict base64url (padding optional, canonical only); raises ValueError otherwise."""
    if not _B64URL.match(value):
        raise ValueError("not base64url")
    data = value.rstrip("=")
    if len(data) % 4 == 1:
        raise ValueError("not base64url")
    try:
        raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None
    # Refuse encodings with stray low bits, so one key has exactly one spelling (duplicates).
    if b64url(raw) != data:
        raise ValueError("not canonical base64url")
    return raw


@dataclass(frozen=True)
class Subscription:
    """One browser's push subscription: where to POST and the keys to encrypt for."""

    endpoint: str
    p256dh: bytes = field(repr=False)
    auth: bytes = field(repr=False)

    def to_json(self) -> dict[str, object]:
        """The ``PushSubscription.toJSON()`` shape, with canonical base64url keys."""
        return {
            "endpoint": self.endpoint,
            "keys": {"p256dh": b64url(self.p256dh), "auth": b64url(self.auth)},
        }


def _key(keys: Mapping[object, object], name: str, size: int) -> bytes:
    value = keys.get(name)
    if not isinstance(value, str) or len(value) > 4 * size:
        raise InvalidSubscriptionError(f"keys.{name}")
    try:
        raw = decode_b64url(value)
    except ValueError:
        raise InvalidSubscriptionError(f"keys.{name}") from None
    if len(raw) != size:
        raise InvalidSubscriptionError(f"keys.{name}")
    return raw


def parse_subscription(data: object, allow_list: PushServiceAllowList) -> Subscription:
    """Check a subscription (a JSON text, bytes, or an already parsed object) and return it.

    Raises :class:`InvalidSubscriptionError` (a ``ValidationError``) for anything unusable,
    and its subclass :class:`EndpointNotAllowedError` for an endpoint outside the allow-list.
    Unknown members (``expirationTime``) are ignored.
    """
    if isinstance(data, bytes | str):
        if len(data) > MAX_SUBSCRIPTION_JSON_BYTES:
            raise InvalidSubscriptionError("subscription")
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):
            raise InvalidSubscriptionError("subscription") from None
    if not isinstance(data, Mapping):
        raise InvalidSubscriptionError("subscription")
    endpoint = data.get("endpoint")
    if not isinstance(endpoint, str) or not _split(endpoint):
        raise InvalidSubscriptionError("endpoint")
    allow_list.check(endpoint)
    keys = data.get("keys")
    if not isinstance(keys, Mapping):
        raise InvalidSubscriptionError("keys")
    p256dh = _key(keys, "p256dh", KEY_BYTES)
    auth = _key(keys, "auth", AUTH_BYTES)
    try:
        load_user_agent_key(p256dh)
    except EncryptionError:
        raise InvalidSubscriptionError("keys.p256dh") from None
    return Subscription(endpoint=endpoint, p256dh=p256dh, auth=auth)
