"""Announcements end to end: audience and access, phrasebook and machine translation through a
local LibreTranslate-compatible server, the engine down and the retry job, the send as one
transaction, scheduling, edit and recall, encrypted attachments and bad input."""

from __future__ import annotations

import io
import re
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from kita.access import load_actor
from kita.blobs import BlobStore
from kita.config import KitaConfig
from kita.models.accounts import Role, User
from kita.models.messaging import (
    Announcement,
    AnnouncementRecipient,
    AnnouncementStatus,
    AnnouncementTranslation,
    Attachment,
    DeliveryStatus,
    EmailDelivery,
    PushDelivery,
    TranslationStatus,
)
from kita.models.organisation import Child, Group, Kita
from kita.services import announcements
from kita.services.announcements import AnnouncementInput, Audience
from kita.services.demo import load_demo, load_demo_announcements
from kita.services.translation import Translator, translator_for
from kita.translation import phrasebook
from kita.worker import WorkerContext, default_jobs
from tests.conftest import post_form
from tests.factories import make_child, make_group, make_kita, make_provider, make_user
from tests.libretranslate_fake import FakeLibreTranslate

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture
def config(config: KitaConfig, libretranslate: FakeLibreTranslate) -> KitaConfig:
    """Every test here runs with a (fake) LibreTranslate server configured."""
    return replace(
        config, translation_provider="libretranslate", libretranslate_url=libretranslate.url
    )


@dataclass
class City:
    kita: Kita
    kita2: Kita
    foreign_kita: Kita
    g1: Group
    g2: Group
    g3: Group
    leader: User
    educator: User
    admin: User
    parent_de: User
    parent_tr: User
    parent_ar: User
    parent_uk: User
    parent_kita2: User
    inactive: User
    left_parent: User
    child_g1: Child
    child_g2: Child


@pytest.fixture
def city(db: Session) -> City:
    """Kita 1 (groups 1 and 2) and Kita 2 (group 3) of one provider, and another provider's
    Kita. The Turkish parent has children in group 1, group 2 and Kita 2."""
    provider = make_provider(db)
    kita, kita2 = make_kita(db, provider), make_kita(db, provider)
    foreign_kita = make_kita(db, make_provider(db))
    g1, g2, g3 = make_group(db, kita), make_group(db, kita), make_group(db, kita2)
    c_de, c_tr1, c_tr2, c_ar, c_uk = (make_child(db, g) for g in (g1, g1, g2, g2, g1))
    c_tr3, c_k2 = make_child(db, g3), make_child(db, g3)
    c_inactive, c_left = make_child(db, g1), make_child(db, g1)
    c_left.leave_date = date.today() - timedelta(days=10)
    db.commit()

    def parent(kitas: list[Kita], children: list[Child], locale: str | None, **kw: Any) -> User:
        return make_user(
            db, roles=[(k, Role.PARENT) for k in kitas], children=children, locale=locale, **kw
        )

    return City(
        kita=kita,
        kita2=kita2,
        foreign_kita=foreign_kita,
        g1=g1,
        g2=g2,
        g3=g3,
        leader=make_user(db, roles=[(kita, Role.LEADER)], name="Leitung"),
        educator=make_user(db, roles=[(kita, Role.EDUCATOR)], groups=[g1]),
        admin=make_user(db, admin_of=provider),
        parent_de=parent([kita], [c_de], None, name="Familie Deutsch"),
        parent_tr=parent([kita, kita2], [c_tr1, c_tr2, c_tr3], "tr", name="Aile Yilmaz"),
        parent_ar=parent([kita], [c_ar], "ar", name="Familie Haddad"),
        parent_uk=parent([kita], [c_uk], "uk", name="Rodyna Shevchenko"),
        parent_kita2=parent([kita2], [c_k2], "pl", name="Rodzina Nowak"),
        inactive=parent([kita], [c_inactive], "ro", active=False),
        left_parent=parent([kita], [c_left], "bg"),
        child_g1=c_de,
        child_g2=c_ar,
    )


def _now() -> datetime:
    return datetime.now(UTC)


def _free_text(audience: Audience, **kw: Any) -> AnnouncementInput:
    values: dict[str, Any] = {
        "category": "information",
        "source_locale": "de",
        "audience": audience,
        "title": "Elternabend",
        "body": "Wir laden Sie herzlich ein.",
    }
    values.update(kw)
    return AnnouncementInput(**values)


