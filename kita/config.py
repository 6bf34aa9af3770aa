"""Typed, validated configuration built from ``KITA_*`` variables and the instance folder."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

#: Languages shipped with complete catalogs. German is the default.
SUPPORTED_LOCALES: tuple[str, ...] = ("de", "en", "tr", "ar", "bg", "ro", "pl", "uk", "ru", "fa")
RTL_LOCALES: frozenset[str] = frozenset({"ar", "fa"})
#: Values of KITA_TRANSLATION_PROVIDER.
TRANSLATION_PROVIDERS: tuple[str, ...] = ("none", "libretranslate", "deepl")


class ConfigError(Exception):
    """The configuration is unusable; the message says what to set or run."""


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _is_http_url(value: str) -> bool:
    scheme, _, rest = value.partition("://")
    return scheme in {"http", "https"} and bool(rest.strip("/"))


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from exc


@dataclass(frozen=True)
class KitaConfig:
    """Everything the app needs to know at start-up; nothing else reads the environment."""

    instance_path: Path
    secret_key: str
    database_url: str
    default_locale: str = "de"
    base_url: str = "http://127.0.0.1:5000"
    # Cookies are Secure and __Host- prefixed unless explicitly switched off for plain-HTTP
    # development tools (the benchmark client, for instance).
    cookie_secure: bool = True
    session_idle_minutes: int = 30
    session_absolute_hours: int = 12
    # "default" uses argon2-cffi's defaults; "test" is cheap and only accepted when testing.
    password_hashing: str = "default"  # noqa: S105 (a profile name, not a password)
    invitation_days: int = 14
    reset_token_minutes: int = 60
    # NRW's KiBiz (§ 18, development documentation): the documentation exists only while the
    # child attends the Kita; when the child leaves it is handed to the parents and then
    # deleted. This is the deadline after the leaving date by which `kita retention run`
    # shreds it even if no hand-over was recorded (a recorded hand-over shreds it the day
    # after the leaving date). 0 means: the day after leaving in any case.
    retention_days_after_leave: int = 30
    # Login throttling: failures allowed per (account, client) pair and per client in the window.
    throttle_pair_limit: int = 5
    throttle_client_limit: int = 50
    throttle_window_seconds: int = 900
    # Shared staff tablets lock themselves after this many minutes without use (a leader can
    # set another value per tablet when pairing it).
    tablet_lock_minutes: int = 5
    trusted_proxies: int = 0
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_from: str = "kita@localhost"
    smtp_starttls: bool = False
    # The local hour (Europe/Berlin) at which parents without push get the day's e-mail digest.
    digest_hour: int = 17
    # Machine translation of free texts: "none" (originals are shown with a notice),
    # "libretranslate" (a LibreTranslate-compatible server, the self-hosted choice) or "deepl".
    translation_provider: str = "none"
    libretranslate_url: str = ""
    libretranslate_api_key: str = ""
    deepl_api_key: str = ""
    # Empty: chosen from the key (":fx" keys belong to the free API).
    deepl_url: str = ""
    # Web Push: the VAPID contact (mailto: or https:; default mailto:<smtp_from>), exact push
    # service origins allowed besides the known ones (a self-hosted service, the test
    # emulator), requests in flight, and how long a worker's claim on a delivery lasts.
    vapid_subject: str = ""
    push_allowed_origins: tuple[str, ...] = ()
    push_concurrency: int = 64
    push_lease_seconds: int = 120
    # Development only: a base64url master key instead of files in instance/keys/.
    master_key: str | None = None
    testing: bool = False
    check_migrations: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.default_locale not in SUPPORTED_LOCALES:
            raise ConfigError(
                f"KITA_DEFAULT_LOCALE={self.default_locale!r} is not shipped; "
                f"choose one of {', '.join(SUPPORTED_LOCALES)}"
            )
        if len(self.secret_key) < 32:
            raise ConfigError("The secret key must be at least 32 characters; run `kita init`.")
        if self.password_hashing not in {"default", "test"}:
            raise ConfigError("KITA_PASSWORD_HASHING must be 'default' or 'test'")
        if self.password_hashing == "test" and not self.testing:  # noqa: S105
            raise ConfigError("Cheap password hashing is only allowed when testing")
        if self.session_idle_minutes <= 0 or self.session_absolute_hours <= 0:
            raise ConfigError("Session timeouts must be positive")
        if not 0 <= self.digest_hour <= 23:
            raise ConfigError("KITA_DIGEST_HOUR must be an hour between 0 and 23")
        if not 0 <= self.retention_days_after_leave <= 3660:
            raise ConfigError("KITA_RETENTION_DAYS_AFTER_LEAVE must be between 0 and 3660 days")
        if not 1 <= self.tablet_lock_minutes <= 240:
            raise ConfigError("KITA_TABLET_LOCK_MINUTES must be between 1 and 240")
        self._check_translation()
        self._check_push()

    def _check_translation(self) -> None:
        if self.translation_provider not in TRANSLATION_PROVIDERS:
            raise ConfigError(
                f"KITA_TRANSLATION_PROVIDER={self.translation_provider!r} is unknown; "
                f"choose one of {', '.join(TRANSLATION_PROVIDERS)}"
            )
        if self.translation_provider == "libretranslate" and not _is_http_url(
            self.libretranslate_url
        ):
            raise ConfigError(
                "KITA_TRANSLATION_PROVIDER=libretranslate needs KITA_LIBRETRANSLATE_URL "
                "(for example http://127.0.0.1:5000)"
            )
        if self.translation_provider == "deepl" and not self.deepl_api_key:
            raise ConfigError("KITA_TRANSLATION_PROVIDER=deepl needs KITA_DEEPL_API_KEY")
        if self.deepl_url and not _is_http_url(self.deepl_url):
            raise ConfigError("KITA_DEEPL_URL must be an http(s) URL")

    def _check_push(self) -> None:
        from kita.push.endpoints import PushServiceAllowList
        from kita.push.vapid import VapidError, check_subject

        try:
            check_subject(self.push_subject)
        except VapidError as exc:
            raise ConfigError(
                "KITA_VAPID_SUBJECT must be a mailto: address or an https: URL"
            ) from exc
        try:
            PushServiceAllowList.with_origins(self.push_allowed_origins)
        except ValueError as exc:
            raise ConfigError(
                "KITA_PUSH_ALLOWED_ORIGINS must be comma-separated origins "
                "like https://push.example.org"
            ) from exc
        if not 1 <= self.push_concurrency <= 1024:
            raise ConfigError("KITA_PUSH_CONCURRENCY must be between 1 and 1024")
        if not 1 <= self.push_lease_seconds <= 3600:
            raise ConfigError("KITA_PUSH_LEASE_SECONDS must be between 1 and 3600")

    @property
    def keys_dir(self) -> Path:
        """Master key files (``kek-<version>.key``, mode 0600), never inside a database."""
        return self.instance_path / "keys"

    @property
    def keystore_path(self) -> Path:
        """The separate keystore database holding wrapped data keys."""
        return self.instance_path / "keystore.sqlite3"

    @property
    def blob_dir(self) -> Path:
        """Encrypted photos and attachments, stored by content id."""
        return self.instance_path / "blobs"

    @property
    def push_subject(self) -> str:
        """The VAPID contact push services may write to about our sends."""
        return self.vapid_subject or f"mailto:{self.smtp_from}"

    @property
    def vapid_key_path(self) -> Path:
        """The Web Push signing key (made by ``kita init``, never overwritten)."""
        from kita.push.vapid import vapid_key_path

        return vapid_key_path(self.instance_path)

    @property
    def smtp_configured(self) -> bool:
        return bool(self.smtp_host)

    @property
    def session_cookie_name(self) -> str:
        # The __Host- prefix is only valid together with Secure, Path=/ and no Domain.
        return "__Host-kita_session" if self.cookie_secure else "kita_session"

    def with_overrides(self, **changes: Any) -> KitaConfig:
        return replace(self, **changes)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, instance_path: Path | None = None
    ) -> KitaConfig:
        """Build the configuration from ``KITA_*`` variables and files in the instance folder."""
        env = os.environ if env is None else env
        instance = Path(env.get("KITA_INSTANCE_PATH") or instance_path or Path.cwd() / "instance")
        instance = instance.resolve()
        secret = env.get("KITA_SECRET_KEY") or _read_secret_file(instance / "secret_key")
        if not secret:
            raise ConfigError(
                f"No secret key: run `kita init` (writes {instance / 'secret_key'}) "
                "or set KITA_SECRET_KEY"
            )
        database_url = env.get("KITA_DATABASE_URL") or f"sqlite:///{instance / 'kita.sqlite3'}"
        return cls(
            instance_path=instance,
            secret_key=secret,
            database_url=database_url,
            default_locale=env.get("KITA_DEFAULT_LOCALE", "de"),
            base_url=env.get("KITA_BASE_URL", "http://127.0.0.1:5000").rstrip("/"),
            cookie_secure=_flag(env.get("KITA_COOKIE_SECURE"), True),
            session_idle_minutes=_int(env, "KITA_SESSION_IDLE_MINUTES", 30),
            session_absolute_hours=_int(env, "KITA_SESSION_ABSOLUTE_HOURS", 12),
            password_hashing=env.get("KITA_PASSWORD_HASHING", "default"),
            invitation_days=_int(env, "KITA_INVITATION_DAYS", 14),
            reset_token_minutes=_int(env, "KITA_RESET_TOKEN_MINUTES", 60),
            retention_days_after_leave=_int(env, "KITA_RETENTION_DAYS_AFTER_LEAVE", 30),
            throttle_pair_limit=_int(env, "KITA_THROTTLE_PAIR_LIMIT", 5),
            throttle_client_limit=_int(env, "KITA_THROTTLE_CLIENT_LIMIT", 50),
            throttle_window_seconds=_int(env, "KITA_THROTTLE_WINDOW_SECONDS", 900),
            tablet_lock_minutes=_int(env, "KITA_TABLET_LOCK_MINUTES", 5),
            trusted_proxies=_int(env, "KITA_TRUSTED_PROXIES", 0),
            smtp_host=env.get("KITA_SMTP_HOST", ""),
            smtp_port=_int(env, "KITA_SMTP_PORT", 25),
            smtp_user=env.get("KITA_SMTP_USER", ""),
            smtp_password=env.get("KITA_SMTP_PASSWORD", ""),
            smtp_from=env.get("KITA_SMTP_FROM", "kita@localhost"),
            smtp_starttls=_flag(env.get("KITA_SMTP_STARTTLS"), False),
            digest_hour=_int(env, "KITA_DIGEST_HOUR", 17),
            translation_provider=env.get("KITA_TRANSLATION_PROVIDER", "none").strip().lower()
            or "none",
            libretranslate_url=env.get("KITA_LIBRETRANSLATE_URL", "").strip().rstrip("/"),
            libretranslate_api_key=env.get("KITA_LIBRETRANSLATE_API_KEY", ""),
            deepl_api_key=env.get("KITA_DEEPL_API_KEY", ""),
            deepl_url=env.get("KITA_DEEPL_URL", "").strip().rstrip("/"),
            vapid_subject=env.get("KITA_VAPID_SUBJECT", ""),
            push_allowed_origins=tuple(
                origin.strip().rstrip("/")
                for origin in env.get("KITA_PUSH_ALLOWED_ORIGINS", "").split(",")
                if origin.strip()
            ),
            push_concurrency=_int(env, "KITA_PUSH_CONCURRENCY", 64),
            push_lease_seconds=_int(env, "KITA_PUSH_LEASE_SECONDS", 120),
            master_key=env.get("KITA_MASTER_KEY") or None,
            testing=_flag(env.get("KITA_TESTING"), False),
        )


def _read_secret_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""


def write_secret_key(instance: Path) -> bool:
    """Create ``instance/secret_key`` (mode 0600) unless it exists. Returns True if created."""
    instance.mkdir(parents=True, exist_ok=True)
    path = instance / "secret_key"
    if path.exists():
        return False
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secrets.token_urlsafe(48))
    return True
