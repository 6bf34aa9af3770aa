"""The authorization matrix, generated from the app's route map.

Every route × every role (plus anonymous and a parent of another Kita) × an object of the actor's
own Kita and of a foreign one. ``EXPECTED`` names the policy decision for each endpoint; a route
that is added without a decision here, or a view without a guard, fails the test.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from kita.access import load_actor
from kita.blobs import BlobStore
from kita.models.accounts import Membership, Role, User
from kita.models.documentation import ConsentPurpose
from kita.models.imports import CsvImport
from kita.models.messaging import Announcement, Attachment, Tablet, Team
from kita.models.organisation import Child, Group, GuardianLink, Kita, Provider
from kita.services import (
    announcements,
    consent,
    conversations,
    documentation,
    invitations,
    photos,
)
from kita.services.translation import Translator
from tests.conftest import csrf_token, login_as
from tests.factories import (
    make_announcement_attachment,
    make_child,
    make_group,
    make_kita,
    make_provider,
    make_user,
)

# Decisions: public (everyone), user (every logged-in person), manage (leaders of the object's
# Kita and admins of its provider), admin_home (anyone who manages some Kita), provider_admin
# (admins of any provider), provider_settings (admins of the object Kita's provider).
EXPECTED: dict[str, str] = {
    "static": "public",
    "home.index": "public",
    "home.ping": "public",
    "home.dashboard": "user",
    "pwa.manifest": "public",
    "pwa.service_worker": "public",
    "pwa.offline": "public",
    "auth.login": "public",
    "auth.second_factor": "public",
    "auth.logout": "public",
    "auth.forgot_password": "public",
    "auth.reset_password": "public",
    "auth.join": "public",
    "auth.set_language": "public",
    "auth.account": "user",
    "auth.totp_setup": "user",
    "admin.index": "admin_home",
    "admin.kita_new": "provider_admin",
    "admin.kita_settings": "provider_settings",
    "admin.kita": "manage",
    "admin.groups": "manage",
    "admin.group": "manage",
    "admin.group_delete": "manage",
    "admin.staff": "manage",
    "admin.staff_groups": "manage",
    "admin.membership_remove": "manage",
    "admin.account_active": "manage",
    "admin.staff_invite": "manage",
    "admin.children": "manage",
    "admin.child_new": "manage",
    "admin.child_edit": "manage",
    "admin.child": "manage",
    "admin.guardian_update": "manage",
    "admin.guardian_remove": "manage",
    "admin.guardian_invite": "manage",
    "admin.invitations_list": "manage",
    "admin.invitation_revoke": "manage",
    "admin.group_sheet": "manage",
    "imports.upload": "manage",
    "imports.example": "manage",
    "imports.preview": "manage",
    "imports.commit": "manage",
    "api.session_info": "user",
    "api.push_key": "user",
    "api.push_subscribe": "user",
    "api.push_unsubscribe": "user",
    "notifications.settings": "user",
    # Development documentation: "doc_staff" = educators of the child's group and leaders of
    # its Kita; "doc_family" = those plus the child's parents (they see the shared entries).
    "api.get_observation": "doc_staff",
    "api.share_observation": "doc_staff",
    "api.upload_photo": "doc_staff",
    "api.put_observation": "doc_staff",
    "api.get_photo": "doc_staff",
    "api.timeline": "doc_family",
    # Reports: the portfolio for the child's staff and parents (provider admins only with
    # break-glass, which the matrix does not grant), the hand-over for the child's staff, and
    # every person's own data export.
    "reports.portfolio_pdf": "doc_family",
    "reports.handover": "doc_staff",
    "reports.family_export": "user",
    "reports.family_export_json": "user",
    "reports.family_export_pdf": "user",
    # The documentation screens; "doc_leader" = leaders of the child's Kita (paper consents),
    # "doc_guardian" = the child's parents (the family's page). The matrix's entry is not
    # shared, so parents get 404 for it like any outsider.
    "documentation.index": "user",
    "documentation.group": "doc_staff",
    "documentation.timeline": "doc_staff",
    "documentation.entry_new": "doc_staff",
    "documentation.entry_edit": "doc_staff",
    "documentation.entry": "doc_staff",
    "documentation.entry_history": "doc_staff",
    "documentation.entry_share": "doc_staff",
    "documentation.photo_upload": "doc_staff",
    "documentation.photo": "doc_staff",
    "documentation.talks": "doc_staff",
    "documentation.consents": "doc_leader",
    "documentation.family": "doc_guardian",
    "documentation.family_consent": "doc_guardian",
    "documentation.family_views": "doc_guardian",
    "documentation.break_glass": "provider_settings",
    "documentation.templates": "manage",
    "documentation.template_new": "manage",
    "documentation.template_archive": "manage",
    # Shared staff tablets: leaders pair and revoke; the device's own pages are public (they
    # check the device cookie, which no actor here holds); the PIN page is for the people who
    # may unlock a tablet ("tablet_staff": leaders and educators); the outbox key only for a
    # session unlocked on a tablet ("tablet_session", which no actor here has).
    "tablets.manage": "manage",
    "tablets.revoke": "manage",
    "tablets.pin": "tablet_staff",
    "tablets.start": "public",
    "tablets.unlock": "public",
    "tablets.lock": "public",
    "tablets.today": "user",
    "api.tablet_outbox_key": "tablet_session",
    # Conversations: "conv_team" = the child's parents (with custody), the educators of the
    # conversation's group and the leaders of its Kita; "conv_staff" = the latter two only.
    "conversations.inbox": "user",
    "conversations.new": "user",
    "conversations.thread": "conv_team",
    "conversations.reply": "conv_team",
    "conversations.attachment": "conv_team",
    "conversations.interpreter": "conv_staff",
    "conversations.working_hours": "manage",
    # Announcements for staff: "announce_home" = anyone who writes announcements somewhere
    # (provider admins, leaders, educators with a group); "announce" = who may manage the
    # matrix's announcement, which the group's educator sent to the group (its educators, the
    # Kita's leaders and the provider's admins).
    "announcements.index": "announce_home",
    "announcements.new": "announce_home",
    "announcements.detail": "announce",
    "announcements.edit": "announce",
    "announcements.preview": "announce",
    "announcements.send": "announce",
    "announcements.recall": "announce",
    # The parents' messages: "recipient" = a parent the announcement was sent to;
    # "announcement_reader" = its recipients and the Kita's staff who handle it (attachments);
    # reach and letters for the same people as "announce".
    "messages.feed_page": "user",
    "messages.announcement": "recipient",
    "messages.confirm": "recipient",
    "messages.attachment": "announcement_reader",
    "messages.reach_page": "announce",
    "messages.letters": "announce",
}

ACTORS = (
    "anonymous",
    "parent",
    "parent_other_kita",
    "educator",
    "leader",
    "council",
    "caretaker",
    "admin",
    "admin_other_provider",
)


@dataclass
class KitaObjects:
    """The objects of one Kita that route arguments point at."""

    provider: Provider
    kita: Kita
    group: Group
    child: Child
    link: GuardianLink
    membership: Membership
    staff: User
    invitation_id: uuid.UUID
    import_id: uuid.UUID
    entry_id: uuid.UUID
    photo_id: uuid.UUID
    conversation_id: uuid.UUID = field(default_factory=uuid.uuid4)
    conversation_attachment_id: uuid.UUID = field(default_factory=uuid.uuid4)
    announcement_id: uuid.UUID = field(default_factory=uuid.uuid4)
    tablet_id: uuid.UUID = field(default_factory=uuid.uuid4)
    attachment_id: uuid.UUID = field(default_factory=uuid.uuid4)

    def url_values(self) -> dict[str, Any]:
        return {
            "kita_id": self.kita.id,
            "group_id": self.group.id,
            "child_id": self.child.id,
            "link_id": self.link.id,
            "membership_id": self.membership.id,
            "user_id": self.staff.id,
            "invitation_id": self.invitation_id,
            "import_id": self.import_id,
            "entry_id": self.entry_id,
            "photo_id": self.photo_id,
            "conversation_id": self.conversation_id,
            "conversation_attachment_id": self.conversation_attachment_id,
            "announcement_id": self.announcement_id,
            "tablet_id": self.tablet_id,
            "attachment_id": self.attachment_id,
            "token": "not-a-real-token-" + "x" * 10,
            "filename": "app.css",
        }


@dataclass
class World:
    own: KitaObjects
    foreign: KitaObjects
    actors: dict[str, User | None] = field(default_factory=dict)


def _kita_objects(db: Session, app: Flask, provider: Provider) -> KitaObjects:
    kita = make_kita(db, provider)
    group = make_group(db, kita)
    child = make_child(db, group)
    guardian = make_user(db, roles=[(kita, Role.PARENT)], children=[child])
    staff = make_user(db, roles=[(kita, Role.EDUCATOR)], groups=[group])
    manager = make_user(db, admin_of=provider)
    issued = invitations.create_invitation(
        db,
        actor=load_actor(db, manager),
        kita=kita,
        request=invitations.InvitationRequest(role=Role.CARETAKER),
        now=datetime.now(UTC),
        days=14,
    )
    upload = CsvImport(
        kita_id=kita.id,
        created_by_id=manager.id,
        content="Vorname;Nachname\n",
        created_at=datetime.now(UTC),
    )
    db.add(upload)
    db.commit()
    keys = app.extensions["kita"].keys
    for purpose in (ConsentPurpose.DOCUMENTATION, ConsentPurpose.PHOTOS_IN_DOCUMENTATION):
        consent.give_consent(db, actor=load_actor(db, guardian), child=child, purpose=purpose)
    entry = documentation.save_entry(
        db,
        actor=load_actor(db, staff),
        keys=keys,
        entry_id=uuid.uuid4(),
        data=documentation.EntryInput(child.id, "observation", "final", "T", "Text"),
    ).entry
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    photo, _ = photos.add_photo(
        db,
        actor=load_actor(db, staff),
        keys=keys,
        blobs=BlobStore(app.extensions["kita"].config.blob_dir),
        entry_id=entry.id,
        photo_id=uuid.uuid4(),
        data=png.getvalue(),
    )
    db.commit()
    link = next(link for link in child.guardian_links if link.user_id == guardian.id)
    membership = next(m for m in staff.memberships if m.kita_id == kita.id)
    conversation_id, conversation_attachment_id = _conversation(app, db, guardian, child)
    objects = KitaObjects(
        provider,
        kita,
        group,
        child,
        link,
        membership,
        staff,
        issued.invitation.id,
        upload.id,
        entry.id,
        photo.id,
    )
    objects.conversation_id = conversation_id
    objects.conversation_attachment_id = conversation_attachment_id
    return objects


def _conversation(
    app: Flask, db: Session, guardian: User, child: Child
) -> tuple[uuid.UUID, uuid.UUID]:
    """A conversation of the family with the group team, whose first message has a PDF."""
    state = app.extensions["kita"]
    result = conversations.start_conversation(
        db,
        actor=load_actor(db, guardian),
        keys=state.keys,
        blobs=BlobStore(state.config.blob_dir),
        translator=Translator(db, None, use_memory=False),
        draft=conversations.ConversationDraft(
            child_id=child.id,
            team=Team.GROUP,
            topic="question",
            body="Hallo, wann ist das Sommerfest?",
            uploads=[conversations.Upload("plan.pdf", b"%PDF-1.4 matrix")],
        ),
        writer_locale="de",
        now=datetime.now(UTC),
    )
    db.commit()
    attachment = db.scalars(
        select(Attachment).where(Attachment.message_id == result.message.id)
    ).one()
    return result.conversation.id, attachment.id


@pytest.fixture
def world(db: Session, app: Flask) -> World:
    own = _kita_objects(db, app, make_provider(db))
    foreign = _kita_objects(db, app, make_provider(db))
    kita, group, child = own.kita, own.group, own.child
    sibling_kita = make_kita(db, own.provider)
    other_child = make_child(db, make_group(db, sibling_kita))
    world = World(own, foreign)
    for objects in (own, foreign):
        objects.tablet_id = _make_tablet(db, objects)
    world.actors = {
        "anonymous": None,
        "parent": make_user(db, roles=[(kita, Role.PARENT)], children=[child]),
        "parent_other_kita": make_user(
            db, roles=[(sibling_kita, Role.PARENT)], children=[other_child]
        ),
        "educator": make_user(db, roles=[(kita, Role.EDUCATOR)], groups=[group]),
        "leader": make_user(db, roles=[(kita, Role.LEADER)]),
        "council": make_user(db, roles=[(kita, Role.COUNCIL), (kita, Role.PARENT)]),
        "caretaker": make_user(db, roles=[(kita, Role.CARETAKER)]),
        "admin": make_user(db, admin_of=own.provider),
        "admin_other_provider": make_user(db, admin_of=foreign.provider),
    }
    # Sent after the actors exist, so the matrix's parent is among its recipients.
    for objects in (own, foreign):
        objects.announcement_id = _announcement(app, db, objects)
        objects.attachment_id = _announcement_attachment(app, db, objects.announcement_id)
    return world


def _announcement(app: Flask, db: Session, objects: KitaObjects) -> uuid.UUID:
    """An announcement the group's educator sent to the group (a free text, untranslated)."""
    author = load_actor(db, objects.staff)
    now = datetime.now(UTC)
    draft = announcements.create_draft(
        db,
        actor=author,
        data=announcements.AnnouncementInput(
            category="information",
            source_locale="de",
            audience=announcements.Audience(group_ids=(objects.group.id,)),
            title="Sommerfest",
            body="Am Freitag feiern wir.",
        ),
        now=now,
    )
    announcements.send(db, draft, now, Translator(db, None), app.extensions["kita"].keys)
    db.commit()
    return draft.id


