"""What the app costs the network: no request to any host but the app, and the parent's home
within the issue's byte budget on a cold first load."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Playwright
from sqlalchemy.orm import Session

from tests.browser.budget import JS_GZIP_BUDGET, TOTAL_BUDGET, measure_cold_load
from tests.browser.chromium import launch_chromium
from tests.browser.conftest import (
    BrowserSession,
    LiveServer,
    Seed,
    add_session_cookie,
    set_locale,
)

pytestmark = pytest.mark.browser


def test_a_tour_of_the_app_requests_nothing_but_the_app(
    browser: BrowserSession, seed: Seed, db: Session
) -> None:
    set_locale(db, seed.leader, "ar")
    browser.log_in(seed.parent)
    for path in ("/home", "/account", "/settings/notifications", "/offline"):
        browser.goto(path)
    browser.wait_for_service_worker()
    browser.log_out()
    browser.log_in(seed.leader)
    for path in ("/home", "/admin/", f"/admin/kitas/{seed.kita.id}/children", "/account"):
        browser.goto(path)
    browser.log_out()

    paths = {url.removeprefix(browser.server.base_url).split("?")[0] for url in browser.requests}
    # The log covers pages, subresources, the manifest and the worker's own fetches.
    expected = {"/home", "/static/app.css", "/static/app.js", "/manifest.webmanifest", "/sw.js"}
    expected.add("/static/push.js")  # the push opt-in, on the notification settings only
    assert expected <= paths
    assert browser.foreign_requests() == []


def test_parent_home_cold_load_fits_the_budget(
    playwright: Playwright, live_server: LiveServer, seed: Seed, tmp_path: Path
) -> None:
    context = launch_chromium(playwright, tmp_path / "cold-profile")
    try:
        add_session_cookie(context, live_server.app, seed.parent)
        weight = measure_cold_load(context, live_server.url("/home"))
    finally:
        context.close()
    urls = {transfer.url for transfer in weight.transfers}
    assert live_server.url("/home") in urls, "the page itself must have been measured"
    assert live_server.url("/static/app.js") in urls
    assert 0 < weight.js_gzip_bytes <= JS_GZIP_BUDGET, weight.describe()
    assert weight.css_bytes > 0 and weight.html_bytes > 0
    assert weight.total_bytes <= TOTAL_BUDGET, weight.describe()


@pytest.mark.parametrize("locale", ["de", "ar"])
def test_main_pages_fit_a_320_pixel_screen(
    browser: BrowserSession, seed: Seed, db: Session, locale: str
) -> None:
    set_locale(db, seed.parent, locale)
    browser.page.set_viewport_size({"width": 320, "height": 640})
    browser.log_in(seed.parent)
    wide = {}
    for path in ("/login", "/home", "/account", "/settings/notifications"):
        browser.goto(path)
        width = browser.page.evaluate("() => document.documentElement.scrollWidth")
        if width > 320:
            wide[path] = width
        # Buttons and form fields are large enough to hit with a finger.
        small = browser.page.evaluate(
            """() => [...document.querySelectorAll(`main button, main input:not([type=hidden]),
                       main select, .topbar button, .topbar select`)]
                .filter((el) => el.getClientRects().length > 0  // shown at all
                  && el.getBoundingClientRect().height < 44 && el.type !== "checkbox")
                .map((el) => el.outerHTML.slice(0, 80))"""
        )
        assert small == [], f"{path}: {small}"
    assert wide == {}
