"""Announcements in a real browser: a leader composes from the phrasebook, checks the
translations and sends, with the keyboard-and-mouse path a person takes; axe-core finds no
serious problem on the compose, preview and message pages, in German and in Arabic."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from kita.models.accounts import Role
from kita.models.messaging import Announcement, AnnouncementStatus, TranslationStatus
from tests.browser.conftest import BrowserSession, Seed, set_locale
from tests.browser.test_accessibility import LANGUAGES, _check
from tests.factories import make_user

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("locale", list(LANGUAGES))
def test_leader_sends_a_phrasebook_message(
    browser: BrowserSession, seed: Seed, db: Session, locale: str
) -> None:
    make_user(db, roles=[(seed.kita, Role.PARENT)], children=[seed.child], locale="tr")
    set_locale(db, seed.leader, locale)
    browser.log_in(seed.leader)
    problems = _check(browser, "/messages/announcements/new", locale)
    page = browser.page
    page.locator(f"input[name=kita][value='{seed.kita.id}']").check()
    page.locator("input[name=category][value=closure]").check()
    page.locator("#f-source_locale").select_option("de")
    page.locator("#f-phrase_key").select_option("closed_on_date")
    page.locator("#f-param_date").fill((date.today() + timedelta(days=2)).isoformat())
    with page.expect_navigation():
        page.locator("form.compose button[type=submit]").click()
    assert "/preview" in page.url
    problems += _check(browser, "/" + page.url.split("/", 3)[3], locale)
    db.rollback()
    announcement = db.scalars(select(Announcement)).one()
    base = f"/messages/announcements/{announcement.id}"
    browser.goto(f"{base}/preview?locale=tr")
    assert "tr" in page.locator(".translation").get_attribute("lang")  # type: ignore[operator]
    browser.goto(f"{base}/send")
    page.locator("input[name=confirm]").check()
    with page.expect_navigation():
        page.locator("main form button[type=submit]").click()
    problems += _check(browser, base, locale)
    db.rollback()
    db.expire_all()
    announcement = db.get_one(Announcement, announcement.id)
    assert announcement.status is AnnouncementStatus.SENT
    statuses = {row.locale: row.status for row in announcement.translations}
    assert statuses["tr"] is TranslationStatus.PHRASEBOOK
    assert problems == []
