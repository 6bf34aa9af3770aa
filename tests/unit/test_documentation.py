"""Development documentation services: encrypted entries and their history, idempotent saves and
stale edits, validation, consent, the access matrix, timelines, break-glass, who viewed, talks.

``build_world`` and the small helpers here are imported by the other documentation tests.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.access import Actor, DocumentationAccess, documentation_access, load_actor
from kita.crypto import DecryptionError, KeyService
from kita.errors import NotFoundError, ValidationError
from kita.models.accounts import Role, User
from kita.models.audit import AuditEvent
from kita.models.documentation import (
    BreakGlassGrant,
    ConsentPurpose,
    DocumentationEntry,
    DocumentationEntryArea,
    DocumentationRevision,
    DocumentationTemplate,
    EducationalArea,
)
from kita.models.organisation import Child, Group, GuardianLink, Kita, Provider
from kita.services import consent, documentation
from kita.services.consent import ConsentRequiredError
from kita.services.documentation import EntryInput, StaleEditError
from tests.factories import make_child, make_group, make_kita, make_provider, make_user


@dataclass
class World:
    provider: Provider
    kita: Kita
    group: Group
    other_group: Group
    child: Child
    other_child: Child
    educator: User
    other_educator: User
    leader: User
    parent: User
    other_parent: User
    council: User
    caretaker: User
    admin: User
    other_admin: User
    other_leader: User


def build_world(db: Session) -> World:
    """A Kita with two groups, a child in each, their staff and families, and outsiders."""
    provider = make_provider(db)
    kita = make_kita(db, provider)
    other_kita = make_kita(db, provider)
    group, other_group = make_group(db, kita), make_group(db, kita)
    child, other_child = make_child(db, group), make_child(db, other_group)
    return World(
        provider=provider,
        kita=kita,
        group=group,
        other_group=other_group,
        child=child,
        other_child=other_child,
        educator=make_user(
            db, name="Erika Educator", roles=[(kita, Role.EDUCATOR)], groups=[group]
        ),
        other_educator=make_user(db, roles=[(kita, Role.EDUCATOR)], groups=[other_group]),
        leader=make_user(db, name="Lena Leader", roles=[(kita, Role.LEADER)]),
        parent=make_user(db, name="Paula Parent", roles=[(kita, Role.PARENT)], children=[child]),
        other_parent=make_user(db, roles=[(kita, Role.PARENT)], children=[other_child]),
        council=make_user(db, roles=[(kita, Role.COUNCIL)]),
        caretaker=make_user(db, roles=[(kita, Role.CARETAKER)]),
        admin=make_user(db, name="Anton Admin", admin_of=provider),
        other_admin=make_user(db, admin_of=make_provider(db)),
        other_leader=make_user(db, roles=[(other_kita, Role.LEADER)]),
    )


def act(db: Session, user: User) -> Actor:
    return load_actor(db, user)


def consent_to(db: Session, world: World, *purposes: ConsentPurpose) -> None:
    """The child's parent consents (in the app) to each purpose."""
    for purpose in purposes or (ConsentPurpose.DOCUMENTATION,):
        consent.give_consent(db, actor=act(db, world.parent), child=world.child, purpose=purpose)
    db.commit()


def entry_input(child: Child, **changes: Any) -> EntryInput:
    values: dict[str, Any] = {
        "child_id": child.id,
        "kind": "observation",
        "status": "draft",
        "title": "Turm gebaut",
        "text": "Sie hat einen Turm aus zwölf Bausteinen gebaut.",
        "areas": ["mathematics", "movement"],
        "dispositions": ["engaged", "persisting"],
    }
    values.update(changes)
    return EntryInput(**values)


def save(
    db: Session,
    keys: KeyService,
    user: User,
    child: Child,
    entry_id: uuid.UUID | None = None,
    **changes: Any,
) -> documentation.SaveResult:
    return documentation.save_entry(
        db,
        actor=act(db, user),
        keys=keys,
        entry_id=entry_id or uuid.uuid4(),
        data=entry_input(child, **changes),
    )