def _draft(db: Session, user: User, data: AnnouncementInput) -> Announcement:
    announcement = announcements.create_draft(db, actor=load_actor(db, user), data=data, now=_now())
    db.commit()
    return announcement


def _send(db: Session, config: KitaConfig, announcement: Announcement) -> None:
    announcements.send(db, announcement, _now(), translator_for(db, config))
    db.commit()


def _recipients(db: Session, announcement_id: uuid.UUID) -> dict[uuid.UUID, str]:
    db.rollback()
    return dict(
        db.execute(
            select(AnnouncementRecipient.user_id, AnnouncementRecipient.locale).where(
                AnnouncementRecipient.announcement_id == announcement_id
            )
        ).all()
    )


def _translations(db: Session, announcement_id: uuid.UUID) -> dict[str, AnnouncementTranslation]:
    db.rollback()
    db.expire_all()
    return {
        row.locale: row
        for row in db.scalars(
            select(AnnouncementTranslation).where(
                AnnouncementTranslation.announcement_id == announcement_id
            )
        )
    }


def _count(db: Session, model: Any, **where: Any) -> int:
    query = select(func.count()).select_from(model)
    for name, value in where.items():
        query = query.where(getattr(model, name) == value)
    return int(db.scalar(query) or 0)


def _compose(**fields: Any) -> dict[str, Any]:
    form: dict[str, Any] = {"mode": "free", "source_locale": "de", "category": "information"}
    form.update(fields)
    return form


NEW = "/messages/announcements/new"


def _post(client: FlaskClient, path: str, data: dict[str, Any], **kwargs: Any) -> Any:
    response = post_form(client, path, data, token_from="/offline", **kwargs)
    # Werkzeug's test client spools big multipart bodies to a temporary file and leaves it
    # open; close it here rather than in the garbage collector (a ResourceWarning).
    response.request.environ["wsgi.input"].close()
    return response


# --- audience --------------------------------------------------------------------------------


def test_whole_kita_reaches_every_guardian_once(
    db: Session, city: City, config: KitaConfig
) -> None:
    draft = _draft(db, city.leader, _free_text(Audience(kita_ids=(city.kita.id,))))
    _send(db, config, draft)
    # One row for the Turkish parent despite children in two groups; no inactive account,
    # no family whose child has left, nobody of Kita 2 only.
    assert _recipients(db, draft.id) == {
        city.parent_de.id: "de",
        city.parent_tr.id: "tr",
        city.parent_ar.id: "ar",
        city.parent_uk.id: "uk",
    }
    assert draft.kita_id == city.kita.id


def test_groups_and_families_combined_still_one_row_per_parent(
    db: Session, city: City, config: KitaConfig
) -> None:
    audience = Audience(group_ids=(city.g1.id, city.g2.id), child_ids=(city.child_g2.id,))
    draft = _draft(db, city.leader, _free_text(audience))
    _send(db, config, draft)
    recipients = _recipients(db, draft.id)
    assert len(recipients) == 4
    assert recipients[city.parent_tr.id] == "tr"


def test_provider_admin_writes_to_several_kitas(
    db: Session, city: City, config: KitaConfig
) -> None:
    draft = _draft(db, city.admin, _free_text(Audience(kita_ids=(city.kita.id, city.kita2.id))))
    _send(db, config, draft)
    assert draft.kita_id is None
    recipients = _recipients(db, draft.id)
    assert set(recipients) == {
        city.parent_de.id,
        city.parent_tr.id,
        city.parent_ar.id,
        city.parent_uk.id,
        city.parent_kita2.id,
    }
    # The parent's language wins; without a setting the Kita's default (German).
    assert recipients[city.parent_kita2.id] == "pl"
    assert recipients[city.parent_de.id] == "de"


@pytest.mark.parametrize(
    ("actor", "field", "target"),
    [
        ("educator", "group", "g2"),  # another group of the same Kita
        ("educator", "kita", "kita"),  # educators never write to the whole Kita
        ("educator", "child", "child_g2"),  # a family of another group
        ("leader", "group", "g3"),  # a group of another Kita
        ("leader", "kita", "kita2"),
        ("admin", "kita", "foreign_kita"),  # another provider's Kita
    ],
)
def test_audience_outside_the_actors_reach_is_refused(
    client: FlaskClient, login: Any, db: Session, city: City, actor: str, field: str, target: str
) -> None:
    login(getattr(city, actor))
    target_id = getattr(city, target).id
    response = _post(client, NEW, _compose(title="Hallo", **{field: str(target_id)}))
    assert response.status_code == 422
    assert "Please choose the recipients among the offered" in response.get_data(as_text=True)
    db.rollback()
    assert _count(db, Announcement) == 0