def _announcement_attachment(app: Flask, db: Session, announcement_id: uuid.UUID) -> uuid.UUID:
    """A PDF attached to the announcement (stored encrypted, as the compose form does)."""
    state = app.extensions["kita"]
    announcement = db.get(Announcement, announcement_id)
    assert announcement is not None
    return make_announcement_attachment(
        db, state.keys, BlobStore(state.config.blob_dir), announcement
    ).id


def _make_tablet(db: Session, objects: KitaObjects) -> uuid.UUID:
    """A tablet paired to the Kita (its device token is unknown to every actor)."""
    tablet = Tablet(
        kita_id=objects.kita.id,
        name="Tablet",
        token_hash=uuid.uuid4().bytes * 2,
        paired_by_id=objects.staff.id,
    )
    db.add(tablet)
    db.commit()
    return tablet.id


def _allowed(decision: str, actor: str, target: str) -> bool:
    """The expected decision, written independently of kita/access.py."""
    if decision == "public":
        return True
    if actor == "anonymous":
        return False
    if decision == "user":
        return True
    if decision == "tablet_staff":
        return actor in {"educator", "leader"}
    if decision == "tablet_session":
        return False
    manages_own = actor in {"leader", "admin"}
    if decision == "admin_home":
        return manages_own or actor == "admin_other_provider"
    if decision == "provider_admin":
        return actor in {"admin", "admin_other_provider"}
    if decision == "provider_settings":
        return (actor, target) in {("admin", "own"), ("admin_other_provider", "foreign")}
    if decision in {"doc_staff", "doc_family"}:
        readers = {"educator", "leader"} | ({"parent"} if decision == "doc_family" else set())
        return target == "own" and actor in readers
    # Only the leaders of the child's Kita (consents filed on paper).
    if decision == "doc_leader":
        return target == "own" and actor == "leader"
    if decision in {"conv_team", "conv_staff"}:
        team = {"educator", "leader"} | ({"parent"} if decision == "conv_team" else set())
        return target == "own" and actor in team
    # Only the child's own parents (the family's page of the child).
    if decision == "doc_guardian":
        return target == "own" and actor == "parent"
    if decision == "announce_home":
        return actor in {"educator", "leader", "admin", "admin_other_provider"}
    if decision == "announce":
        return (target == "own" and actor in {"educator", "leader", "admin"}) or (
            target == "foreign" and actor == "admin_other_provider"
        )
    if decision == "recipient":
        return target == "own" and actor == "parent"
    if decision == "announcement_reader":
        return (target == "own" and actor in {"parent", "educator", "leader", "admin"}) or (
            target == "foreign" and actor == "admin_other_provider"
        )
    if decision == "manage":
        return (target == "own" and manages_own) or (
            target == "foreign" and actor == "admin_other_provider"
        )
    raise AssertionError(f"unknown decision {decision}")


