"""WCAG 2.1 AA in a real browser: axe-core on the main pages in German and in Arabic (right to
left), and keyboard use of the skip link and the language switch with a visible focus."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from tests.browser.conftest import BrowserSession, Seed, set_locale
from tests.browser.test_tablet import TabletSeed, make_staff, pair, unlock, write

pytestmark = pytest.mark.browser

LANGUAGES = {"de": "ltr", "ar": "rtl"}


def _serious(violations: list[dict[str, Any]]) -> list[str]:
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(str(node["target"]) for node in v["nodes"][:5])
        for v in violations
        if v["impact"] in {"serious", "critical"}
    ]


def _check(browser: BrowserSession, path: str, locale: str) -> list[str]:
    browser.goto(path)
    html = browser.page.locator("html")
    assert (html.get_attribute("lang"), html.get_attribute("dir")) == (locale, LANGUAGES[locale])
    return [f"{path}: {problem}" for problem in _serious(browser.run_axe())]


def _switch_language(browser: BrowserSession, locale: str) -> None:
    """Through the language switch, as a visitor would (app.js submits on change)."""
    with browser.page.expect_navigation():
        browser.page.locator("#language-select").select_option(locale)


@pytest.mark.parametrize("locale", list(LANGUAGES))
def test_parent_pages_have_no_serious_axe_violations(
    browser: BrowserSession, seed: Seed, db: Session, locale: str
) -> None:
    browser.goto("/login")
    if locale != "de":
        _switch_language(browser, locale)
    problems = _check(browser, "/login", locale)
    set_locale(db, seed.parent, locale)
    browser.log_in(seed.parent)
    for path in ("/home", "/account", "/settings/notifications"):
        problems += _check(browser, path, locale)
    # The push opt-in was checked as a visitor sees it: its script ran and chose a status.
    assert browser.page.locator("[data-push-optin] [data-state]:visible").count() == 1
    assert problems == []


@pytest.mark.parametrize("locale", list(LANGUAGES))
def test_leader_pages_have_no_serious_axe_violations(
    browser: BrowserSession, seed: Seed, db: Session, locale: str
) -> None:
    set_locale(db, seed.leader, locale)
    browser.log_in(seed.leader)
    problems: list[str] = []
    for path in ("/home", "/admin/", f"/admin/kitas/{seed.kita.id}/children"):
        problems += _check(browser, path, locale)
    # The children list really lists the child (axe checked a full page, not an empty state).
    assert seed.marker in browser.page.locator("main").inner_text()
    assert problems == []


def _focus_state(browser: BrowserSession) -> dict[str, Any]:
    return dict(
        browser.page.evaluate(
            """() => {
              const el = document.activeElement;
              const style = getComputedStyle(el);
              const box = el.getBoundingClientRect();
              return {
                id: el.id, cls: el.className, tag: el.tagName,
                outline: style.outlineStyle !== "none" ? parseFloat(style.outlineWidth) : 0,
                shadow: style.boxShadow,
                visible: box.width > 0 && box.height > 0 && box.right > 0 && box.bottom > 0
                  && box.left < innerWidth && box.top < innerHeight,
              };
            }"""
        )
    )


@pytest.mark.parametrize("locale", list(LANGUAGES))
def test_skip_link_and_language_switch_by_keyboard(browser: BrowserSession, locale: str) -> None:
    browser.goto("/login")
    if locale != "de":
        _switch_language(browser, locale)
    browser.page.keyboard.press("Tab")
    first = _focus_state(browser)
    assert "skip-link" in first["cls"]
    assert first["visible"], "the skip link must come into view when focused"
    assert first["outline"] >= 2 or first["shadow"] != "none"

    seen = []
    for _ in range(15):
        browser.page.keyboard.press("Tab")
        state = _focus_state(browser)
        seen.append(state["id"] or state["tag"])
        if state["id"] == "language-select":
            break
    assert state["id"] == "language-select", f"focus went through {seen}"
    assert state["visible"]
    assert state["outline"] >= 2 or state["shadow"] != "none"

    # The skip link moves the focus to the main content.
    browser.page.reload(wait_until="load")
    browser.page.keyboard.press("Tab")
    browser.page.keyboard.press("Enter")
    assert browser.page.evaluate("() => document.activeElement.id") == "main"


@pytest.fixture
def staff(db: Session, app: Flask, seed: Seed) -> TabletSeed:
    return make_staff(db, app, seed)


@pytest.mark.parametrize("locale", list(LANGUAGES))
def test_tablet_pages_have_no_serious_axe_violations(
    browser: BrowserSession, staff: TabletSeed, db: Session, locale: str
) -> None:
    """The shared tablet's pages: the tiles and the PIN pad (before anyone is unlocked), today's
    view with the capture form open and an entry in the outbox, the PIN setting, and the
    leader's pairing page."""
    seed = staff.seed
    for user in (staff.educator, seed.leader):
        set_locale(db, user, locale)
    pair(browser, db, staff)
    browser.goto("/tablet")
    if locale != "de":
        _switch_language(browser, locale)
    problems = _check(browser, "/tablet", locale)
    problems += _check(browser, f"/tablet/unlock/{staff.educator.id}", locale)
    unlock(browser, staff.educator)
    write(browser, f"Beobachtung {seed.marker}", photo=False)
    browser.page.wait_for_selector("#outbox-list li.outbox-synced")
    browser.page.locator("[data-capture]").first.click()
    assert browser.page.locator("html").get_attribute("dir") == LANGUAGES[locale]
    problems += [f"/tablet/today: {problem}" for problem in _serious(browser.run_axe())]
    problems += _check(browser, "/account/pin", locale)
    browser.page.locator("#tablet-lock button, form[data-logout] button").first.click()
    browser.page.wait_for_url("**/tablet")
    browser.log_in(seed.leader)
    problems += _check(browser, f"/admin/kitas/{seed.kita.id}/tablets", locale)
    assert "Tablet Marienkäfer" in browser.page.locator("main").inner_text()
    assert problems == []