def test_educator_writes_to_own_group(
    client: FlaskClient, login: Any, db: Session, city: City
) -> None:
    login(city.educator)
    response = _post(client, NEW, _compose(title="Ausflug", group=str(city.g1.id)))
    assert response.status_code == 302
    db.rollback()
    announcement = db.scalars(select(Announcement)).one()
    assert announcement.author_id == city.educator.id
    assert announcement.status is AnnouncementStatus.DRAFT
    assert response.headers["Location"].endswith(
        f"/messages/announcements/{announcement.id}/preview"
    )


def test_parent_reaches_no_staff_page(
    client: FlaskClient, login: Any, db: Session, city: City, config: KitaConfig
) -> None:
    draft = _draft(db, city.leader, _free_text(Audience(kita_ids=(city.kita.id,))))
    _send(db, config, draft)
    login(city.parent_de)
    base = f"/messages/announcements/{draft.id}"
    for path in ("/messages/announcements/", NEW, base, f"{base}/edit", f"{base}/preview"):
        assert client.get(path).status_code == 404, path
    response = _post(client, f"{base}/recall", {"confirm": "yes"})
    assert response.status_code == 404
    response = _post(client, NEW, _compose(title="x", kita=str(city.kita.id)))
    assert response.status_code == 404
    db.rollback()
    assert _count(db, Announcement) == 1
    assert db.get(Announcement, draft.id).status is AnnouncementStatus.SENT  # type: ignore[union-attr]


def test_educator_does_not_see_the_leaders_whole_kita_message(
    client: FlaskClient, login: Any, db: Session, city: City
) -> None:
    draft = _draft(
        db, city.leader, _free_text(Audience(kita_ids=(city.kita.id,)), title="Nur Leitung")
    )
    login(city.educator)
    assert client.get(f"/messages/announcements/{draft.id}").status_code == 404
    assert "Nur Leitung" not in client.get("/messages/announcements/").get_data(as_text=True)


# --- translation -----------------------------------------------------------------------------