def test_every_route_has_a_decision_and_a_guard(app: Flask) -> None:
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert endpoints - EXPECTED.keys() == set(), "routes without a decision in EXPECTED"
    assert EXPECTED.keys() - endpoints == set(), "decisions for routes that do not exist"
    for endpoint, view in app.view_functions.items():
        if endpoint != "static":
            assert getattr(view, "kita_guard", None), f"{endpoint} has no guard"


def _client_for(app: Flask, user: User | None) -> FlaskClient:
    client = app.test_client()
    if user is not None:
        login_as(client, app, user)
    return client


def _check(
    client: FlaskClient,
    method: str,
    path: str,
    token: str,
    allowed: bool,
    anonymous: bool,
    public: bool = False,
) -> str | None:
    data = {"csrf_token": token} if method == "POST" else None
    with client.open(path, method=method, data=data) as response:
        status = response.status_code
        location = response.headers.get("Location", "")
    if status >= 500:
        return f"{status} (server error)"
    # Public pages may send visitors to the login themselves (logout, the code step, "/").
    to_login = status == 302 and "/login" in location and not public
    if allowed:
        if status == 404 or to_login:
            return f"{status} {location} but expected access"
    elif anonymous:
        # The JSON API answers 401 instead of redirecting to the login page.
        if not (to_login or (path.startswith("/api/") and status == 401)):
            return f"{status} but expected a redirect to the login"
    elif status != 404:
        return f"{status} but expected 404"
    return None


