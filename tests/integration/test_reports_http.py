"""Reports over HTTP: the portfolio PDF (read back with pdftotext), the hand-over page with its
confirmation, and the family's data export as JSON and PDF. Outsiders get 404 everywhere, and
every download leaves an audit row."""

from __future__ import annotations

import shutil
import subprocess
import unicodedata
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from kita.blobs import BlobStore
from kita.crypto import KeyService
from kita.models.audit import AuditEvent
from kita.models.organisation import Child
from kita.services import consent, documentation, lifecycle
from tests.conftest import post_form
from tests.factories import make_user
from tests.unit.test_documentation import World, act, build_world
from tests.unit.test_lifecycle import count, document, write_entry

pytestmark = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="poppler-utils missing: run `make system-deps`"
)

GERMAN = "Das Kind baut einen Turm aus Holzklötzen und zählt die Stücke: Größe, Maß, Straße."
TURKISH = "Çocuk ğüşıöç İstanbul'da oynuyor"
ARABIC = "الطفل يلعب في الحديقة"
UKRAINIAN = "Дитина грається у саду: їжак, ґанок, єнот"
SECRET = "Interne Notiz über die Familie"


def pdftotext(pdf: bytes) -> str:
    done = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True)
    return done.stdout.decode("utf-8")


def normalise(text: str) -> str:
    """Comparable to the source: Arabic presentation forms folded, no format characters, no
    whitespace (pdftotext breaks lines where the layout does)."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(c for c in folded if not c.isspace() and unicodedata.category(c) != "Cf")


@pytest.fixture
def keys(app: Flask) -> KeyService:
    return app.extensions["kita"].keys  # type: ignore[no-any-return]


@pytest.fixture
def blobs(app: Flask) -> BlobStore:
    return BlobStore(app.extensions["kita"].config.blob_dir)


@pytest.fixture
def world(db: Session, keys: KeyService, blobs: BlobStore) -> World:
    """The world's child documented in four languages (shared), plus an unshared note."""
    w = build_world(db)
    document(
        db,
        keys,
        blobs,
        w.educator,
        w.child,
        w.parent,
        texts=(GERMAN, TURKISH, ARABIC, UKRAINIAN),
        unshared_text=SECRET,
    )
    return w


def portfolio_url(child: Child) -> str:
    return f"/children/{child.id}/portfolio.pdf"


def exports(db: Session, actor_id: uuid.UUID) -> list[AuditEvent]:
    db.rollback()
    return list(
        db.scalars(
            select(AuditEvent).where(
                AuditEvent.actor_id == actor_id, AuditEvent.action == "documentation.export"
            )
        )
    )


def assert_download(response: Any, mimetype: str) -> None:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == mimetype
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["Cache-Control"] == "no-store"


# --- portfolio -------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["parent", "educator", "leader"])
def test_portfolio_pdf_holds_the_shared_entries_in_every_script(
    client: FlaskClient, login: Any, db: Session, world: World, who: str
) -> None:
    user = getattr(world, who)
    login(user)
    response = client.get(portfolio_url(world.child))
    assert_download(response, "application/pdf")
    assert response.data.startswith(b"%PDF")
    text = normalise(pdftotext(response.data))
    for sample in (GERMAN, TURKISH, ARABIC, UKRAINIAN, world.child.full_name, "Erika Educator"):
        assert normalise(sample) in text
    assert normalise(SECRET) not in text, "unshared entries and drafts stay out"
    assert world.child.first_name not in response.headers["Content-Disposition"]
    [event] = exports(db, user.id)
    assert (event.object_type, event.object_id) == ("child", str(world.child.id))
    assert event.detail == "portfolio entries=4"


@pytest.mark.parametrize(
    "who", ["other_parent", "other_educator", "council", "caretaker", "admin", "other_admin"]
)
def test_portfolio_is_404_for_everybody_else(
    client: FlaskClient, login: Any, db: Session, world: World, who: str
) -> None:
    user = getattr(world, who)
    login(user)
    response = client.get(portfolio_url(world.child))
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert exports(db, user.id) == []


def test_portfolio_for_a_provider_admin_needs_break_glass(
    client: FlaskClient, login: Any, db: Session, keys: KeyService, world: World
) -> None:
    login(world.admin)
    assert client.get(portfolio_url(world.child)).status_code == 404
    documentation.break_glass(
        db,
        actor=act(db, world.admin),
        keys=keys,
        child=world.child,
        reason="Beschwerde der Eltern über einen Eintrag prüfen",
    )
    db.commit()
    assert_download(client.get(portfolio_url(world.child)), "application/pdf")
    [event] = exports(db, world.admin.id)
    assert event.detail.startswith("break_glass grant=")


def test_portfolio_for_an_unknown_child_or_a_bad_id_is_404(
    client: FlaskClient, login: Any, world: World
) -> None:
    login(world.leader)
    assert client.get(f"/children/{uuid.uuid4()}/portfolio.pdf").status_code == 404
    assert client.get("/children/not-a-uuid/portfolio.pdf").status_code == 404


