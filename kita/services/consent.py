"""Consents per child and purpose (GDPR Art. 6/7, KiBiz § 18): who gave them, when, how, to which
text version, and their withdrawal, which takes effect at once.

Guardians with custody give and withdraw consent in the app; a Kita leader records a consent or
withdrawal handed in on paper. Services that process a child's data for a purpose call
:func:`require_consent` inside their transaction; it locks the active consent row, so on
PostgreSQL a withdrawal that commits first is always seen (SQLite serialises writers anyway).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from kita import audit
from kita.access import Actor, is_custodial_guardian, may_view_child
from kita.errors import ForbiddenError, NotFoundError, ValidationError
from kita.models.accounts import Role, User
from kita.models.documentation import Consent, ConsentMethod, ConsentPurpose
from kita.models.organisation import Child, GuardianLink

#: The version of the consent texts below; bump it whenever their wording changes.
CONSENT_TEXT_VERSION = "2025-1"

PURPOSE_LABELS = {
    ConsentPurpose.DOCUMENTATION: _l("Development documentation"),
    ConsentPurpose.PHOTOS_IN_DOCUMENTATION: _l("Photos in the development documentation"),
    ConsentPurpose.PHOTOS_FOR_GROUP: _l("Photos shown to the group"),
    ConsentPurpose.PASS_TO_SCHOOL: _l("Passing the documentation on to the school"),
}

PURPOSE_TEXTS = {
    ConsentPurpose.DOCUMENTATION: _l(
        "The educators may observe and document your child's development (observations and "
        "learning stories). The documentation is encrypted, only the child's educators and "
        "the Kita's leaders read it, and it is handed to you and deleted when your child "
        "leaves the Kita."
    ),
    ConsentPurpose.PHOTOS_IN_DOCUMENTATION: _l(
        "The educators may add photos of your child to the development documentation. The "
        "photos are encrypted and deleted together with the documentation."
    ),
    ConsentPurpose.PHOTOS_FOR_GROUP: _l(
        "Photos in which your child can be seen may be shown to the other families of the group."
    ),
    ConsentPurpose.PASS_TO_SCHOOL: _l(
        "The Kita may pass the development documentation on to your child's school."
    ),
}

_REFUSALS = {
    ConsentPurpose.DOCUMENTATION: _l(
        "The development documentation of this child is closed: the family has not given "
        "consent to it, or has withdrawn it."
    ),
    ConsentPurpose.PHOTOS_IN_DOCUMENTATION: _l(
        "Photos cannot be added: the family has not given consent to photos in the "
        "documentation, or has withdrawn it."
    ),
    ConsentPurpose.PHOTOS_FOR_GROUP: _l(
        "This photo cannot be shown to the group: the family has not given consent to it."
    ),
    ConsentPurpose.PASS_TO_SCHOOL: _l(
        "The documentation cannot be passed on to the school: the family has not given "
        "consent to it."
    ),
}

_TEXT_VERSION_RE = re.compile(r"\A[A-Za-z0-9._-]{1,32}\Z")


class ConsentRequiredError(ForbiddenError):
    """The child's family has not given (or has withdrawn) the consent this action needs."""

    def __init__(self, purpose: ConsentPurpose) -> None:
        super().__init__(_REFUSALS[purpose])
        self.purpose = purpose


def _purpose(value: ConsentPurpose | str) -> ConsentPurpose:
    try:
        return ConsentPurpose(value)
    except ValueError:
        raise ValidationError(
            {"purpose": _l("Please choose one of the offered options.")}
        ) from None


def _check_may_decide(db: Session, actor: Actor, child: Child, method: ConsentMethod) -> None:
    """In the app only a guardian with custody decides; a leader files paper forms."""
    if not may_view_child(actor, child):
        raise NotFoundError()
    if method is ConsentMethod.APP and not is_custodial_guardian(db, actor, child):
        raise ForbiddenError(_l("Only a parent with custody can give or withdraw consent."))
    if method is ConsentMethod.PAPER and not actor.has_role(child.kita_id, Role.LEADER):
        raise ForbiddenError(_l("Only the Kita's leaders can record a consent given on paper."))


def _custodial_guardian(db: Session, child: Child, user_id: uuid.UUID) -> User | None:
    link = db.scalars(
        select(GuardianLink).where(
            GuardianLink.child_id == child.id,
            GuardianLink.user_id == user_id,
            GuardianLink.has_custody.is_(True),
        )
    ).first()
    return link.user if link is not None else None


def _active(
    db: Session, child: Child, purpose: ConsentPurpose, *, lock: bool = False
) -> list[Consent]:
    query = (
        select(Consent)
        .where(
            Consent.child_id == child.id,
            Consent.purpose == purpose,
            Consent.withdrawn_at.is_(None),
        )
        .order_by(Consent.given_at.desc())
    )
    if lock:
        query = query.with_for_update()
    return list(db.scalars(query))


