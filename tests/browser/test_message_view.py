"""The message view in Chromium: the original/translation switch works in the page (no URL
change), read aloud hands the shown text to speechSynthesis in its language, and the button is
not shown where the browser has no speech synthesis."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from tests.browser.conftest import BrowserSession, Seed, set_locale
from tests.browser.test_accessibility import _check
from tests.factories import make_announcement

pytestmark = pytest.mark.browser

TITLE_TR = "Yarın kapalıyız"
BODY_TR = "Kreş yarın eğitim nedeniyle kapalı kalacaktır"
TITLE_DE = "Morgen geschlossen"

# Records what would be spoken instead of speaking (headless Chromium has no voices).
FAKE_SPEECH = """
window.__spoken = [];
const synth = {
  speaking: false, pending: false,
  getVoices: () => [],
  speak(utterance) { window.__spoken.push({ lang: utterance.lang, text: utterance.text }); },
  cancel() {},
};
Object.defineProperty(window, "speechSynthesis", { value: synth, configurable: true });
"""
NO_SPEECH = "delete window.speechSynthesis; delete Window.prototype.speechSynthesis;"


def _open_message(browser: BrowserSession, seed: Seed, db: Session) -> str:
    set_locale(db, seed.parent, "tr")
    announcement = make_announcement(
        db,
        seed.kita,
        seed.leader,
        title=TITLE_DE,
        recipients=[seed.parent],
        translations={"tr": (TITLE_TR, BODY_TR)},
    )
    browser.log_in(seed.parent)
    path = f"/messages/a/{announcement.id}"
    browser.goto(path)
    return path


def test_switch_and_read_aloud_in_the_parents_language(
    browser: BrowserSession, seed: Seed, db: Session
) -> None:
    browser.context.add_init_script(FAKE_SPEECH)
    path = _open_message(browser, seed, db)
    page = browser.page
    shown, original = page.locator("#message-shown"), page.locator("#message-original")
    assert shown.is_visible() and not original.is_visible()

    reader = page.locator("[data-read-aloud]")
    assert reader.is_visible()
    reader.click()
    spoken = page.evaluate("window.__spoken")
    assert spoken[0]["lang"] == "tr"
    assert TITLE_TR in spoken[0]["text"] and BODY_TR in spoken[0]["text"]

    page.locator("[data-toggle-original]").click()
    assert original.is_visible() and not shown.is_visible()
    assert page.url == browser.url(path), "the switch never touches the URL"
    reader.click()
    assert page.evaluate("window.__spoken")[-1]["lang"] == "de"
    page.locator("[data-toggle-original]").click()
    assert shown.is_visible()


def test_no_read_aloud_button_without_speech_synthesis(
    browser: BrowserSession, seed: Seed, db: Session
) -> None:
    browser.context.add_init_script(NO_SPEECH)
    _open_message(browser, seed, db)
    assert browser.page.locator("[data-read-aloud]").is_hidden()
    assert browser.page.locator("[data-toggle-original]").is_visible()


@pytest.mark.parametrize("locale", ["de", "ar"])
def test_message_pages_have_no_serious_axe_violations(
    browser: BrowserSession, seed: Seed, db: Session, locale: str
) -> None:
    announcement = make_announcement(
        db,
        seed.kita,
        seed.leader,
        title=TITLE_DE,
        recipients=[(seed.parent, locale)],
        translations={"ar": ("مغلق غدا", "ستبقى الروضة مغلقة غدا")},
        confirm_required=True,
    )
    set_locale(db, seed.parent, locale)
    set_locale(db, seed.leader, locale)
    browser.log_in(seed.parent)
    problems: list[str] = []
    for path in ("/home", "/messages", f"/messages/a/{announcement.id}"):
        problems += _check(browser, path, locale)
    assert browser.page.locator("[data-read-aloud]").count() == 1
    browser.log_out()
    browser.log_in(seed.leader)
    problems += _check(browser, f"/messages/announcements/{announcement.id}/reach", locale)
    assert seed.child.full_name in browser.page.locator("main").inner_text()
    assert problems == []