def test_phrasebook_message_reaches_tr_ar_uk_without_an_engine(
    client: FlaskClient, login: Any, db: Session, city: City, libretranslate: FakeLibreTranslate
) -> None:
    login(city.leader)
    day = (date.today() + timedelta(days=3)).isoformat()
    response = _post(
        client,
        NEW,
        {
            "mode": "phrase",
            "phrase_key": "closed_on_date",
            "param_date": day,
            "source_locale": "de",
            "kita": str(city.kita.id),
        },
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    preview = client.get(response.headers["Location"])
    assert preview.status_code == 200
    db.rollback()
    announcement = db.scalars(select(Announcement)).one()
    assert announcement.category.value == "closure"  # the phrase's own category
    base = f"/messages/announcements/{announcement.id}"
    assert _post(client, f"{base}/send", {"confirm": "yes"}).status_code == 302
    rows = _translations(db, announcement.id)
    for locale in ("tr", "ar", "uk", "de"):
        expected = phrasebook.render("closed_on_date", {"date": day}, locale)
        assert rows[locale].status is TranslationStatus.PHRASEBOOK
        assert (rows[locale].title, rows[locale].body) == (expected.title, expected.body)
    assert rows["tr"].body != rows["de"].body
    assert libretranslate.calls == 0
    assert set(_recipients(db, announcement.id).values()) == {"de", "tr", "ar", "uk"}


def test_free_text_is_translated_once_and_then_comes_from_memory(
    db: Session, city: City, config: KitaConfig, libretranslate: FakeLibreTranslate
) -> None:
    first = _draft(db, city.leader, _free_text(Audience(kita_ids=(city.kita.id,))))
    _send(db, config, first)
    rows = _translations(db, first.id)
    assert rows["tr"].status is TranslationStatus.MACHINE
    assert (rows["tr"].title, rows["tr"].body) == (
        "[tr] Elternabend",
        "[tr] Wir laden Sie herzlich ein.",
    )
    assert rows["ar"].title == "[ar] Elternabend"
    assert rows["de"].status is TranslationStatus.ORIGINAL
    calls = libretranslate.calls
    assert calls >= 3  # tr, ar, uk
    second = _draft(db, city.leader, _free_text(Audience(kita_ids=(city.kita.id,))))
    _send(db, config, second)
    rows = _translations(db, second.id)
    assert rows["uk"].status is TranslationStatus.MEMORY
    assert rows["uk"].body == "[uk] Wir laden Sie herzlich ein."
    assert libretranslate.calls == calls


def test_preview_shows_back_translation_and_a_correction_wins_later(
    client: FlaskClient,
    login: Any,
    db: Session,
    city: City,
    config: KitaConfig,
    libretranslate: FakeLibreTranslate,
) -> None:
    libretranslate.translations[("[tr] Elternabend", "de")] = "Elternversammlung"
    draft = _draft(db, city.leader, _free_text(Audience(group_ids=(city.g1.id,))))
    login(city.leader)
    base = f"/messages/announcements/{draft.id}/preview"
    page = client.get(f"{base}?locale=tr").get_data(as_text=True)
    assert "[tr] Wir laden Sie herzlich ein." in page
    assert "Elternversammlung" in page  # the back-translation into German
    response = _post(
        client,
        base,
        {"locale": "tr", "title": "Veli toplantısı", "body": "Sizi davet ediyoruz."},
    )
    assert response.status_code == 302
    row = _translations(db, draft.id)["tr"]
    assert (row.status, row.title, row.corrected_by_id) == (
        TranslationStatus.CORRECTED,
        "Veli toplantısı",
        city.leader.id,
    )
    # The next message with the same text uses the correction, without the engine.
    calls = libretranslate.calls
    later = _draft(db, city.leader, _free_text(Audience(group_ids=(city.g1.id,))))
    _send(db, config, later)
    row = _translations(db, later.id)["tr"]
    assert (row.status, row.body) == (TranslationStatus.CORRECTED, "Sizi davet ediyoruz.")
    assert libretranslate.calls == calls


def test_phrasebook_text_cannot_be_corrected(
    client: FlaskClient, login: Any, db: Session, city: City
) -> None:
    data = AnnouncementInput(
        category="health",
        source_locale="de",
        audience=Audience(group_ids=(city.g1.id,)),
        phrase_key="head_lice",
    )
    draft = _draft(db, city.leader, data)
    login(city.leader)
    base = f"/messages/announcements/{draft.id}/preview"
    assert client.get(base).status_code == 200
    response = _post(client, base, {"locale": "tr", "title": "x", "body": "y"})
    assert response.status_code == 422
    assert _translations(db, draft.id)["tr"].status is TranslationStatus.PHRASEBOOK


def test_engine_down_delivers_the_original_and_the_job_retries(
    app: Flask,
    client: FlaskClient,
    login: Any,
    db: Session,
    city: City,
    config: KitaConfig,
    libretranslate: FakeLibreTranslate,
) -> None:
    libretranslate.down = True
    draft = _draft(db, city.leader, _free_text(Audience(kita_ids=(city.kita.id,))))
    _send(db, config, draft)
    rows = _translations(db, draft.id)
    assert rows["tr"].status is TranslationStatus.PENDING
    assert (rows["tr"].title, rows["tr"].body) == ("Elternabend", "Wir laden Sie herzlich ein.")
    assert rows["tr"].attempts == 1
    assert len(_recipients(db, draft.id)) == 4  # delivered all the same
    affected = announcements.untranslated_recipients(db, db.get(Announcement, draft.id))  # type: ignore[arg-type]
    assert {(p.name, p.locale) for p in affected} == {
        ("Aile Yilmaz", "tr"),
        ("Familie Haddad", "ar"),
        ("Rodyna Shevchenko", "uk"),
    }
    login(city.leader)
    page = client.get(f"/messages/announcements/{draft.id}").get_data(as_text=True)
    assert "Aile Yilmaz" in page and "Familie Deutsch" not in page

    # Still down: the job counts another attempt and waits longer.
    job = next(j for j in default_jobs() if j.name == "translations.retry")
    context = WorkerContext(config, app.extensions["kita"].database, app.extensions["kita"].keys)
    _age_translations(db, draft.id)
    assert job.run(context) == 0
    assert _translations(db, draft.id)["tr"].attempts == 2
    # Back up: the next run translates.
    libretranslate.down = False
    assert job.run(context) == 0  # the pause after two failures has not passed yet
    _age_translations(db, draft.id)
    assert job.run(context) == 3
    rows = _translations(db, draft.id)
    assert rows["tr"].status is TranslationStatus.MACHINE
    assert rows["ar"].body == "[ar] Wir laden Sie herzlich ein."
    assert announcements.untranslated_recipients(db, db.get(Announcement, draft.id)) == []  # type: ignore[arg-type]


def _age_translations(db: Session, announcement_id: uuid.UUID) -> None:
    db.rollback()
    db.execute(
        update(AnnouncementTranslation)
        .where(AnnouncementTranslation.announcement_id == announcement_id)
        .values(updated_at=_now() - timedelta(days=1))
    )
    db.commit()


def test_retry_delay_grows_and_is_capped() -> None:
    delays = [announcements.retry_delay(n) for n in range(1, 20)]
    assert delays[0] == timedelta(minutes=2)
    assert delays[1] == timedelta(minutes=4)
    assert delays == sorted(delays)
    assert delays[-1] == timedelta(hours=6)


def test_no_provider_means_pending(db: Session, city: City) -> None:
    draft = _draft(db, city.leader, _free_text(Audience(group_ids=(city.g1.id,))))
    announcements.send(db, draft, _now(), Translator(db, None))
    db.commit()
    assert _translations(db, draft.id)["uk"].status is TranslationStatus.PENDING


# --- sending ---------------------------------------------------------------------------------


def test_send_writes_recipients_and_outbox_together(
    client: FlaskClient, login: Any, db: Session, city: City
) -> None:
    draft = _draft(db, city.leader, _free_text(Audience(kita_ids=(city.kita.id,))))
    login(city.leader)
    base = f"/messages/announcements/{draft.id}"
    page = client.get(f"{base}/send").get_data(as_text=True)
    assert "4 parents will receive this message." in page
    missing = _post(client, f"{base}/send", {})
    assert missing.status_code == 422
    assert "Please confirm that the message should be sent." in missing.get_data(as_text=True)
    response = _post(client, f"{base}/send", {"confirm": "yes"})
    assert response.status_code == 302
    db.rollback()
    # Nobody has a push subscription: each parent gets an e-mail delivery (the digest).
    assert _count(db, AnnouncementRecipient, announcement_id=draft.id) == 4
    assert _count(db, EmailDelivery, message_id=draft.id) == 4
    again = _post(client, f"{base}/send", {"confirm": "yes"})
    assert again.status_code == 409
    db.rollback()
    assert _count(db, EmailDelivery, message_id=draft.id) == 4


def test_a_failure_after_the_outbox_write_leaves_nothing(
    client: FlaskClient, login: Any, db: Session, city: City, monkeypatch: pytest.MonkeyPatch
) -> None:
    draft = _draft(db, city.leader, _free_text(Audience(kita_ids=(city.kita.id,))))
    original = announcements.audit.record

    def failing(session: Session, **kwargs: Any) -> Any:
        if kwargs.get("action") == "announcement.sent":
            # Prove the outbox rows were already written in this transaction.
            assert session.scalar(select(func.count()).select_from(EmailDelivery)) == 4
            raise RuntimeError("disk full")
        return original(session, **kwargs)

    monkeypatch.setattr(announcements.audit, "record", failing)
    login(city.leader)
    response = _post(client, f"/messages/announcements/{draft.id}/send", {"confirm": "yes"})
    assert response.status_code == 500
    db.rollback()
    db.expire_all()
    assert _count(db, AnnouncementRecipient) == 0
    assert _count(db, EmailDelivery) == 0
    assert _count(db, PushDelivery) == 0
    assert _count(db, AnnouncementTranslation) == 0
    assert db.get(Announcement, draft.id).status is AnnouncementStatus.DRAFT  # type: ignore[union-attr]


def test_scheduled_message_is_sent_by_the_job(
    app: Flask, client: FlaskClient, login: Any, db: Session, city: City, config: KitaConfig
) -> None:
    login(city.leader)
    at = (datetime.now(BERLIN) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    response = _post(client, NEW, _compose(title="Später", group=str(city.g2.id), scheduled_at=at))
    assert response.status_code == 302
    db.rollback()
    announcement = db.scalars(select(Announcement)).one()
    base = f"/messages/announcements/{announcement.id}"
    assert _post(client, f"{base}/send", {"confirm": "yes"}).status_code == 302
    db.rollback()
    db.expire_all()
    assert announcement.status is AnnouncementStatus.SCHEDULED
    assert _count(db, AnnouncementRecipient) == 0
    job = next(j for j in default_jobs() if j.name == "announcements.send_scheduled")
    context = WorkerContext(config, app.extensions["kita"].database, app.extensions["kita"].keys)
    assert job.run(context) == 0  # not yet
    db.rollback()
    db.execute(
        update(Announcement)
        .where(Announcement.id == announcement.id)
        .values(scheduled_at=_now() - timedelta(minutes=1))
    )
    db.commit()
    assert job.run(context) == 1
    db.rollback()
    db.expire_all()
    assert announcement.status is AnnouncementStatus.SENT
    assert set(_recipients(db, announcement.id)) == {city.parent_tr.id, city.parent_ar.id}
    assert job.run(context) == 0  # sent once


def test_a_failing_scheduled_message_does_not_hold_back_the_others(
    db: Session, city: City, config: KitaConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = _now() + timedelta(hours=1)
    first, second = (
        _draft(db, city.leader, _free_text(Audience(group_ids=(g.id,)), scheduled_at=later))
        for g in (city.g1, city.g2)
    )
    leader = load_actor(db, city.leader)
    for draft in (first, second):
        announcements.schedule(db, actor=leader, announcement=draft, now=_now())
    db.commit()
    original = announcements.notify.enqueue

    def enqueue(session: Session, **kwargs: Any) -> Any:
        if kwargs["message_id"] == first.id:
            raise RuntimeError("push outbox unavailable")
        return original(session, **kwargs)

    monkeypatch.setattr(announcements.notify, "enqueue", enqueue)
    sent = announcements.send_due(
        db, now=later + timedelta(minutes=1), translator=translator_for(db, config)
    )
    db.commit()
    assert sent == 1
    assert first.status is AnnouncementStatus.SCHEDULED
    assert second.status is AnnouncementStatus.SENT
    assert _count(db, AnnouncementRecipient, announcement_id=first.id) == 0
    assert _count(db, AnnouncementRecipient, announcement_id=second.id) == 2


def test_schedule_in_the_past_is_refused(
    client: FlaskClient, login: Any, db: Session, city: City
) -> None:
    login(city.leader)
    at = (datetime.now(BERLIN) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    response = _post(client, NEW, _compose(title="x", group=str(city.g1.id), scheduled_at=at))
    assert response.status_code == 422
    assert "Please choose a time in the future." in response.get_data(as_text=True)
    response = _post(
        client,
        NEW,
        _compose(title="x", group=str(city.g1.id), confirm_required="on", confirm_deadline=""),
    )
    assert response.status_code == 422
    assert "Please give a deadline for the confirmation." in response.get_data(as_text=True)
    db.rollback()
    assert _count(db, Announcement) == 0


def test_edit_after_sending_is_marked_and_sends_no_new_notification(
    client: FlaskClient, login: Any, db: Session, city: City, config: KitaConfig
) -> None:
    draft = _draft(db, city.leader, _free_text(Audience(kita_ids=(city.kita.id,))))
    _send(db, config, draft)
    outbox = _count(db, EmailDelivery) + _count(db, PushDelivery)
    login(city.leader)
    base = f"/messages/announcements/{draft.id}"
    form = client.get(f"{base}/edit").get_data(as_text=True)
    assert "Parents will see that it was edited" in form
    response = _post(
        client,
        f"{base}/edit",
        {
            "mode": "free",
            "source_locale": "de",
            "title": "Elternabend",
            "body": "Neue Uhrzeit: 19 Uhr.",
        },
    )
    assert response.status_code == 302
    db.rollback()
    db.expire_all()
    announcement = db.get(Announcement, draft.id)
    assert announcement is not None and announcement.edited_at is not None
    assert announcement.body == "Neue Uhrzeit: 19 Uhr."
    assert _translations(db, draft.id)["tr"].body == "[tr] Neue Uhrzeit: 19 Uhr."
    assert _count(db, EmailDelivery) + _count(db, PushDelivery) == outbox
    login(city.parent_tr)
    page = client.get(f"/messages/a/{draft.id}")
    assert page.status_code == 200
    assert "[tr] Neue Uhrzeit: 19 Uhr." in page.get_data(as_text=True)


def test_recall_hides_the_content_and_drops_pending_notifications(
    client: FlaskClient, login: Any, db: Session, city: City, config: KitaConfig
) -> None:
    draft = _draft(
        db, city.leader, _free_text(Audience(kita_ids=(city.kita.id,)), body="Geheimer Plan")
    )
    _send(db, config, draft)
    login(city.leader)
    base = f"/messages/announcements/{draft.id}"
    assert client.get(f"{base}/recall").status_code == 200
    assert _post(client, f"{base}/recall", {}).status_code == 422
    assert _post(client, f"{base}/recall", {"confirm": "yes"}).status_code == 302
    db.rollback()
    db.expire_all()
    announcement = db.get(Announcement, draft.id)
    assert announcement is not None
    assert announcement.status is AnnouncementStatus.RECALLED
    assert announcement.recalled_at is not None
    statuses = set(
        db.scalars(select(EmailDelivery.status).where(EmailDelivery.message_id == draft.id))
    )
    assert statuses == {DeliveryStatus.SKIPPED}
    # A recalled message cannot be edited or sent again.
    assert client.get(f"{base}/edit").status_code == 409
    assert _post(client, f"{base}/send", {"confirm": "yes"}).status_code == 409
    login(city.parent_de)
    page = client.get(f"/messages/a/{draft.id}").get_data(as_text=True)
    assert "Geheimer Plan" not in page


# --- attachments -----------------------------------------------------------------------------


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "orange").save(buffer, "PNG")
    return buffer.getvalue()


def test_attachments_are_encrypted_at_rest(
    app: Flask, client: FlaskClient, login: Any, db: Session, city: City, config: KitaConfig
) -> None:
    secret = b"SECRET-PLAN-4711"
    pdf = b"%PDF-1.4\n" + secret + b"\n%%EOF\n"
    login(city.leader)
    response = _post(
        client,
        NEW,
        _compose(
            title="Mit Anhang",
            kita=str(city.kita.id),
            attachments=[
                (io.BytesIO(pdf), "Plan-Sommerfest.pdf"),
                (io.BytesIO(_png()), "bild.png"),
            ],
        ),
        content_type="multipart/form-data",
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    db.rollback()
    rows = db.scalars(select(Attachment).order_by(Attachment.media_type)).all()
    assert [row.media_type for row in rows] == ["application/pdf", "image/jpeg"]
    blobs = BlobStore(config.blob_dir)
    stored = blobs.path(rows[0].blob_id).read_bytes()
    assert secret not in stored and b"%PDF" not in stored
    assert b"Plan-Sommerfest" not in rows[0].filename_ct
    announcement = db.get(Announcement, rows[0].announcement_id)
    assert announcement is not None
    keys = app.extensions["kita"].keys
    file = announcements.read_attachment(keys, blobs, announcement, rows[0])
    assert (file.filename, file.data) == ("Plan-Sommerfest.pdf", pdf)
    image = announcements.read_attachment(keys, blobs, announcement, rows[1])
    assert image.filename == "bild.jpg" and image.data.startswith(b"\xff\xd8\xff")
    # Staff see the names; removing one deletes its file.
    page = client.get(f"/messages/announcements/{announcement.id}").get_data(as_text=True)
    assert "Plan-Sommerfest.pdf" in page
    pdf_blob, image_blob = rows[0].blob_id, rows[1].blob_id
    edit = client.get(f"/messages/announcements/{announcement.id}/edit").get_data(as_text=True)
    assert "Remove Plan-Sommerfest.pdf" in edit
    response = _post(
        client,
        f"/messages/announcements/{announcement.id}/edit",
        _compose(title="Mit Anhang", kita=str(city.kita.id), remove_attachment=str(rows[0].id)),
    )
    assert response.status_code == 302
    db.rollback()
    assert [row.media_type for row in db.scalars(select(Attachment))] == ["image/jpeg"]
    assert not blobs.exists(pdf_blob) and blobs.exists(image_blob)


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([(b"MZ\x90\x00 not a pdf", "virus.pdf")], "is not a PDF, JPEG or PNG file"),
        ([(b"Hallo", "notiz.txt")], "is not a PDF, JPEG or PNG file"),
        ([(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "kaputt.png")], "is damaged or not an image"),
        ([(b"%PDF-" + b"0" * (10 * 1024 * 1024), "gross.pdf")], "is larger than 10 MB"),
        ([(b"%PDF-1.4 x", f"d{n}.pdf") for n in range(6)], "at most 5 attachments"),
    ],
)
def test_bad_attachments_are_refused(
    client: FlaskClient,
    login: Any,
    db: Session,
    city: City,
    config: KitaConfig,
    files: list[tuple[bytes, str]],
    message: str,
) -> None:
    login(city.leader)
    response = _post(
        client,
        NEW,
        _compose(
            title="Anhang",
            kita=str(city.kita.id),
            attachments=[(io.BytesIO(data), name) for data, name in files],
        ),
        content_type="multipart/form-data",
    )
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    db.rollback()
    assert _count(db, Announcement) == 0
    assert _count(db, Attachment) == 0
    assert list(BlobStore(config.blob_dir).ids()) == []


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"title": "T" * 201}, "At most 200 characters are allowed."),
        ({"title": "Titel", "body": "B" * 5001}, "At most 5000 characters are allowed."),
        ({"title": ""}, "This field is required."),
        ({"title": "x", "category": "party"}, "Please choose one of the offered options."),
        ({"title": "x", "source_locale": "xx"}, "Please choose one of the offered options."),
        ({"title": "x", "kita": "not-a-uuid"}, "Please choose one of the offered options."),
        ({"title": "x", "scheduled_at": "0001-01-01T00:00"}, "Please enter a date and time"),
        ({"title": "x", "scheduled_at": "morgen früh"}, "Please enter a date and time"),
        ({"title": "x\x00"}, "characters that are not allowed"),
        ({"mode": "phrase", "phrase_key": ""}, "Please choose a message from the list."),
        ({"mode": "phrase", "phrase_key": "no_such_phrase"}, "Please choose one of the offered"),
    ],
)
def test_bad_compose_input_is_refused(
    client: FlaskClient, login: Any, db: Session, city: City, fields: dict[str, str], message: str
) -> None:
    login(city.leader)
    form = _compose(kita=str(city.kita.id))
    form.update(fields)
    response = _post(client, NEW, form)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    db.rollback()
    assert _count(db, Announcement) == 0


