"""Consents: who may give and withdraw them, what is recorded, and that withdrawal counts at
once."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from kita.errors import ForbiddenError, NotFoundError, ValidationError
from kita.models.audit import AuditEvent
from kita.models.documentation import Consent, ConsentMethod, ConsentPurpose
from kita.models.organisation import GuardianLink
from kita.services import consent
from kita.services.consent import ConsentRequiredError
from tests.unit.test_documentation import World, act, build_world

DOC = ConsentPurpose.DOCUMENTATION


@pytest.fixture
def world(db: Session) -> World:
    return build_world(db)


def test_a_parent_gives_and_withdraws_consent_in_the_app(db: Session, world: World) -> None:
    w = world
    given = consent.give_consent(db, actor=act(db, w.parent), child=w.child, purpose=DOC)
    db.commit()
    row = db.get(Consent, given.id)
    assert row is not None
    assert (row.method, row.given_by_id, row.recorded_by_id, row.text_version) == (
        ConsentMethod.APP,
        w.parent.id,
        w.parent.id,
        consent.CONSENT_TEXT_VERSION,
    )
    assert row.given_at.tzinfo is not None and row.is_active
    assert consent.has_consent(db, w.child, DOC)
    assert consent.require_consent(db, w.child, DOC).id == row.id
    assert set(consent.current_consents(db, w.child)) == {DOC}

    ended = consent.withdraw_consent(db, actor=act(db, w.parent), child=w.child, purpose=DOC)
    db.commit()
    assert [c.id for c in ended] == [row.id]
    db.refresh(row)
    assert row.withdrawn_by_id == w.parent.id and row.withdrawn_at is not None
    assert not consent.has_consent(db, w.child, DOC)
    with pytest.raises(ConsentRequiredError) as caught:
        consent.require_consent(db, w.child, DOC)
    assert caught.value.status == 403 and caught.value.purpose is DOC
    assert consent.current_consents(db, w.child) == {}
    # Withdrawing again is harmless and records nothing more.
    assert consent.withdraw_consent(db, actor=act(db, w.parent), child=w.child, purpose=DOC) == []
    events = list(db.scalars(select(AuditEvent).order_by(AuditEvent.id)))
    assert [(e.action, e.object_id) for e in events] == [
        ("consent.given", str(w.child.id)),
        ("consent.withdrawn", str(w.child.id)),
    ]
    assert "purpose=documentation" in events[0].detail
    assert [c.id for c in consent.consent_history(db, w.child)] == [row.id]


def test_giving_again_is_idempotent_and_a_new_text_version_replaces(
    db: Session, world: World
) -> None:
    w = world
    parent = act(db, w.parent)
    first = consent.give_consent(db, actor=parent, child=w.child, purpose=DOC)
    again = consent.give_consent(db, actor=parent, child=w.child, purpose=DOC)
    assert again.id == first.id
    renewed = consent.give_consent(
        db, actor=parent, child=w.child, purpose=DOC, text_version="2099-1"
    )
    db.commit()
    assert renewed.id != first.id
    assert [c.id for c in consent.current_consents(db, w.child).values()] == [renewed.id]
    assert first.withdrawn_at == renewed.given_at
    with pytest.raises(ValidationError):
        consent.give_consent(db, actor=parent, child=w.child, purpose=DOC, text_version="a b")
    with pytest.raises(ValidationError):
        consent.give_consent(db, actor=parent, child=w.child, purpose="marketing")


def test_consents_are_per_purpose(db: Session, world: World) -> None:
    w = world
    consent.give_consent(db, actor=act(db, w.parent), child=w.child, purpose=DOC)
    assert consent.has_consent(db, w.child, DOC)
    assert not consent.has_consent(db, w.child, ConsentPurpose.PHOTOS_IN_DOCUMENTATION)
    assert not consent.has_consent(db, w.other_child, DOC)
    with pytest.raises(ConsentRequiredError) as caught:
        consent.require_consent(db, w.child, ConsentPurpose.PHOTOS_IN_DOCUMENTATION)
    assert "Photos" in str(caught.value.message)


def test_a_leader_records_a_paper_consent(db: Session, world: World) -> None:
    w = world
    leader = act(db, w.leader)
    paper = consent.give_consent(
        db,
        actor=leader,
        child=w.child,
        purpose=DOC,
        method=ConsentMethod.PAPER,
        guardian_id=w.parent.id,
    )
    assert (paper.method, paper.given_by_id, paper.recorded_by_id) == (
        ConsentMethod.PAPER,
        w.parent.id,
        w.leader.id,
    )
    with pytest.raises(ValidationError) as caught:
        consent.give_consent(
            db,
            actor=leader,
            child=w.child,
            purpose=ConsentPurpose.PASS_TO_SCHOOL,
            method=ConsentMethod.PAPER,
            guardian_id=w.other_parent.id,
        )
    assert set(caught.value.fields) == {"guardian_id"}
    unsigned = consent.give_consent(
        db,
        actor=leader,
        child=w.child,
        purpose=ConsentPurpose.PASS_TO_SCHOOL,
        method=ConsentMethod.PAPER,
    )
    assert unsigned.given_by_id is None
    consent.withdraw_consent(
        db, actor=leader, child=w.child, purpose=DOC, method=ConsentMethod.PAPER
    )
    assert not consent.has_consent(db, w.child, DOC)


@pytest.mark.parametrize(
    ("who", "method", "error"),
    [
        ("leader", ConsentMethod.APP, ForbiddenError),
        ("educator", ConsentMethod.APP, ForbiddenError),
        ("educator", ConsentMethod.PAPER, ForbiddenError),
        ("parent", ConsentMethod.PAPER, ForbiddenError),
        ("admin", ConsentMethod.PAPER, ForbiddenError),
        ("other_parent", ConsentMethod.APP, NotFoundError),
        ("other_educator", ConsentMethod.APP, NotFoundError),
        ("council", ConsentMethod.APP, NotFoundError),
        ("caretaker", ConsentMethod.PAPER, NotFoundError),
        ("other_leader", ConsentMethod.PAPER, NotFoundError),
        ("other_admin", ConsentMethod.PAPER, NotFoundError),
    ],
)
def test_who_may_not_decide(
    db: Session, world: World, who: str, method: ConsentMethod, error: type[Exception]
) -> None:
    w = world
    actor = act(db, getattr(w, who))
    with pytest.raises(error):
        consent.give_consent(db, actor=actor, child=w.child, purpose=DOC, method=method)
    consent.give_consent(db, actor=act(db, w.parent), child=w.child, purpose=DOC)
    with pytest.raises(error):
        consent.withdraw_consent(db, actor=actor, child=w.child, purpose=DOC, method=method)
    assert consent.has_consent(db, w.child, DOC)
    assert db.scalars(select(Consent.recorded_by_id)).all() == [w.parent.id]


def test_a_guardian_without_custody_cannot_decide(db: Session, world: World) -> None:
    w = world
    link = db.scalars(select(GuardianLink).where(GuardianLink.user_id == w.parent.id)).one()
    link.has_custody = False
    db.commit()
    with pytest.raises(ForbiddenError):
        consent.give_consent(db, actor=act(db, w.parent), child=w.child, purpose=DOC)
    with pytest.raises(ValidationError):
        consent.give_consent(
            db,
            actor=act(db, w.leader),
            child=w.child,
            purpose=DOC,
            method=ConsentMethod.PAPER,
            guardian_id=w.parent.id,
        )
    with pytest.raises(ValidationError):
        consent.give_consent(
            db,
            actor=act(db, w.leader),
            child=w.child,
            purpose=DOC,
            method=ConsentMethod.PAPER,
            guardian_id=uuid.uuid4(),
        )
