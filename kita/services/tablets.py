"""Shared staff tablets: pairing by a leader, personal PINs, unlocking, locking, and the key that
encrypts a staff member's offline outbox on one tablet.

A paired tablet holds a random device token (in an HttpOnly cookie); only its SHA-256 is stored.
Staff unlock it with a personal PIN (argon2, like passwords). Five wrong PINs block that PIN
until its owner logs in normally with password and second factor; the count lives in the
database, so it holds across processes, and it cannot lock anyone out of their account (only of
the PIN shortcut). Revoking a tablet ends its sessions and shreds its data key, which makes the
outbox keys stored for it, and so every outbox the device still holds, unreadable.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kita import audit
from kita.access import (
    TABLET_ROLES,
    Actor,
    documentation_groups,
    load_actor,
    may_use_tablet,
    tablet_staff,
)
from kita.crypto import Context, KeyKind, KeyService, decrypt, encrypt
from kita.errors import KitaError, NotFoundError, ValidationError
from kita.models.accounts import Membership, ServerSession, User
from kita.models.documentation import Consent, ConsentPurpose
from kita.models.messaging import StaffPin, Tablet, TabletOutboxKey
from kita.models.organisation import Child, Group, Kita

TOKEN_BYTES = 32
OUTBOX_KEY_BYTES = 32
PIN_MIN, PIN_MAX = 4, 8
#: Wrong PINs in a row after which the PIN is blocked until a normal login.
PIN_ATTEMPTS = 5
NAME_MAX = 120
LOCK_MINUTES_MIN, LOCK_MINUTES_MAX = 1, 240
CRYPTO_PURPOSE = "tablet_outbox"

#: PINs people pick first (besides repeated digits, runs and years, which are checked by rule).
COMMON_PINS = frozenset(
    {"1004", "2580", "0852", "1122", "1133", "1313", "6969", "4711", "0815", "1998", "1212"}
)


class WrongPinError(KitaError):
    """The PIN did not match; ``attempts_left`` say how many tries remain before the block."""

    status = 401
    default_message = _l("The PIN is wrong.")

    def __init__(self, attempts_left: int) -> None:
        super().__init__(
            _l(
                "The PIN is wrong. %(count)d attempts left before the PIN is blocked.",
                count=attempts_left,
            )
        )
        self.attempts_left = attempts_left


class PinBlockedError(KitaError):
    """Too many wrong PINs: the PIN stays blocked until its owner logs in with the password."""

    status = 423
    default_message = _l(
        "This PIN is blocked after too many wrong attempts. Log in once with your e-mail "
        "address, password and code (on any device) to unblock it."
    )


@dataclass(frozen=True)
class PairedTablet:
    tablet: Tablet
    #: The device token for the tablet's cookie; shown to nobody and stored only hashed.
    token: str


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


# --- pairing ---------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    value = " ".join(name.split())
    if not value:
        raise ValidationError({"name": _l("Please give the tablet a name.")})
    if len(value) > NAME_MAX or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise ValidationError(
            {"name": _l("At most %(count)d characters are allowed.", count=NAME_MAX)}
        )
    return value


def pair_tablet(
    db: Session, *, actor: Actor, kita: Kita, name: str, lock_minutes: int | None, now: datetime
) -> PairedTablet:
    """Register the device the leader is using as a shared tablet of ``kita`` (the caller has
    checked that the actor manages it). Returns the device token for its cookie."""
    clean = _check_name(name)
    if lock_minutes is not None and not LOCK_MINUTES_MIN <= lock_minutes <= LOCK_MINUTES_MAX:
        raise ValidationError(
            {"lock_minutes": _l("Please enter a number of minutes between 1 and 240.")}
        )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    tablet = Tablet(
        id=uuid.uuid4(),
        kita_id=kita.id,
        name=clean,
        token_hash=hash_token(token),
        paired_by_id=actor.id,
        created_at=now,
        lock_minutes=lock_minutes,
    )
    db.add(tablet)
    db.flush()
    audit.record(
        db,
        action="tablet.paired",
        actor_id=actor.id,
        object_type="tablet",
        object_id=tablet.id,
        kita_id=kita.id,
        at=now,
    )
    return PairedTablet(tablet, token)


def list_tablets(db: Session, kita: Kita) -> list[Tablet]:
    """The Kita's tablets: paired ones first, newest first."""
    rows = db.scalars(
        select(Tablet).where(Tablet.kita_id == kita.id).order_by(Tablet.created_at.desc())
    ).all()
    return sorted(rows, key=lambda tablet: tablet.revoked_at is not None)