@pytest.mark.parametrize("endpoint", sorted(EXPECTED))
def test_matrix(app: Flask, world: World, endpoint: str) -> None:
    rules = [rule for rule in app.url_map.iter_rules() if rule.endpoint == endpoint]
    assert rules, f"{endpoint} does not exist"
    failures: list[str] = []
    clients: dict[str, tuple[FlaskClient, str]] = {}
    for actor in ACTORS:
        client = _client_for(app, world.actors[actor])
        clients[actor] = (client, csrf_token(client, "/offline"))
    targets: list[tuple[str, KitaObjects]] = [("own", world.own), ("foreign", world.foreign)]
    for rule in rules:
        methods = sorted((rule.methods or set()) & {"GET", "POST"})
        if not rule.arguments or rule.arguments <= {"token", "filename"}:
            targets = targets[:1]
        for target_name, objects in targets:
            values = {name: objects.url_values()[name] for name in rule.arguments}
            with app.test_request_context():
                path = url_for(endpoint, **values)
            for actor in ACTORS:
                client, token = clients[actor]
                allowed = _allowed(EXPECTED[endpoint], actor, target_name)
                for method in methods:
                    problem = _check(
                        client,
                        method,
                        path,
                        token,
                        allowed,
                        actor == "anonymous",
                        public=EXPECTED[endpoint] == "public",
                    )
                    if problem:
                        failures.append(f"{actor:<22} {method:<4} {target_name:<7} {problem}")
    assert failures == [], f"{endpoint}:\n" + "\n".join(failures)


def test_matrix_would_catch_a_leaky_route(app: Flask, world: World) -> None:
    """A deliberately wrong expectation must fail: the matrix is not vacuous."""
    client = _client_for(app, world.actors["educator"])
    token = csrf_token(client, "/offline")
    with app.test_request_context():
        path = url_for("admin.children", kita_id=world.own.kita.id)
    assert _check(client, "GET", path, token, allowed=True, anonymous=False) is not None
