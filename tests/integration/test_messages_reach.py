"""Reach of an announcement for staff: delivered/read/confirmed per family, counts per
language, the families not reached (with language and group), and the printable letters in each
family's language (read back from the PDF with pdftotext), right to left for Arabic."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kita.models.accounts import Role
from kita.models.audit import AuditEvent
from kita.models.messaging import Announcement, AnnouncementRecipient
from kita.reports.letter import render_letters_html
from kita.services import reach
from tests.factories import make_announcement, make_child, make_kita, make_user
from tests.integration.test_messages_feed import (
    BODY_AR,
    BODY_DE,
    BODY_TR,
    TITLE_AR,
    TITLE_DE,
    TITLE_TR,
    World,
    build_world,
)

needs_poppler = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="poppler-utils missing: run `make system-deps`"
)


@pytest.fixture
def world(db: Session) -> World:
    return build_world(db)


def pdftotext(pdf: bytes) -> str:
    done = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True)
    return done.stdout.decode("utf-8")


def normalise(text: str) -> str:
    """Arabic presentation forms folded, format characters and whitespace dropped."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(c for c in folded if not c.isspace() and unicodedata.category(c) != "Cf")


def sent_to_everyone(db: Session, w: World, **kwargs: Any) -> Announcement:
    """To both groups; the German family read it, the Arabic one got it delivered, the Turkish
    one nothing yet. Noah (Raupen) has no parent with an account."""
    make_child(db, w.raupen, "Noah", "Neu")
    announcement = make_announcement(
        db,
        w.kita,
        w.educator,
        groups=[w.raupen, w.igel],
        recipients=[w.turkish, w.arabic, w.german],
        translations={"tr": (TITLE_TR, BODY_TR), "ar": (TITLE_AR, BODY_AR)},
        **kwargs,
    )
    now = datetime.now(UTC)
    for user, values in (
        (w.german, {"delivered_at": now, "read_at": now, "confirmed_at": now}),
        (w.arabic, {"delivered_at": now}),
    ):
        db.execute(
            update(AnnouncementRecipient)
            .where(
                AnnouncementRecipient.announcement_id == announcement.id,
                AnnouncementRecipient.user_id == user.id,
            )
            .values(values)
        )
    db.commit()
    return announcement


def test_reach_counts_per_language_and_lists_families_not_reached(
    db: Session, world: World
) -> None:
    announcement = sent_to_everyone(db, world, confirm_required=True)
    result = reach.build_reach(db, announcement, now=datetime.now(UTC))

    assert len(result.families) == 4  # the Yılmaz siblings are one family
    counts = {row.locale: row for row in result.languages}
    assert set(counts) == {"tr", "ar", "de"}
    assert (counts["tr"].recipients, counts["tr"].delivered, counts["tr"].read) == (1, 0, 0)
    assert (counts["ar"].recipients, counts["ar"].delivered, counts["ar"].read) == (1, 1, 0)
    assert (counts["de"].recipients, counts["de"].read, counts["de"].confirmed) == (1, 1, 1)
    assert {loc: row.families_not_reached for loc, row in counts.items()} == {
        "tr": 1,
        "ar": 1,
        "de": 1,  # Noah's family: no account, the Kita's language
    }
    missing = {family.child_names: family for family in result.not_reached}
    assert set(missing) == {"Ayşe Yılmaz, Emre Yılmaz", "Lina Haddad", "Noah Neu"}
    assert (missing["Ayşe Yılmaz, Emre Yılmaz"].locale, missing["Lina Haddad"].locale) == (
        "tr",
        "ar",
    )
    assert missing["Ayşe Yılmaz, Emre Yılmaz"].groups == "Igel, Raupen"
    assert missing["Lina Haddad"].delivered and not missing["Lina Haddad"].read
    assert missing["Noah Neu"].guardians == []
    assert (result.count("read"), result.count("confirmed")) == (1, 1)