def give_consent(
    db: Session,
    *,
    actor: Actor,
    child: Child,
    purpose: ConsentPurpose | str,
    method: ConsentMethod = ConsentMethod.APP,
    text_version: str = CONSENT_TEXT_VERSION,
    guardian_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> Consent:
    """Record a consent. In the app the actor is the consenting guardian (custody needed); a
    leader records a paper form (``method=PAPER``), naming the signing guardian when known.

    Giving a consent that is already active for the same text version changes nothing and
    returns it; a new text version replaces the active consent at the same instant.
    Answers 404 when the actor may not see the child, 403 when they may not decide.
    """
    purpose = _purpose(purpose)
    method = ConsentMethod(method)
    _check_may_decide(db, actor, child, method)
    if not isinstance(text_version, str) or not _TEXT_VERSION_RE.match(text_version):
        raise ValidationError({"text_version": _l("Please choose one of the offered options.")})
    given_by: uuid.UUID | None = actor.id
    if method is ConsentMethod.PAPER:
        given_by = None
        if guardian_id is not None:
            if _custodial_guardian(db, child, guardian_id) is None:
                raise ValidationError(
                    {"guardian_id": _l("Please choose a parent with custody of this child.")}
                )
            given_by = guardian_id
    now = now or datetime.now(UTC)
    active = _active(db, child, purpose, lock=True)
    if active and active[0].text_version == text_version:
        return active[0]
    for old in active:
        old.withdrawn_at, old.withdrawn_by_id = now, actor.id
    consent = Consent(
        id=uuid.uuid4(),
        child_id=child.id,
        kita_id=child.kita_id,
        purpose=purpose,
        method=method,
        text_version=text_version,
        given_by_id=given_by,
        recorded_by_id=actor.id,
        given_at=now,
    )
    db.add(consent)
    db.flush()
    audit.record(
        db,
        action="consent.given",
        actor_id=actor.id,
        object_type="child",
        object_id=child.id,
        kita_id=child.kita_id,
        detail=f"purpose={purpose.value} method={method.value} text={text_version}",
        at=now,
    )
    return consent


def withdraw_consent(
    db: Session,
    *,
    actor: Actor,
    child: Child,
    purpose: ConsentPurpose | str,
    method: ConsentMethod = ConsentMethod.APP,
    now: datetime | None = None,
) -> list[Consent]:
    """Withdraw the active consent for ``purpose`` at once; returns the consents ended (none
    when nothing was active, so a repeated withdrawal is harmless).

    The same people decide as for :func:`give_consent` (404 / 403 otherwise). Entries already
    written stay readable; new writes for the purpose are refused from this moment.
    """
    purpose = _purpose(purpose)
    method = ConsentMethod(method)
    _check_may_decide(db, actor, child, method)
    now = now or datetime.now(UTC)
    active = _active(db, child, purpose, lock=True)
    for consent in active:
        consent.withdrawn_at, consent.withdrawn_by_id = now, actor.id
    if active:
        db.flush()
        audit.record(
            db,
            action="consent.withdrawn",
            actor_id=actor.id,
            object_type="child",
            object_id=child.id,
            kita_id=child.kita_id,
            detail=f"purpose={purpose.value} method={method.value}",
            at=now,
        )
    return active


def current_consents(db: Session, child: Child) -> dict[ConsentPurpose, Consent]:
    """The active consent per purpose (purposes without one are missing). The caller has
    loaded the child through the access policy."""
    result: dict[ConsentPurpose, Consent] = {}
    for consent in db.scalars(
        select(Consent)
        .where(Consent.child_id == child.id, Consent.withdrawn_at.is_(None))
        .order_by(Consent.given_at)
    ):
        result[consent.purpose] = consent
    return result


def consent_history(db: Session, child: Child) -> list[Consent]:
    """Every consent of the child, newest first, withdrawn ones included."""
    return list(
        db.scalars(
            select(Consent)
            .where(Consent.child_id == child.id)
            .order_by(Consent.given_at.desc(), Consent.id)
        )
    )


def has_consent(db: Session, child: Child, purpose: ConsentPurpose) -> bool:
    return bool(_active(db, child, ConsentPurpose(purpose)))


def require_consent(db: Session, child: Child, purpose: ConsentPurpose) -> Consent:
    """The active consent for ``purpose``, locked until the transaction ends; raises
    :class:`ConsentRequiredError` (403, with a message saying why) when there is none."""
    active = _active(db, child, ConsentPurpose(purpose), lock=True)
    if not active:
        raise ConsentRequiredError(ConsentPurpose(purpose))
    return active[0]
