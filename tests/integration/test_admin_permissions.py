"""Who may use the administration: every Kita-scoped page and action answers 404 to a leader of
another Kita, an admin of another provider, and the Kita's own educators, caretakers and parents,
and none of their POSTs writes anything."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.access import load_actor
from kita.models.accounts import Invitation, Membership, Role, User
from kita.models.audit import AuditEvent
from kita.models.organisation import Child, Group, GuardianLink, Kita
from kita.services import invitations
from tests.conftest import csrf_token
from tests.factories import make_child, make_group, make_kita, make_provider, make_user


@dataclass
class World:
    kita: Kita
    other_kita: Kita
    group: Group
    child: Child
    educator: User
    parent: User
    caretaker: User
    leader: User
    other_leader: User
    other_admin: User
    membership: Membership
    link: GuardianLink
    invitation: Invitation


@pytest.fixture
def world(db: Session) -> World:
    provider = make_provider(db)
    kita = make_kita(db, provider)
    other_kita = make_kita(db, provider)  # same provider: a leader there is still an outsider
    group = make_group(db, kita)
    child = make_child(db, group)
    educator = make_user(db, roles=[(kita, Role.EDUCATOR)], groups=[group])
    parent = make_user(db, roles=[(kita, Role.PARENT)], children=[child])
    leader = make_user(db, roles=[(kita, Role.LEADER)])
    issued = invitations.create_invitation(
        db,
        actor=load_actor(db, leader),
        kita=kita,
        request=invitations.InvitationRequest(role=Role.CARETAKER),
        now=datetime.now(UTC),
        days=14,
    )
    db.commit()
    return World(
        kita=kita,
        other_kita=other_kita,
        group=group,
        child=child,
        educator=educator,
        parent=parent,
        caretaker=make_user(db, roles=[(kita, Role.CARETAKER)]),
        leader=leader,
        other_leader=make_user(db, roles=[(other_kita, Role.LEADER)]),
        other_admin=make_user(db, admin_of=make_provider(db)),
        membership=db.scalars(select(Membership).where(Membership.user_id == educator.id)).one(),
        link=db.scalars(select(GuardianLink).where(GuardianLink.user_id == parent.id)).one(),
        invitation=issued.invitation,
    )


def requests(w: World) -> list[tuple[str, str, dict[str, Any]]]:
    k = f"/admin/kitas/{w.kita.id}"
    child = f"{k}/children/{w.child.id}"
    gets = [
        k,
        f"{k}/settings",
        f"{k}/groups",
        f"{k}/groups/{w.group.id}",
        f"{k}/staff",
        f"{k}/staff/{w.membership.id}/groups",
        f"{k}/staff/invite",
        f"{k}/children",
        f"{k}/children/new",
        child,
        f"{child}/edit",
        f"{child}/invite",
        f"{k}/invitations",
    ]
    # The other Kita's URL with this Kita's objects must not work either.
    o = f"/admin/kitas/{w.other_kita.id}"
    gets += [f"{o}/groups/{w.group.id}", f"{o}/children/{w.child.id}"]
    posts: list[tuple[str, dict[str, Any]]] = [
        (f"{k}/settings", {"name": "Gekapert", "default_locale": "de"}),
        (f"{k}/groups", {"name": "Neu"}),
        (f"{k}/groups/{w.group.id}", {"name": "Umbenannt"}),
        (f"{k}/groups/{w.group.id}/delete", {"confirm": "yes"}),
        (f"{k}/staff/{w.membership.id}/groups", {"groups": []}),
        (f"{k}/staff/{w.membership.id}/remove", {"confirm": "yes"}),
        (f"{k}/accounts/{w.educator.id}/active", {"active": "0", "confirm": "yes"}),
        (f"{k}/staff/invite", {"role": "leader"}),
        (f"{k}/children/new", {"first_name": "A", "last_name": "B"}),
        (f"{child}/edit", {"first_name": "A", "last_name": "B"}),
        (f"{child}/guardians/{w.link.id}", {"relation": "other"}),
        (f"{child}/guardians/{w.link.id}/remove", {"confirm": "yes"}),
        (f"{child}/invite", {"relation": "mother"}),
        (f"{k}/invitations/{w.invitation.id}/revoke", {"confirm": "yes"}),
        (f"{k}/invitations/group-sheet", {"group_id": str(w.group.id)}),
        (f"{o}/children/{w.child.id}/edit", {"first_name": "A", "last_name": "B"}),
        (f"{o}/staff/{w.membership.id}/remove", {"confirm": "yes"}),
    ]
    return [("GET", path, {}) for path in gets] + [("POST", path, data) for path, data in posts]


def snapshot(db: Session) -> tuple[object, ...]:
    db.rollback()  # see what the requests committed
    counts = tuple(
        db.scalar(select(func.count()).select_from(model))
        for model in (Group, Child, Invitation, Membership, GuardianLink, AuditEvent)
    )
    names = tuple(db.scalars(select(Group.name).order_by(Group.name)))
    states = tuple(
        db.scalars(select(Invitation.revoked_at).order_by(Invitation.id)).all()
        + db.scalars(select(User.is_active).order_by(User.id)).all()
    )
    kitas = tuple(db.scalars(select(Kita.name).order_by(Kita.name)))
    return counts, names, states, kitas


@pytest.mark.parametrize(
    "outsider", ["other_leader", "other_admin", "educator", "caretaker", "parent"]
)
def test_outsiders_get_404_and_change_nothing(
    client: FlaskClient, db: Session, login: Any, world: World, outsider: str
) -> None:
    before = snapshot(db)
    login(getattr(world, outsider))
    token = csrf_token(client, "/login")
    answers = {}
    for method, path, data in requests(world):
        if method == "GET":
            answers[(method, path)] = client.get(path).status_code
        else:
            answers[(method, path)] = client.post(
                path, data={**data, "csrf_token": token}
            ).status_code
    assert {key: status for key, status in answers.items() if status != 404} == {}
    assert snapshot(db) == before


@pytest.mark.parametrize("member", ["educator", "caretaker", "parent"])
def test_administration_start_page_is_for_managers(
    client: FlaskClient, login: Any, world: World, member: str
) -> None:
    login(getattr(world, member))
    assert client.get("/admin/").status_code == 404
    assert client.get("/admin/kitas/new").status_code == 404


def test_only_provider_admins_create_kitas(
    client: FlaskClient, db: Session, login: Any, world: World
) -> None:
    login(world.leader)
    assert client.get("/admin/kitas/new").status_code == 404
    token = csrf_token(client, "/admin/")
    response = client.post(
        "/admin/kitas/new", data={"name": "Neu", "default_locale": "de", "csrf_token": token}
    )
    assert response.status_code == 404
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Kita)) == 2


def test_anonymous_visitors_are_sent_to_the_login(client: FlaskClient, world: World) -> None:
    response = client.get(f"/admin/kitas/{world.kita.id}/children")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_the_leader_reaches_every_page(client: FlaskClient, login: Any, world: World) -> None:
    login(world.leader)
    for method, path, _data in requests(world):
        if method == "GET" and "/settings" not in path and str(world.other_kita.id) not in path:
            assert client.get(path).status_code == 200, path