def test_reach_page_for_the_announcements_staff_only(
    client: FlaskClient, login: Any, db: Session, world: World
) -> None:
    announcement = sent_to_everyone(db, world)
    url = f"/messages/announcements/{announcement.id}/reach"
    for staff in (world.educator, world.other_educator, world.leader):
        login(staff)
        page = html.unescape(client.get(url).get_data(as_text=True))
        assert "Lina Haddad" in page and "Ayşe Yılmaz, Emre Yılmaz" in page
        not_reached = page[page.index('class="not-reached"') :]
        not_reached = not_reached[: not_reached.index("</table>")]
        assert "Max Müller" not in not_reached, "the German family read it"
        assert re.search(r'<tr data-locale="ar">\s*<td>Lina Haddad</td>\s*<td>Igel</td>', page)
        assert re.search(r'<tr data-locale="tr">\s*<th scope="row">Türkçe</th>\s*<td>1</td>', page)
    raupen_only = make_announcement(
        db, world.kita, world.educator, groups=[world.raupen], recipients=[world.german]
    )
    other_kita = make_kita(db)
    outsider = make_user(db, roles=[(other_kita, Role.LEADER)])
    for user, target in (
        (world.other_educator, raupen_only.id),  # educator of a group not addressed
        (world.german, announcement.id),  # a parent
        (outsider, announcement.id),
        (world.leader, uuid.uuid4()),
    ):
        login(user)
        assert client.get(f"/messages/announcements/{target}/reach").status_code == 404
        assert client.get(f"/messages/announcements/{target}/letters.pdf").status_code == 404


@needs_poppler
def test_letters_pdf_in_each_familys_language(
    client: FlaskClient, login: Any, db: Session, world: World
) -> None:
    announcement = sent_to_everyone(
        db, world, confirm_required=True, confirm_deadline=datetime.now(UTC) + timedelta(days=2)
    )
    login(world.leader)
    response = client.get(f"/messages/announcements/{announcement.id}/letters.pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.headers["Content-Disposition"] == 'attachment; filename="letters.pdf"'
    text = normalise(pdftotext(response.data))
    for expected in (TITLE_TR, BODY_TR, TITLE_AR, BODY_AR, "Kita Sonnenblume", "Noah Neu"):
        assert normalise(expected) in text
    assert normalise("Lina Haddad") in text and normalise("Ayşe Yılmaz") in text
    # Noah's family reads German: the original; the family who read it gets no letter.
    assert normalise(BODY_DE) in text
    assert normalise("Max Müller") not in text
    db.rollback()
    [event] = db.scalars(
        select(AuditEvent).where(AuditEvent.action == "announcement.letters")
    ).all()
    assert (event.actor_id, event.object_id) == (world.leader.id, str(announcement.id))

    everyone = client.get(f"/messages/announcements/{announcement.id}/letters.pdf?all=1")
    assert normalise("Max Müller") in normalise(pdftotext(everyone.data))


def test_letters_html_is_right_to_left_for_arabic_with_a_slip(db: Session, world: World) -> None:
    announcement = sent_to_everyone(db, world, confirm_required=True)
    result = reach.build_reach(db, announcement, now=datetime.now(UTC))
    batch = reach.build_letters(db, result, now=datetime.now(UTC))
    by_locale = {letter.locale: letter for letter in batch.letters}
    assert set(by_locale) == {"tr", "ar", "de"}
    assert (by_locale["ar"].title, by_locale["ar"].direction) == (TITLE_AR, "rtl")
    assert (by_locale["tr"].original_title, by_locale["de"].original_title) == (TITLE_DE, None)
    page = render_letters_html(batch)
    assert re.search(r'<article class="letter" lang="ar" dir="rtl">', page)
    assert re.search(r'<article class="letter" lang="tr" dir="ltr">', page)
    assert page.count('<section class="slip">') == 3
    without = reach.build_letters(
        db,
        reach.build_reach(db, sent_to_everyone(db, world), now=datetime.now(UTC)),
        now=datetime.now(UTC),
    )
    assert 'class="slip"' not in render_letters_html(without)


def test_no_letters_for_drafts_or_when_everyone_read_it(
    client: FlaskClient, login: Any, db: Session, world: World
) -> None:
    draft = make_announcement(db, world.kita, world.educator, groups=[world.raupen], status="draft")
    read = make_announcement(
        db, world.kita, world.educator, children=[world.lina], recipients=[world.arabic]
    )
    db.execute(update(AnnouncementRecipient).values(read_at=datetime.now(UTC)))
    db.commit()
    login(world.leader)
    for announcement in (draft, read):
        response = client.get(f"/messages/announcements/{announcement.id}/letters.pdf")
        assert response.status_code == 302
        assert response.headers["Location"].endswith(
            f"/messages/announcements/{announcement.id}/reach"
        )
    page = client.get(f"/messages/announcements/{read.id}/reach").get_data(as_text=True)
    assert "Every family has read this message" in page