def test_phrase_with_a_bad_date_is_refused(
    client: FlaskClient, login: Any, db: Session, city: City
) -> None:
    login(city.leader)
    response = _post(
        client,
        NEW,
        {
            "mode": "phrase",
            "phrase_key": "closed_on_date",
            "param_date": "31.02.",
            "source_locale": "de",
            "kita": str(city.kita.id),
        },
    )
    assert response.status_code == 422
    assert "Please enter a date." in response.get_data(as_text=True)
    db.rollback()
    assert _count(db, Announcement) == 0


def test_staff_list_filters_by_status_and_says_when_empty(
    client: FlaskClient, login: Any, db: Session, city: City, config: KitaConfig
) -> None:
    login(city.leader)
    assert "No messages yet." in client.get("/messages/announcements/").get_data(as_text=True)
    sent = _draft(db, city.leader, _free_text(Audience(kita_ids=(city.kita.id,)), title="Gesendet"))
    _send(db, config, sent)
    _draft(db, city.leader, _free_text(Audience(kita_ids=(city.kita.id,)), title="Entwurf"))
    page = client.get("/messages/announcements/?status=draft").get_data(as_text=True)
    assert "Entwurf" in page and "Gesendet" not in page
    page = client.get("/messages/announcements/").get_data(as_text=True)
    assert "Entwurf" in page and "Gesendet" in page
    page = client.get("/messages/announcements/?status=recalled").get_data(as_text=True)
    assert "No message has this status." in page
    # The compose page offers the leader's Kita, its groups and its families.
    form = client.get(NEW).get_data(as_text=True)
    assert str(city.kita.id) in form and str(city.g2.id) in form
    assert str(city.g3.id) not in form
    assert len(re.findall(r'name="child"', form)) == 7


