"""Accounts: passwords (argon2id), TOTP with recovery codes, password reset, sessions."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from kita import audit
from kita.errors import AuthenticationError, KitaError, TokenError, ValidationError
from kita.models.accounts import PasswordReset, RecoveryCode, ServerSession, User

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256
RECOVERY_CODE_COUNT = 10
TOTP_ISSUER = "kita"

# A fixed hash to verify against when the e-mail is unknown, so timing does not reveal accounts.
_DUMMY_PASSWORD = "not-a-real-password-" + "x" * 12


class SecondFactorError(KitaError):
    """The one-time code or recovery code was wrong or already used."""

    status = 401
    default_message = _l("The code is wrong or was already used. Please try again.")


def make_password_hasher(profile: str) -> PasswordHasher:
    """argon2-cffi's defaults (argon2id) in production; cheap parameters only for tests."""
    if profile == "test":
        return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    return PasswordHasher()


def normalise_email(email: str) -> str:
    return email.strip().lower()


def validate_email(email: str) -> str:
    """Return the normalised address or raise ``ValidationError`` for the field ``email``."""
    value = normalise_email(email)
    local, _, domain = value.partition("@")
    if (
        not local
        or "." not in domain
        or len(value) > 254
        or any(c.isspace() for c in value)
        or domain.startswith(".")
        or domain.endswith(".")
    ):
        raise ValidationError({"email": _l("Please enter a valid e-mail address.")})
    return value


def validate_password(password: str, *, email: str = "") -> None:
    """Length 10 to 256 and not the e-mail address itself."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError({"password": _l("The password must have at least 10 characters.")})
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValidationError({"password": _l("The password is too long.")})
    if email and password.strip().lower() == email.strip().lower():
        raise ValidationError({"password": _l("The password must not be your e-mail address.")})


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def authenticate(db: Session, hasher: PasswordHasher, *, email: str, password: str) -> User:
    """Return the active user with this e-mail and password, rehashing when parameters changed.

    Raises ``AuthenticationError`` without saying whether the account exists.
    """
    user = db.scalars(select(User).where(User.email == normalise_email(email))).first()
    if user is None or not user.is_active:
        # Spend the same time as a real verification.
        with contextlib.suppress(VerificationError):
            hasher.verify(hasher.hash(_DUMMY_PASSWORD), password or "x")
        raise AuthenticationError()
    try:
        hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError) as exc:
        raise AuthenticationError() from exc
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
        db.flush()
    return user


def end_sessions(db: Session, user_id: uuid.UUID) -> int:
    """Delete every server-side session of the user; their cookies stop working at once."""
    result = db.execute(delete(ServerSession).where(ServerSession.user_id == user_id))
    db.flush()
    return int(getattr(result, "rowcount", 0) or 0)


def change_password(
    db: Session,
    hasher: PasswordHasher,
    *,
    user: User,
    current_password: str,
    new_password: str,
    now: datetime,
) -> None:
    """Change the password after checking the current one; ends all of the user's sessions."""
    try:
        hasher.verify(user.password_hash, current_password)
    except (VerificationError, InvalidHashError) as exc:
        raise ValidationError({"current_password": _l("The current password is wrong.")}) from exc
    validate_password(new_password, email=user.email)
    user.password_hash = hasher.hash(new_password)
    user.password_changed_at = now
    end_sessions(db, user.id)
    audit.record(
        db, action="password.changed", actor_id=user.id, object_type="user", object_id=user.id
    )


def set_account_active(db: Session, *, actor_id: uuid.UUID, user: User, active: bool) -> None:
    """Disable (ending every session at once) or re-enable an account."""
    user.is_active = active
    if not active:
        end_sessions(db, user.id)
    audit.record(
        db,
        action="account.enabled" if active else "account.disabled",
        actor_id=actor_id,
        object_type="user",
        object_id=user.id,
    )


# --- password reset --------------------------------------------------------------------------


def request_password_reset(
    db: Session, *, email: str, now: datetime, valid_minutes: int
) -> tuple[User, str] | None:
    """Create a reset token for an active account; ``None`` when there is none (say nothing)."""
    user = db.scalars(select(User).where(User.email == normalise_email(email))).first()
    if user is None or not user.is_active:
        return None
    token = secrets.token_urlsafe(32)
    db.add(
        PasswordReset(
            user_id=user.id,
            token_hash=hash_token(token),
            expires_at=now + timedelta(minutes=valid_minutes),
        )
    )
    audit.record(
        db,
        action="password.reset_requested",
        actor_id=user.id,
        object_type="user",
        object_id=user.id,
        at=now,
    )
    return user, token


