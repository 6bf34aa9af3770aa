"""The installable app in Chromium: its own installability check, the manifest in the user's
language, and the service worker taking control of the pages."""

from __future__ import annotations

import re
from typing import Any

import pytest
from babel.support import Translations
from sqlalchemy.orm import Session

from kita import catalogs
from tests.browser.conftest import BrowserSession, Seed, set_locale

pytestmark = pytest.mark.browser

SHELL_PATHS = {"/static/app.css", "/static/app.js", "/static/icons/icon-192.png", "/offline"}


def _installability(browser: BrowserSession) -> tuple[list[Any], dict[str, Any]]:
    cdp = browser.cdp()
    errors = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
    manifest = cdp.send("Page.getAppManifest")
    cdp.detach()
    return errors, manifest


def _assert_installable(browser: BrowserSession, path: str) -> dict[str, Any]:
    browser.goto(path)
    browser.wait_for_service_worker()
    errors, manifest = _installability(browser)
    assert errors == [], f"{path}: {errors}"
    assert manifest["errors"] == []
    parsed = manifest["manifest"]
    assert parsed["display"] == "kStandalone"
    assert parsed["startUrl"] == browser.url("/home")
    assert parsed["scope"] == browser.url("/")
    sizes = {(icon["sizes"], icon["type"]) for icon in parsed["icons"]}
    assert {("192x192", "image/png"), ("512x512", "image/png")} <= sizes
    description = browser.page.locator('meta[name="description"]').get_attribute("content")
    assert description
    return manifest


def test_parent_start_page_is_installable(browser: BrowserSession, seed: Seed) -> None:
    browser.log_in(seed.parent)
    _assert_installable(browser, "/home")
    assert seed.marker in browser.page.locator("main").inner_text()


def test_staff_start_pages_are_installable(browser: BrowserSession, seed: Seed) -> None:
    browser.log_in(seed.leader)
    _assert_installable(browser, "/home")
    _assert_installable(browser, "/admin/")
    assert seed.kita.name in browser.page.locator("main").inner_text()


def test_manifest_comes_in_the_users_language_and_direction(
    browser: BrowserSession, seed: Seed, db: Session
) -> None:
    set_locale(db, seed.parent, "ar")
    browser.log_in(seed.parent)
    browser.goto("/home")
    assert browser.page.locator("html").get_attribute("dir") == "rtl"
    # Chromium fetches the manifest with the session cookie (crossorigin="use-credentials").
    manifest = _installability(browser)[1]
    assert '"lang":"ar"' in manifest["data"] and '"dir":"rtl"' in manifest["data"]
    arabic = Translations.load(str(catalogs.TRANSLATIONS), ["ar"])
    assert manifest["manifest"]["name"] == arabic.gettext("kita – your Kita app")


def test_service_worker_controls_the_pages_and_caches_only_the_shell(
    browser: BrowserSession,
) -> None:
    browser.goto("/login")
    browser.page.evaluate("() => navigator.serviceWorker.ready")
    browser.page.reload(wait_until="load")
    script = browser.page.evaluate("() => navigator.serviceWorker.controller?.scriptURL")
    assert script == browser.url("/sw.js")
    caches = browser.page.evaluate(
        """async () => {
          const out = {};
          for (const name of await caches.keys()) {
            const keys = await (await caches.open(name)).keys();
            out[name] = keys.map((request) => new URL(request.url).pathname);
          }
          return out;
        }"""
    )
    # One cache, named after the shell's digest, holding exactly the shell.
    assert len(caches) == 1
    name, paths = next(iter(caches.items()))
    assert re.fullmatch(r"kita-shell-[0-9a-f]{16}", name)
    assert set(paths) == SHELL_PATHS