def test_anonymous_visitors_are_sent_to_the_login(client: FlaskClient, world: World) -> None:
    for path in (portfolio_url(world.child), "/account/export.json", "/account/export.pdf"):
        response = client.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"]


# --- hand-over -------------------------------------------------------------------------------


def handover_url(child: Child) -> str:
    return f"/children/{child.id}/handover"


def test_handover_needs_the_confirmation_and_is_recorded_once(
    client: FlaskClient, login: Any, db: Session, world: World
) -> None:
    w = world
    w.child.leave_date = date.today() + timedelta(days=10)
    db.commit()
    login(w.educator)
    page = client.get(handover_url(w.child))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert portfolio_url(w.child) in html and 'name="confirm"' in html
    refused = post_form(client, handover_url(w.child), {}, token_from=handover_url(w.child))
    assert refused.status_code == 422
    assert lifecycle.handed_over_at(db, w.child.id) is None
    done = post_form(
        client, handover_url(w.child), {"confirm": "yes"}, token_from=handover_url(w.child)
    )
    assert done.status_code == 302 and done.headers["Location"].endswith(handover_url(w.child))
    db.rollback()
    recorded = lifecycle.handed_over_at(db, w.child.id)
    assert recorded is not None and recorded <= datetime.now(UTC)
    after = client.get(handover_url(w.child)).get_data(as_text=True)
    assert 'name="confirm"' not in after and "Erika Educator" in after
    login(w.leader)
    again = client.get(handover_url(w.child))
    assert again.status_code == 200
    assert count(db, AuditEvent, AuditEvent.action == lifecycle.HANDED_OVER_ACTION) == 1


def test_handover_without_a_leaving_date_is_refused(
    client: FlaskClient, login: Any, db: Session, world: World
) -> None:
    login(world.leader)
    refused = post_form(
        client, handover_url(world.child), {"confirm": "yes"}, token_from=handover_url(world.child)
    )
    assert refused.status_code == 422
    assert count(db, AuditEvent, AuditEvent.action == lifecycle.HANDED_OVER_ACTION) == 0


@pytest.mark.parametrize(
    "who", ["parent", "other_educator", "other_leader", "council", "caretaker", "admin"]
)
def test_handover_is_404_for_everybody_but_the_childs_staff(
    client: FlaskClient, login: Any, db: Session, world: World, who: str
) -> None:
    world.child.leave_date = date.today()
    db.commit()
    login(getattr(world, who))
    assert client.get(handover_url(world.child)).status_code == 404
    response = post_form(client, handover_url(world.child), {"confirm": "yes"})
    assert response.status_code == 404
    assert count(db, AuditEvent, AuditEvent.action == lifecycle.HANDED_OVER_ACTION) == 0


# --- family export ---------------------------------------------------------------------------


def test_export_json_holds_the_shared_entries_and_not_the_others(
    client: FlaskClient, login: Any, db: Session, keys: KeyService, world: World
) -> None:
    w = world
    consent.give_consent(
        db, actor=act(db, w.other_parent), child=w.other_child, purpose="documentation"
    )
    write_entry(db, keys, w.other_educator, w.other_child, text="Fremdes Kind", share=True)
    login(w.parent)
    response = client.get("/account/export.json")
    assert_download(response, "application/json")
    data = response.get_json(force=True)
    assert data["format"] == "kita.family-export" and data["version"] == 1
    assert data["account"]["email"] == w.parent.email
    [child] = data["children"]
    assert sorted(entry["text"] for entry in child["documentation"]) == sorted(
        [GERMAN, TURKISH, ARABIC, UKRAINIAN]
    )
    body = response.get_data(as_text=True)
    assert SECRET not in body and "Fremdes Kind" not in body
    assert str(w.other_child.id) not in body
    assert sum(len(entry["photos"]) for entry in child["documentation"]) == 1
    db.rollback()
    actions = sorted(
        db.scalars(select(AuditEvent.action).where(AuditEvent.actor_id == w.parent.id)).all()
    )
    assert actions.count("account.exported") == 1
    assert actions.count("documentation.export") == 1


def test_export_pdf_is_in_the_parents_language_and_audited(
    client: FlaskClient, login: Any, db: Session, world: World
) -> None:
    login(world.parent)
    response = client.get("/account/export.pdf")
    assert_download(response, "application/pdf")
    text = normalise(pdftotext(response.data))
    for sample in (GERMAN, ARABIC, UKRAINIAN, world.parent.email, world.child.first_name):
        assert normalise(sample) in text
    assert normalise(SECRET) not in text
    [event] = exports(db, world.parent.id)
    assert event.detail.startswith("family_export pdf")


def test_export_of_a_person_without_children_has_their_account_only(
    client: FlaskClient, login: Any, world: World
) -> None:
    login(world.council)
    data = client.get("/account/export.json").get_json(force=True)
    assert data["children"] == [] and data["account"]["email"] == world.council.email
    assert client.get("/account/export").status_code == 200


def test_each_family_exports_only_its_own_children(
    client: FlaskClient, login: Any, db: Session, world: World
) -> None:
    stranger = make_user(db)
    login(stranger)
    body = client.get("/account/export.json").get_data(as_text=True)
    assert str(world.child.id) not in body and GERMAN not in body