def find_tablet(db: Session, token: str | None) -> Tablet | None:
    """The paired (not revoked) tablet holding this device token, or None."""
    if not token or len(token) > 100:
        return None
    tablet = db.scalars(select(Tablet).where(Tablet.token_hash == hash_token(token))).first()
    if tablet is None or tablet.revoked_at is not None:
        return None
    return tablet


def token_matches(tablet: Tablet, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(tablet.token_hash, hash_token(token or ""))


def end_tablet_sessions(db: Session, tablet: Tablet) -> int:
    """Delete every server session opened on this tablet; returns how many."""
    members = select(Membership.user_id).where(Membership.kita_id == tablet.kita_id)
    sessions = db.execute(
        select(ServerSession.id, ServerSession.data).where(ServerSession.user_id.in_(members))
    ).all()
    ended = [sid for sid, data in sessions if (data or {}).get("tablet_id") == str(tablet.id)]
    if ended:
        db.execute(delete(ServerSession).where(ServerSession.id.in_(ended)))
        db.flush()
    return len(ended)


def revoke_tablet(
    db: Session, *, actor: Actor, tablet: Tablet, keys: KeyService, now: datetime
) -> int:
    """Unpair the tablet: its sessions end at once, its cookie stops working, and its data key
    is shredded, so outboxes left on the device can never be decrypted. Returns the number of
    sessions ended. Revoking twice changes nothing."""
    if tablet.revoked_at is not None:
        return 0
    tablet.revoked_at = now
    ended = end_tablet_sessions(db, tablet)
    db.execute(delete(TabletOutboxKey).where(TabletOutboxKey.tablet_id == tablet.id))
    db.flush()
    audit.record(
        db,
        action="tablet.revoked",
        actor_id=actor.id,
        object_type="tablet",
        object_id=tablet.id,
        kita_id=tablet.kita_id,
        detail=f"sessions={ended}",
        at=now,
    )
    keys.shred(tablet.id)
    return ended


def lock_minutes(tablet: Tablet, default: int) -> int:
    return tablet.lock_minutes or default


# --- PINs ------------------------------------------------------------------------------------


def _is_run(pin: str) -> bool:
    steps = {(int(b) - int(a)) % 10 for a, b in itertools.pairwise(pin)}
    return steps in ({1}, {9})


def _is_repetition(pin: str) -> bool:
    return any(
        len(pin) % size == 0 and pin == pin[:size] * (len(pin) // size)
        for size in range(1, len(pin) // 2 + 1)
    )


def check_pin(pin: str) -> str:
    """Return the PIN if it has 4 to 8 digits and is not easy to guess; else ``ValidationError``
    for the field ``pin``."""
    if not (pin.isascii() and pin.isdigit() and PIN_MIN <= len(pin) <= PIN_MAX):
        raise ValidationError({"pin": _l("The PIN must have 4 to 8 digits.")})
    year = len(pin) == 4 and pin[:2] in {"19", "20"}
    if _is_repetition(pin) or _is_run(pin) or year or pin in COMMON_PINS:
        raise ValidationError(
            {
                "pin": _l(
                    "This PIN is too easy to guess (repeated digits, a run like 1234, a year). "
                    "Please choose another one."
                )
            }
        )
    return pin


def set_pin(db: Session, hasher: PasswordHasher, *, user: User, pin: str, now: datetime) -> None:
    """Set or change the user's PIN (which also lifts a block)."""
    check_pin(pin)
    record = db.get(StaffPin, user.id)
    if record is None:
        record = StaffPin(user_id=user.id, pin_hash="", failed_attempts=0)
        db.add(record)
    record.pin_hash = hasher.hash(pin)
    record.failed_attempts = 0
    record.updated_at = now
    db.flush()
    audit.record(
        db, action="tablet.pin_set", actor_id=user.id, object_type="user", object_id=user.id
    )


def remove_pin(db: Session, *, user: User) -> None:
    """Delete the user's PIN: she no longer appears on any tablet."""
    db.execute(delete(StaffPin).where(StaffPin.user_id == user.id))
    db.flush()
    audit.record(
        db, action="tablet.pin_removed", actor_id=user.id, object_type="user", object_id=user.id
    )


def pin_status(db: Session, user_id: uuid.UUID) -> str:
    """``none``, ``set`` or ``blocked``."""
    record = db.get(StaffPin, user_id)
    if record is None:
        return "none"
    return "blocked" if record.failed_attempts >= PIN_ATTEMPTS else "set"


def clear_pin_block(db: Session, user_id: uuid.UUID) -> None:
    """After a normal login (password and second factor) the PIN works again."""
    record = db.get(StaffPin, user_id)
    if record is not None and record.failed_attempts:
        record.failed_attempts = 0
        db.flush()


def tablet_user(db: Session, tablet: Tablet, user_id: uuid.UUID) -> User:
    """A person shown on the tablet's tiles; else 404 (other Kitas' staff, parents, no PIN)."""
    user = db.scalars(tablet_staff(tablet).where(User.id == user_id)).first()
    if user is None:
        raise NotFoundError()
    return user


def session_lock_reason(
    db: Session,
    *,
    tablet_id: uuid.UUID,
    device_token: str | None,
    raw_user_id: str | None,
    last_seen: datetime | None,
    now: datetime,
    default_lock_minutes: int,
    slack: timedelta,
) -> str | None:
    """Why a tablet session must end now (``revoked``, ``device``, ``membership``, ``idle``),
    or None while it may go on."""
    tablet = db.get(Tablet, tablet_id)
    if tablet is None or tablet.revoked_at is not None:
        return "revoked"
    if not token_matches(tablet, device_token):
        return "device"
    if not still_tablet_staff(db, tablet, raw_user_id):
        return "membership"
    idle = timedelta(minutes=lock_minutes(tablet, default_lock_minutes)) + slack
    if last_seen is not None and last_seen + idle <= now:
        return "idle"
    return None


def still_tablet_staff(db: Session, tablet: Tablet, raw_user_id: str | None) -> bool:
    """The person of a tablet session is still an active leader or educator of its Kita (a
    membership removed or an account disabled meanwhile ends the session)."""
    try:
        user_id = uuid.UUID(str(raw_user_id))
    except ValueError:
        return False
    found = db.scalar(
        select(Membership.id)
        .join(User, User.id == Membership.user_id)
        .where(
            Membership.user_id == user_id,
            Membership.kita_id == tablet.kita_id,
            Membership.role.in_(TABLET_ROLES),
            User.is_active.is_(True),
        )
        .limit(1)
    )
    return found is not None


def unlock(
    db: Session,
    hasher: PasswordHasher,
    *,
    tablet: Tablet,
    user_id: uuid.UUID,
    pin: str,
    now: datetime,
) -> User:
    """Check the PIN of a person allowed on this tablet. Raises ``NotFoundError`` for people not
    on the tiles, ``PinBlockedError`` after five wrong PINs, ``WrongPinError`` otherwise. The
    caller commits the failure count even though the request fails."""
    user = tablet_user(db, tablet, user_id)
    if not may_use_tablet(load_actor(db, user), tablet):
        raise NotFoundError()
    record = db.get(StaffPin, user.id, with_for_update=True, populate_existing=True)
    if record is None:
        raise NotFoundError()
    if record.failed_attempts >= PIN_ATTEMPTS:
        raise PinBlockedError()
    try:
        hasher.verify(record.pin_hash, pin)
    except (VerificationError, InvalidHashError) as exc:
        record.failed_attempts += 1
        db.flush()
        blocked = record.failed_attempts >= PIN_ATTEMPTS
        audit.record(
            db,
            action="tablet.pin_blocked" if blocked else "tablet.unlock_failed",
            actor_id=user.id,
            object_type="tablet",
            object_id=tablet.id,
            kita_id=tablet.kita_id,
            at=now,
        )
        if blocked:
            raise PinBlockedError() from exc
        raise WrongPinError(PIN_ATTEMPTS - record.failed_attempts) from exc
    if hasher.check_needs_rehash(record.pin_hash):
        record.pin_hash = hasher.hash(pin)
    record.failed_attempts = 0
    tablet.last_seen_at = now
    db.flush()
    audit.record(
        db,
        action="tablet.unlocked",
        actor_id=user.id,
        object_type="tablet",
        object_id=tablet.id,
        kita_id=tablet.kita_id,
        at=now,
    )
    return user


def record_lock(
    db: Session, *, tablet_id: uuid.UUID, user_id: uuid.UUID | None, reason: str
) -> None:
    """An audit event for a tablet session that ended (``reason``: manual, idle, revoked,
    device)."""
    tablet = db.get(Tablet, tablet_id)
    audit.record(
        db,
        action="tablet.locked",
        actor_id=user_id,
        object_type="tablet",
        object_id=tablet_id,
        kita_id=tablet.kita_id if tablet is not None else None,
        detail=f"reason={reason}",
    )


# --- the outbox key --------------------------------------------------------------------------


def _outbox_context(row: TabletOutboxKey, tablet: Tablet, key_version: int) -> Context:
    return Context(
        purpose=CRYPTO_PURPOSE,
        table="tablet_outbox_keys",
        column="key_ct",
        row_id=row.id,
        subject_id=tablet.id,
        kita_id=tablet.kita_id,
        key_version=key_version,
    )


def outbox_key(db: Session, keys: KeyService, *, tablet: Tablet, user: User) -> bytes:
    """The random 256-bit key that encrypts this user's outbox on this tablet, made on first
    use. It is stored encrypted with the tablet's data key and handed to the page only while a
    tablet session is unlocked; the page keeps it in memory as a non-extractable key."""
    if tablet.revoked_at is not None:
        raise NotFoundError()
    row = db.scalars(
        select(TabletOutboxKey).where(
            TabletOutboxKey.tablet_id == tablet.id, TabletOutboxKey.user_id == user.id
        )
    ).first()
    if row is not None:
        key = keys.data_key(tablet.id, KeyKind.GENERAL, create=False)
        return decrypt(key, row.key_ct, _outbox_context(row, tablet, row.key_version))
    data_key = keys.data_key(tablet.id, KeyKind.GENERAL)
    secret = secrets.token_bytes(OUTBOX_KEY_BYTES)
    row = TabletOutboxKey(id=uuid.uuid4(), tablet_id=tablet.id, user_id=user.id, key_version=0)
    row.key_version = data_key.version
    row.key_ct = encrypt(data_key, secret, _outbox_context(row, tablet, data_key.version))
    try:
        with db.begin_nested():
            db.add(row)
            db.flush()
    except IntegrityError:
        # A parallel request of the same person made the key first: that one is the key.
        return outbox_key(db, keys, tablet=tablet, user=user)
    return secret


# --- today's view ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ChildToday:
    child: Child
    #: The family consented to documentation / to photos in it.
    documentation_open: bool
    photos_open: bool


@dataclass(frozen=True)
class GroupToday:
    group: Group
    children: list[ChildToday]


def today_view(db: Session, actor: Actor, *, today: date) -> list[GroupToday]:
    """The groups whose documentation the actor writes, each with the children attending
    today and whether their documentation (and photos in it) is open."""
    groups = db.scalars(documentation_groups(actor)).all()
    if not groups:
        return []
    children = db.scalars(
        select(Child)
        .where(
            Child.group_id.in_([group.id for group in groups]),
            or_(Child.entry_date.is_(None), Child.entry_date <= today),
            or_(Child.leave_date.is_(None), Child.leave_date >= today),
        )
        .order_by(Child.first_name, Child.last_name, Child.id)
    ).all()
    consents: dict[uuid.UUID, set[ConsentPurpose]] = {}
    if children:
        for child_id, purpose in db.execute(
            select(Consent.child_id, Consent.purpose).where(
                Consent.child_id.in_([child.id for child in children]),
                Consent.withdrawn_at.is_(None),
            )
        ):
            consents.setdefault(child_id, set()).add(ConsentPurpose(purpose))
    result = []
    for group in groups:
        rows = []
        for child in children:
            if child.group_id != group.id:
                continue
            held = consents.get(child.id, set())
            documentation = ConsentPurpose.DOCUMENTATION in held
            photos = documentation and ConsentPurpose.PHOTOS_IN_DOCUMENTATION in held
            rows.append(ChildToday(child, documentation, photos))
        result.append(GroupToday(group, rows))
    return result