# --- demo ------------------------------------------------------------------------------------


def test_demo_adds_every_category_once(
    app: Flask, db: Session, config: KitaConfig, libretranslate: FakeLibreTranslate
) -> None:
    state = app.extensions["kita"]
    assert load_demo(db, state.hasher)
    now = _now()
    arguments = {
        "keys": state.keys,
        "blobs": BlobStore(config.blob_dir),
        "translator": translator_for(db, config),
        "now": now,
    }
    assert load_demo_announcements(db, **arguments) == 6
    db.commit()
    rows = db.scalars(select(Announcement)).all()
    assert {row.category.value for row in rows} == {
        "information",
        "event",
        "closure",
        "health",
        "urgent",
    }
    assert sorted(row.status.value for row in rows).count("sent") == 5
    free = next(row for row in rows if row.phrase_key is None)
    assert _translations(db, free.id)["tr"].status is TranslationStatus.MACHINE
    phrased = next(row for row in rows if row.phrase_key == "head_lice")
    assert _translations(db, phrased.id)["tr"].status is TranslationStatus.PHRASEBOOK
    confirmed = db.scalar(
        select(func.count())
        .select_from(AnnouncementRecipient)
        .where(AnnouncementRecipient.confirmed_at.is_not(None))
    )
    assert confirmed and confirmed > 0
    assert load_demo_announcements(db, **arguments) == 0
