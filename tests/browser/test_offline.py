"""Offline behaviour and what stays in the browser: the shell works offline, pages with personal
data are never stored (but for a parent's own feed, see test_offline_feed.py), and logout leaves
no child data in Cache Storage, IndexedDB or localStorage."""

from __future__ import annotations

import pytest
from playwright.sync_api import Route

from tests.browser.conftest import BrowserSession, Seed

pytestmark = pytest.mark.browser


def _leaks(browser: BrowserSession, *needles: str) -> list[str]:
    stored = browser.stored_data()
    return [
        f"{area}: {entry[:200]}"
        for area, entries in stored.items()
        for entry in entries
        for needle in needles
        if needle in entry
    ]


def test_offline_navigation_shows_the_offline_page_from_the_cached_shell(
    browser: BrowserSession, seed: Seed
) -> None:
    browser.log_in(seed.parent)
    browser.goto("/home")
    browser.wait_for_service_worker()
    from_worker: dict[str, bool] = {}
    browser.page.on(
        "response",
        lambda response: from_worker.__setitem__(response.url, response.from_service_worker),
    )

    browser.context.set_offline(True)
    response = browser.goto("/account")
    assert response is not None and response.from_service_worker
    assert browser.page.locator("main h1").inner_text() in {"Sie sind offline", "You are offline"}
    # The cached shell styles the page: the top bar has the brand colour.
    topbar = browser.page.locator(".topbar")
    assert topbar.evaluate("(el) => getComputedStyle(el).backgroundColor") == "rgb(31, 95, 139)"
    assert from_worker[browser.url("/static/app.css")] is True
    assert from_worker[browser.url("/static/app.js")] is True
    # The offline page was cached without cookies: it names nobody.
    text = browser.page.content()
    assert seed.marker not in text and seed.parent.display_name not in text
    assert "data-logout" not in text

    browser.context.set_offline(False)
    browser.goto("/home")
    assert seed.marker in browser.page.locator("main").inner_text()


def test_pages_with_personal_data_are_not_stored(browser: BrowserSession, seed: Seed) -> None:
    """Nothing but the parent's own feed (test_offline_feed.py), which the server marks for it:
    the account page, with name and e-mail address, is never kept."""
    browser.log_in(seed.parent)
    browser.goto("/home")
    browser.wait_for_service_worker()
    for path in ("/account", "/home", "/account"):
        browser.goto(path)
    assert seed.parent.email in browser.page.locator("main").inner_text()
    stored = browser.stored_data()
    assert stored["caches"], "the shell should be cached"
    leaks = _leaks(browser, seed.marker, seed.parent.display_name, seed.parent.email)
    assert [leak for leak in leaks if not leak.startswith("caches: kita-feed ")] == []
    kept = {leak.split()[2] for leak in leaks}
    assert kept <= {browser.url("/home")}


def _plant_child_data(browser: BrowserSession, marker: str) -> None:
    """Put the marker where later features (the feed, the observation outbox) keep data, so the
    test proves that logout empties every store, not only that nothing was there."""
    browser.page.evaluate(
        """async (marker) => {
          localStorage.setItem("draft", marker);
          sessionStorage.setItem("draft", marker);
          const cache = await caches.open("kita-test-feed");
          await cache.put("/feed-copy", new Response(marker));
          await new Promise((resolve, reject) => {
            const open = indexedDB.open("kita-test-outbox", 1);
            open.onupgradeneeded = () => open.result.createObjectStore("drafts", {keyPath: "id"});
            open.onerror = () => reject(open.error);
            open.onsuccess = () => {
              const tx = open.result.transaction("drafts", "readwrite");
              tx.objectStore("drafts").put({id: 1, child: marker});
              tx.oncomplete = () => { open.result.close(); resolve(); };
              tx.onerror = () => reject(tx.error);
            };
          });
        }""",
        marker,
    )


def test_logout_leaves_no_child_data_in_browser_storage(
    browser: BrowserSession, seed: Seed
) -> None:
    browser.log_in(seed.parent)
    browser.goto("/home")
    browser.wait_for_service_worker()
    _plant_child_data(browser, seed.marker)
    planted = browser.stored_data()
    assert all(
        any(seed.marker in entry for entry in planted[area])
        for area in ("caches", "indexedDB", "localStorage", "sessionStorage")
    )

    browser.log_out()
    assert _leaks(browser, seed.marker, seed.parent.display_name) == []
    # The session is gone on the server as well: /home asks for a login again.
    browser.goto("/home")
    assert "/login" in browser.page.url


def test_logout_empties_caches_even_without_clear_site_data(
    browser: BrowserSession, seed: Seed
) -> None:
    """Where the header is not honoured (or stripped by a proxy), app.js tells the worker to drop
    its caches and clears localStorage itself."""
    browser.log_in(seed.parent)
    browser.goto("/home")
    browser.wait_for_service_worker()
    _plant_child_data(browser, seed.marker)
    stripped: list[str] = []

    def strip_header(route: Route) -> None:
        response = route.fetch(max_redirects=0)
        headers = {k: v for k, v in response.headers.items() if k.lower() != "clear-site-data"}
        stripped.append(response.headers.get("clear-site-data", ""))
        route.fulfill(response=response, headers=headers)

    browser.page.route("**/logout", strip_header)
    browser.log_out()
    assert stripped and stripped[0], "the server should have sent Clear-Site-Data"
    # The worker handles the page's message on its own time; give it a moment.
    browser.page.wait_for_function("async () => !(await caches.has('kita-test-feed'))")
    stored = browser.stored_data()
    leaks = [
        entry
        for area in ("caches", "localStorage", "sessionStorage")
        for entry in stored[area]
        if seed.marker in entry
    ]
    assert leaks == []
    # The worker fetched the shell again, so the offline page still works for the next user.
    browser.page.wait_for_function(
        "async () => (await caches.keys()).some((name) => name.startsWith('kita-shell-'))"
    )