def find_password_reset(db: Session, *, token: str, now: datetime) -> PasswordReset:
    """Return the unused, unexpired reset for ``token`` or raise ``TokenError``."""
    if not token or len(token) > 128:
        raise TokenError()
    reset = db.scalars(
        select(PasswordReset).where(PasswordReset.token_hash == hash_token(token))
    ).first()
    if reset is None or reset.used_at is not None or reset.expires_at <= now:
        raise TokenError()
    return reset


def complete_password_reset(
    db: Session, hasher: PasswordHasher, *, token: str, new_password: str, now: datetime
) -> User:
    """Set a new password with a reset token; the token and every session end."""
    reset = find_password_reset(db, token=token, now=now)
    user = db.get(User, reset.user_id)
    if user is None or not user.is_active:
        raise TokenError()
    validate_password(new_password, email=user.email)
    # Mark used with a guarded UPDATE so two concurrent uses cannot both succeed.
    claimed = db.execute(
        update(PasswordReset)
        .where(PasswordReset.id == reset.id, PasswordReset.used_at.is_(None))
        .values(used_at=now)
    )
    if not getattr(claimed, "rowcount", 0):
        raise TokenError()
    user.password_hash = hasher.hash(new_password)
    user.password_changed_at = now
    end_sessions(db, user.id)
    audit.record(
        db, action="password.reset", actor_id=user.id, object_type="user", object_id=user.id, at=now
    )
    return user


# --- TOTP ------------------------------------------------------------------------------------


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=TOTP_ISSUER)


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step (±1 for clock drift) whose code equals ``code``."""
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    step = totp.timecode(now)
    for offset in (0, -1, 1):
        if hmac.compare_digest(totp.at(now, counter_offset=offset), code):
            return step + offset
    return None


@dataclass(frozen=True)
class Enrolment:
    recovery_codes: list[str]


def enable_totp(db: Session, *, user: User, secret: str, code: str, now: datetime) -> Enrolment:
    """Confirm enrolment with a first code; returns fresh recovery codes (shown once)."""
    step = _matching_step(secret, code, now)
    if step is None:
        raise ValidationError({"code": _l("The code is wrong. Check the time on your phone.")})
    user.totp_secret = secret
    user.totp_enabled_at = now
    user.totp_last_step = step
    codes = regenerate_recovery_codes(db, user=user)
    audit.record(
        db, action="totp.enabled", actor_id=user.id, object_type="user", object_id=user.id, at=now
    )
    return Enrolment(codes)


def regenerate_recovery_codes(db: Session, *, user: User) -> list[str]:
    db.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = secrets.token_hex(5).upper()
        code = f"{raw[:5]}-{raw[5:]}"
        codes.append(code)
        db.add(RecoveryCode(user_id=user.id, code_hash=hash_token(code)))
    db.flush()
    return codes


def verify_second_factor(db: Session, *, user: User, code: str, now: datetime) -> str:
    """Accept a TOTP code (never the same time step twice) or an unused recovery code.

    Returns ``"totp"`` or ``"recovery"``; raises ``SecondFactorError``.
    """
    if user.totp_secret is None:
        raise SecondFactorError()
    step = _matching_step(user.totp_secret, code, now)
    if step is not None:
        if user.totp_last_step is not None and step <= user.totp_last_step:
            raise SecondFactorError()
        user.totp_last_step = step
        db.flush()
        return "totp"
    normalised = code.strip().upper()
    if len(normalised) == 10 and "-" not in normalised:
        normalised = f"{normalised[:5]}-{normalised[5:]}"
    claimed = db.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == hash_token(normalised),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
    )
    if getattr(claimed, "rowcount", 0):
        audit.record(
            db,
            action="totp.recovery_code_used",
            actor_id=user.id,
            object_type="user",
            object_id=user.id,
            at=now,
        )
        return "recovery"
    raise SecondFactorError()


def set_locale(db: Session, *, user: User, locale: str) -> None:
    user.locale = locale
    db.flush()