def count(db: Session, model: Any, *where: Any) -> int:
    return int(db.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def audit_actions(db: Session) -> list[str]:
    return list(db.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


@pytest.fixture
def keys(app: Flask) -> KeyService:
    return app.extensions["kita"].keys  # type: ignore[no-any-return]


@pytest.fixture
def world(db: Session) -> World:
    return build_world(db)


@pytest.fixture
def consented(db: Session, world: World) -> World:
    consent_to(db, world, ConsentPurpose.DOCUMENTATION, ConsentPurpose.PHOTOS_IN_DOCUMENTATION)
    return world


# --- creating, encryption, history ------------------------------------------------------------


def test_create_stores_only_ciphertext_and_a_first_revision(
    db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    result = save(db, keys, w.educator, w.child, title="Geheimer Titel", text="Geheimer Text")
    db.commit()
    assert result.created and result.changed
    row = db.get(DocumentationEntry, result.entry.id)
    assert row is not None and row.version == 1 and row.author_id == w.educator.id
    assert b"Geheimer" not in row.content_ct
    assert row.content_ct.startswith(b"KT")
    assert {a.area for a in db.scalars(select(DocumentationEntryArea))} == {
        EducationalArea.MATHEMATICS,
        EducationalArea.MOVEMENT,
    }
    revisions = list(db.scalars(select(DocumentationRevision)))
    assert [(r.version, r.editor_id) for r in revisions] == [(1, w.educator.id)]
    assert b"Geheimer" not in revisions[0].content_ct
    assert "documentation.created" in audit_actions(db)
    view = documentation.read_entry(
        db, actor=act(db, w.educator), keys=keys, entry_id=result.entry.id
    )
    assert (view.title, view.text, view.version) == ("Geheimer Titel", "Geheimer Text", 1)
    assert view.areas == (EducationalArea.MOVEMENT, EducationalArea.MATHEMATICS)
    assert view.author_name == "Erika Educator"


def test_a_ciphertext_moved_to_another_entry_does_not_decrypt(
    db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    first = save(db, keys, w.educator, w.child, text="erstes").entry
    second = save(db, keys, w.educator, w.child, text="zweites").entry
    db.commit()
    rows = {e.id: e for e in db.scalars(select(DocumentationEntry))}
    rows[second.id].content_ct = rows[first.id].content_ct
    db.commit()
    with pytest.raises(DecryptionError):
        documentation.read_entry(db, actor=act(db, w.educator), keys=keys, entry_id=second.id)


def test_update_increments_version_and_keeps_an_encrypted_history(
    db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    entry_id = save(db, keys, w.educator, w.child, text="Version eins").entry.id
    result = save(
        db, keys, w.leader, w.child, entry_id, text="Version zwei", status="final", base_version=1
    )
    db.commit()
    assert (result.created, result.changed, result.entry.version) == (False, True, 2)
    history = documentation.list_revisions(
        db, actor=act(db, w.leader), keys=keys, entry_id=entry_id
    )
    assert [(r.version, r.content["text"], r.editor_name) for r in history] == [
        (2, "Version zwei", "Lena Leader"),
        (1, "Version eins", "Erika Educator"),
    ]
    assert history[0].content["status"] == "final"


def test_replayed_saves_store_nothing_twice(
    db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    entry_id = uuid.uuid4()
    save(db, keys, w.educator, w.child, entry_id)
    replay = save(db, keys, w.educator, w.child, entry_id)  # the create's answer was lost
    assert (replay.created, replay.changed, replay.entry.version) == (False, False, 1)
    save(db, keys, w.educator, w.child, entry_id, text="neu", base_version=1)
    again = save(db, keys, w.educator, w.child, entry_id, text="neu", base_version=1)
    db.commit()
    assert (again.changed, again.entry.version) == (False, 2)
    assert count(db, DocumentationEntry) == 1
    assert count(db, DocumentationRevision) == 2
    assert audit_actions(db).count("documentation.updated") == 1


def test_a_retry_on_the_next_day_keeps_the_observation_date(
    db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    entry_id, educator = uuid.uuid4(), act(db, w.educator)
    late = datetime(2025, 3, 3, 23, 59, tzinfo=UTC)
    for now in (late, late + timedelta(minutes=5)):
        result = documentation.save_entry(
            db, actor=educator, keys=keys, entry_id=entry_id, data=entry_input(w.child), now=now
        )
    assert (result.changed, result.entry.observed_on) == (False, date(2025, 3, 3))
    assert count(db, DocumentationRevision) == 1


def test_a_stale_edit_is_refused_and_changes_nothing(
    db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    entry_id = save(db, keys, w.educator, w.child, text="eins").entry.id
    save(db, keys, w.leader, w.child, entry_id, text="zwei", base_version=1)
    save(db, keys, w.leader, w.child, entry_id, text="drei", base_version=2)
    db.commit()
    with pytest.raises(StaleEditError) as caught:
        save(db, keys, w.educator, w.child, entry_id, text="meins", base_version=1)
    assert caught.value.current_version == 3 and caught.value.status == 409
    db.rollback()
    view = documentation.read_entry(db, actor=act(db, w.leader), keys=keys, entry_id=entry_id)
    assert (view.text, view.version) == ("drei", 3)
    assert count(db, DocumentationRevision) == 3


def test_a_final_entry_does_not_go_back_to_draft(
    db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    entry_id = save(db, keys, w.educator, w.child, status="final").entry.id
    with pytest.raises(ValidationError) as caught:
        save(db, keys, w.educator, w.child, entry_id, status="draft", text="x", base_version=1)
    assert set(caught.value.fields) == {"status"}


def test_the_child_of_an_entry_cannot_change(
    db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    entry_id = save(db, keys, w.leader, w.child).entry.id
    with pytest.raises(ValidationError) as caught:
        save(db, keys, w.leader, w.other_child, entry_id, base_version=1)
    assert set(caught.value.fields) == {"child_id"}


@pytest.mark.parametrize(
    ("changes", "fields"),
    [
        ({"title": "T" * 201}, {"title"}),
        ({"text": "x" * 20_001}, {"text"}),
        ({"text": "", "title": ""}, {"text"}),
        ({"title": "a\x00b"}, {"title"}),
        ({"text": "a\x07b"}, {"text"}),
        ({"kind": "diary"}, {"kind"}),
        ({"status": "published"}, {"status"}),
        ({"areas": ["movement", "cooking"]}, {"areas"}),
        ({"dispositions": ["brave"]}, {"dispositions"}),
        ({"template_values": {"x": "y"}}, {"template_values"}),
        ({"template_id": uuid.uuid4()}, {"template_id"}),
        ({"observed_on": date(1999, 12, 31)}, {"observed_on"}),
        ({"observed_on": date.today() + timedelta(days=30)}, {"observed_on"}),
        ({"title": "T" * 201, "text": "x" * 20_001, "kind": "?"}, {"title", "text", "kind"}),
    ],
)
def test_invalid_input_names_each_field_and_stores_nothing(
    db: Session, keys: KeyService, consented: World, changes: dict[str, Any], fields: set[str]
) -> None:
    w = consented
    with pytest.raises(ValidationError) as caught:
        save(db, keys, w.educator, w.child, **changes)
    assert set(caught.value.fields) == fields
    assert all(str(message) for message in caught.value.fields.values())
    db.rollback()
    assert count(db, DocumentationEntry) == 0
    assert count(db, DocumentationRevision) == 0


def test_limits_are_inclusive(db: Session, keys: KeyService, consented: World) -> None:
    w = consented
    view = save(db, keys, w.educator, w.child, title="T" * 200, text="x" * 20_000).entry
    assert (len(view.title), len(view.text)) == (200, 20_000)


# --- templates --------------------------------------------------------------------------------


def test_default_templates_exist_once_per_area(db: Session, world: World) -> None:
    first = documentation.ensure_default_templates(db, world.kita)
    again = documentation.ensure_default_templates(db, world.kita)
    db.commit()
    assert [t.id for t in first] == [t.id for t in again]
    assert [t.area for t in first] == list(EducationalArea)
    assert count(db, DocumentationTemplate) == 10
    views = documentation.list_templates(db, world.kita)
    assert [str(v.name) for v in views][:2] == ["Movement", "Body, health and nutrition"]
    assert [f.name for f in views[0].fields] == ["focus", "setting", "engagement", "next_steps"]
    assert str(views[0].fields[0].label) == "Which movements did the child try or practise?"


@pytest.mark.parametrize(
    ("values", "bad"),
    [
        ({"colour": "blau"}, "template_values.colour"),
        ({"setting": "kitchen"}, "template_values.setting"),
        ({"engagement": 0}, "template_values.engagement"),
        ({"engagement": 6}, "template_values.engagement"),
        ({"engagement": "3"}, "template_values.engagement"),
        ({"engagement": True}, "template_values.engagement"),
        ({"focus": 5}, "template_values.focus"),
        ({"focus": "x" * 2001}, "template_values.focus"),
    ],
)
def test_template_values_are_checked_against_the_template(
    db: Session, keys: KeyService, consented: World, values: dict[str, Any], bad: str
) -> None:
    w = consented
    template = documentation.ensure_default_templates(db, w.kita)[0]
    with pytest.raises(ValidationError) as caught:
        save(db, keys, w.educator, w.child, template_id=template.id, template_values=values)
    assert set(caught.value.fields) == {bad}


def test_valid_template_values_are_stored_encrypted(
    db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    template = documentation.ensure_default_templates(db, w.kita)[2]
    values = {"focus": "Sagt »Bagger«", "setting": "outdoors", "engagement": 5, "next_steps": ""}
    view = save(
        db, keys, w.educator, w.child, text="", template_id=template.id, template_values=values
    ).entry
    assert view.template_values == {
        "focus": "Sagt »Bagger«",
        "setting": "outdoors",
        "engagement": 5,
    }
    row = db.get(DocumentationEntry, view.id)
    assert row is not None and b"Bagger" not in row.content_ct


def test_a_template_of_another_kita_is_refused(
    db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    foreign = documentation.ensure_default_templates(db, make_kita(db, w.provider))[0]
    with pytest.raises(ValidationError) as caught:
        save(db, keys, w.educator, w.child, template_id=foreign.id)
    assert set(caught.value.fields) == {"template_id"}


def test_kita_defined_templates(db: Session, keys: KeyService, consented: World) -> None:
    w = consented
    field = documentation.TemplateFieldInput
    template = documentation.create_template(
        db,
        actor=act(db, w.leader),
        kita=w.kita,
        data=documentation.TemplateInput(
            name="Bauecke",
            area="mathematics",
            fields=[
                field("material", "choice", "Material", options=["holz", "lego"], required=True),
                field("mood", "scale", "Stimmung"),
            ],
        ),
    )
    with pytest.raises(ValidationError) as caught:
        save(db, keys, w.educator, w.child, template_id=template.id, template_values={"mood": 3})
    assert set(caught.value.fields) == {"template_values.material"}
    view = save(
        db,
        keys,
        w.educator,
        w.child,
        template_id=template.id,
        template_values={"material": "lego", "mood": 3},
    ).entry
    assert view.template_values == {"material": "lego", "mood": 3}
    bad = documentation.TemplateInput(
        name="",
        area="cooking",
        fields=[field("Bad Name", "choice", "", options=["a"]), field("x", "colour", "X")],
    )
    with pytest.raises(ValidationError) as invalid:
        documentation.create_template(db, actor=act(db, w.leader), kita=w.kita, data=bad)
    assert set(invalid.value.fields) == {
        "name",
        "area",
        "fields.0.name",
        "fields.0.label",
        "fields.0.options",
        "fields.1.type",
    }
    with pytest.raises(NotFoundError):
        documentation.create_template(
            db,
            actor=act(db, w.educator),
            kita=w.kita,
            data=documentation.TemplateInput("X", None, [field("a", "text", "A")]),
        )


# --- consent ----------------------------------------------------------------------------------


def test_writes_need_the_documentation_consent(db: Session, keys: KeyService, world: World) -> None:
    w = world
    with pytest.raises(ConsentRequiredError) as caught:
        save(db, keys, w.educator, w.child)
    assert caught.value.status == 403
    assert "closed" in str(caught.value.message)
    db.rollback()
    assert count(db, DocumentationEntry) == 0
    consent_to(db, w)
    entry_id = save(db, keys, w.educator, w.child).entry.id
    db.commit()
    consent.withdraw_consent(
        db, actor=act(db, w.parent), child=w.child, purpose=ConsentPurpose.DOCUMENTATION
    )
    db.commit()
    with pytest.raises(ConsentRequiredError):
        save(db, keys, w.educator, w.child, entry_id, text="danach", base_version=1)
    with pytest.raises(ConsentRequiredError):
        save(db, keys, w.educator, w.child)
    with pytest.raises(ConsentRequiredError):
        documentation.share_entry(db, actor=act(db, w.educator), entry_id=entry_id, shared=True)
    db.rollback()
    assert count(db, DocumentationEntry) == 1 and count(db, DocumentationRevision) == 1
    # Reading what was written stays possible.
    view = documentation.read_entry(db, actor=act(db, w.educator), keys=keys, entry_id=entry_id)
    assert view.version == 1


# --- access -----------------------------------------------------------------------------------

OUTSIDERS = (
    "other_educator",
    "other_parent",
    "council",
    "caretaker",
    "admin",
    "other_admin",
    "other_leader",
)


@pytest.mark.parametrize("who", [*OUTSIDERS, "parent"])
def test_only_the_childs_staff_write(
    db: Session, keys: KeyService, consented: World, who: str
) -> None:
    w = consented
    with pytest.raises(NotFoundError):
        save(db, keys, getattr(w, who), w.child)
    entry_id = save(db, keys, w.leader, w.child).entry.id
    with pytest.raises(NotFoundError):
        save(db, keys, getattr(w, who), w.child, entry_id, text="fremd", base_version=1)
    db.rollback()


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("educator", DocumentationAccess.STAFF),
        ("leader", DocumentationAccess.STAFF),
        ("parent", DocumentationAccess.FAMILY),
        *[(who, None) for who in OUTSIDERS],
    ],
)
def test_access_decision(db: Session, world: World, who: str, expected: Any) -> None:
    actor = act(db, getattr(world, who))
    assert documentation_access(db, actor, world.child) is expected


def test_a_guardian_without_custody_does_not_read(
    db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    link = db.scalars(select(GuardianLink).where(GuardianLink.user_id == w.parent.id)).one()
    link.has_custody = False
    db.commit()
    assert documentation_access(db, act(db, w.parent), w.child) is None


@pytest.mark.parametrize("who", OUTSIDERS)
def test_outsiders_read_nothing(db: Session, keys: KeyService, consented: World, who: str) -> None:
    w = consented
    entry_id = save(db, keys, w.educator, w.child, status="final").entry.id
    documentation.share_entry(db, actor=act(db, w.educator), entry_id=entry_id, shared=True)
    db.commit()
    actor = act(db, getattr(w, who))
    before = count(db, AuditEvent)
    with pytest.raises(NotFoundError):
        documentation.read_entry(db, actor=actor, keys=keys, entry_id=entry_id)
    with pytest.raises(NotFoundError):
        documentation.list_timeline(db, actor=actor, keys=keys, child=w.child)
    with pytest.raises(NotFoundError):
        documentation.list_shared_for_family(db, actor=actor, keys=keys, child=w.child)
    with pytest.raises(NotFoundError):
        documentation.list_revisions(db, actor=actor, keys=keys, entry_id=entry_id)
    with pytest.raises(NotFoundError):
        documentation.prepare_talk(db, actor=actor, keys=keys, child=w.child)
    assert count(db, AuditEvent) == before


def test_the_family_reads_only_shared_entries(
    db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    internal = save(db, keys, w.educator, w.child, title="intern", status="final").entry.id
    shared = save(db, keys, w.educator, w.child, title="geteilt", status="final").entry.id
    draft = save(db, keys, w.educator, w.child, title="entwurf").entry.id
    with pytest.raises(ValidationError):
        documentation.share_entry(db, actor=act(db, w.educator), entry_id=draft, shared=True)
    documentation.share_entry(db, actor=act(db, w.educator), entry_id=shared, shared=True)
    db.commit()
    parent = act(db, w.parent)
    page = documentation.list_shared_for_family(db, actor=parent, keys=keys, child=w.child)
    assert [e.title for e in page.items] == ["geteilt"]
    assert documentation.read_entry(db, actor=parent, keys=keys, entry_id=shared).title == "geteilt"
    for hidden in (internal, draft):
        with pytest.raises(NotFoundError):
            documentation.read_entry(db, actor=parent, keys=keys, entry_id=hidden)
    with pytest.raises(NotFoundError):
        documentation.list_timeline(db, actor=parent, keys=keys, child=w.child)
    with pytest.raises(NotFoundError):
        documentation.list_revisions(db, actor=parent, keys=keys, entry_id=shared)
    with pytest.raises(NotFoundError):
        documentation.share_entry(db, actor=parent, entry_id=shared, shared=False)
    documentation.share_entry(db, actor=act(db, w.leader), entry_id=shared, shared=False)
    with pytest.raises(NotFoundError):
        documentation.read_entry(db, actor=parent, keys=keys, entry_id=shared)


# --- reading and auditing ---------------------------------------------------------------------


def test_every_read_is_audited_with_the_child_as_object(
    db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    entry_id = save(db, keys, w.educator, w.child).entry.id
    db.commit()
    before = db.scalar(select(func.max(AuditEvent.id))) or 0
    educator = act(db, w.educator)
    documentation.read_entry(db, actor=educator, keys=keys, entry_id=entry_id)
    documentation.list_timeline(db, actor=educator, keys=keys, child=w.child)
    documentation.list_revisions(db, actor=educator, keys=keys, entry_id=entry_id)
    events = list(db.scalars(select(AuditEvent).where(AuditEvent.id > before)))
    assert [e.action for e in events] == [
        "documentation.read",
        "documentation.list",
        "documentation.read",
    ]
    assert {(e.object_type, e.object_id, e.actor_id) for e in events} == {
        ("child", str(w.child.id), w.educator.id)
    }
    assert all("Turm" not in e.detail for e in events)


def test_timeline_filters_and_pages(db: Session, keys: KeyService, consented: World) -> None:
    w = consented
    today = date.today()
    for number in range(53):
        save(
            db,
            keys,
            w.educator,
            w.child,
            title=f"E{number}",
            areas=["media"] if number % 2 else ["ecology"],
            observed_on=today - timedelta(days=number),
        )
    save(db, keys, w.leader, w.child, title="Leitung", areas=[], observed_on=today)
    db.commit()
    before = count(db, AuditEvent, AuditEvent.action == "documentation.list")
    educator = act(db, w.educator)
    first = documentation.list_timeline(db, actor=educator, keys=keys, child=w.child)
    assert (first.total, first.pages, len(first.items)) == (54, 2, 50)
    second = documentation.list_timeline(db, actor=educator, keys=keys, child=w.child, page=2)
    assert [e.title for e in second.items] == ["E49", "E50", "E51", "E52"]
    media = documentation.list_timeline(db, actor=educator, keys=keys, child=w.child, area="media")
    assert media.total == 26 and all(e.areas == (EducationalArea.MEDIA,) for e in media.items)
    by_leader = documentation.list_timeline(
        db, actor=educator, keys=keys, child=w.child, author_id=w.leader.id
    )
    assert [e.title for e in by_leader.items] == ["Leitung"]
    period = documentation.list_timeline(
        db,
        actor=educator,
        keys=keys,
        child=w.child,
        since=today - timedelta(days=3),
        until=today - timedelta(days=2),
    )
    assert [e.title for e in period.items] == ["E2", "E3"]
    assert count(db, AuditEvent, AuditEvent.action == "documentation.list") == before + 5
    with pytest.raises(ValidationError) as caught:
        documentation.list_timeline(
            db,
            actor=educator,
            keys=keys,
            child=w.child,
            area="cooking",
            since=today,
            until=today - timedelta(days=1),
        )
    assert set(caught.value.fields) == {"area", "until"}


# --- break-glass ------------------------------------------------------------------------------


def test_break_glass_lets_a_provider_admin_read_for_an_hour(
    db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    entry_id = save(db, keys, w.educator, w.child, title="intern").entry.id
    db.commit()
    admin = act(db, w.admin)
    with pytest.raises(NotFoundError):
        documentation.read_entry(db, actor=admin, keys=keys, entry_id=entry_id)
    with pytest.raises(ValidationError) as short:
        documentation.break_glass(db, actor=admin, keys=keys, child=w.child, reason="too short")
    assert set(short.value.fields) == {"reason"}
    for outsider in (w.other_admin, w.leader, w.educator):
        with pytest.raises(NotFoundError):
            documentation.break_glass(
                db, actor=act(db, outsider), keys=keys, child=w.child, reason="x" * 40
            )
    reason = "Auskunftsersuchen der Familie nach Art. 15 DSGVO, Ticket 4711"
    now = datetime.now(UTC)
    grant = documentation.break_glass(
        db, actor=admin, keys=keys, child=w.child, reason=reason, now=now
    )
    db.commit()
    assert reason.encode() not in grant.reason_ct
    assert documentation.read_break_glass_reason(keys, grant) == reason
    assert grant.expires_at - grant.granted_at == timedelta(hours=1)
    view = documentation.read_entry(db, actor=admin, keys=keys, entry_id=entry_id)
    assert view.title == "intern"
    event = db.scalars(
        select(AuditEvent)
        .where(AuditEvent.action == "documentation.read")
        .order_by(AuditEvent.id.desc())
    ).first()
    assert event is not None and event.actor_id == w.admin.id
    assert event.detail.startswith("break_glass") and str(grant.id) in event.detail
    assert reason not in " ".join(e.detail for e in db.scalars(select(AuditEvent)))
    # Read only: no writes, and no other child.
    with pytest.raises(NotFoundError):
        save(db, keys, w.admin, w.child, entry_id, text="admin", base_version=1)
    with pytest.raises(NotFoundError):
        documentation.list_timeline(db, actor=admin, keys=keys, child=w.other_child)
    later = now + timedelta(minutes=61)
    with pytest.raises(NotFoundError):
        documentation.read_entry(db, actor=admin, keys=keys, entry_id=entry_id, now=later)
    assert count(db, BreakGlassGrant) == 1


# --- who viewed -------------------------------------------------------------------------------


def test_the_family_sees_who_viewed(db: Session, keys: KeyService, consented: World) -> None:
    w = consented
    entry_id = save(db, keys, w.educator, w.child, status="final").entry.id
    documentation.read_entry(db, actor=act(db, w.educator), keys=keys, entry_id=entry_id)
    documentation.list_timeline(db, actor=act(db, w.leader), keys=keys, child=w.child)
    admin = act(db, w.admin)
    documentation.break_glass(db, actor=admin, keys=keys, child=w.child, reason="r" * 25)
    documentation.read_entry(db, actor=admin, keys=keys, entry_id=entry_id)
    db.commit()
    page = documentation.who_viewed(db, actor=act(db, w.parent), child=w.child)
    assert [(r.name, r.role, r.action, r.break_glass) for r in page.items] == [
        ("Anton Admin", "provider_admin", "documentation.read", True),
        ("Lena Leader", "leader", "documentation.list", False),
        ("Erika Educator", "educator", "documentation.read", False),
    ]
    assert page.items[0].at >= page.items[-1].at
    assert documentation.who_viewed(db, actor=act(db, w.leader), child=w.child).total == 3
    for outsider in (w.other_parent, w.educator, w.council, w.other_admin):
        with pytest.raises(NotFoundError):
            documentation.who_viewed(db, actor=act(db, outsider), child=w.child)


# --- development talks ------------------------------------------------------------------------


def test_talks_are_encrypted_and_prepared_from_entries_since_the_last_one(
    db: Session, keys: KeyService, consented: World
) -> None:
    w = consented
    now = datetime.now(UTC)
    educator = act(db, w.educator)
    documentation.save_entry(
        db,
        actor=educator,
        keys=keys,
        entry_id=uuid.uuid4(),
        data=entry_input(w.child, title="vorher", areas=["media"]),
        now=now - timedelta(days=1),
    )
    db.commit()
    talk_id = uuid.uuid4()
    talk = documentation.save_talk(
        db,
        actor=educator,
        keys=keys,
        child=w.child,
        talk_id=talk_id,
        data=documentation.TalkInput(held_at=now, notes="Notiz", protocol="Protokoll"),
        now=now,
    )
    assert (talk.notes, talk.protocol, talk.version) == ("Notiz", "Protokoll", 1)
    replay = documentation.save_talk(
        db,
        actor=educator,
        keys=keys,
        child=w.child,
        talk_id=talk_id,
        data=documentation.TalkInput(held_at=now, notes="Notiz", protocol="Protokoll"),
        now=now,
    )
    assert replay.version == 1
    with pytest.raises(StaleEditError):
        documentation.save_talk(
            db,
            actor=educator,
            keys=keys,
            child=w.child,
            talk_id=talk_id,
            data=documentation.TalkInput(held_at=now, notes="anders", base_version=0),
        )
    later = now + timedelta(seconds=5)
    for title, areas in (("nachher 1", ["media", "ecology"]), ("nachher 2", [])):
        documentation.save_entry(
            db,
            actor=educator,
            keys=keys,
            entry_id=uuid.uuid4(),
            data=entry_input(w.child, title=title, areas=areas),
            now=later,
        )
    db.commit()
    preparation = documentation.prepare_talk(
        db, actor=educator, keys=keys, child=w.child, now=later
    )
    assert preparation.since == now and preparation.entry_count == 2
    assert [(area, [e.title for e in entries]) for area, entries in preparation.groups] == [
        (EducationalArea.ECOLOGY, ["nachher 1"]),
        (EducationalArea.MEDIA, ["nachher 1"]),
        (None, ["nachher 2"]),
    ]
    talks = documentation.list_talks(db, actor=educator, keys=keys, child=w.child)
    assert [t.protocol for t in talks] == ["Protokoll"]
    with pytest.raises(NotFoundError):
        documentation.list_talks(db, actor=act(db, w.parent), keys=keys, child=w.child)
    with pytest.raises(ValidationError) as caught:
        documentation.save_talk(
            db,
            actor=educator,
            keys=keys,
            child=w.child,
            talk_id=uuid.uuid4(),
            data=documentation.TalkInput(notes="x" * 20_001),
        )
    assert set(caught.value.fields) == {"notes"}
