"""The parent's feed offline: after one online visit the last feed opens without a network,
marked as a saved copy; the copy is the parent's alone (never a staff member's page), and it is
gone after logout or when the session has ended."""

from __future__ import annotations

import pytest
from babel.support import Translations
from sqlalchemy import delete
from sqlalchemy.orm import Session

from kita import catalogs
from kita.config import KitaConfig
from kita.models.accounts import ServerSession
from tests.browser.conftest import BrowserSession, Seed, set_locale

pytestmark = pytest.mark.browser

FEED_CACHE = "kita-feed"
NOTE = "You are offline. This is the page as it was when you last opened it."


def _kept(browser: BrowserSession) -> list[str]:
    """Paths in the worker's feed cache."""
    return list(
        browser.page.evaluate(
            """async (name) => {
              if (!(await caches.has(name))) return [];
              const keys = await (await caches.open(name)).keys();
              return keys.map((request) => new URL(request.url).pathname);
            }""",
            FEED_CACHE,
        )
    )


def _visit_feed_online(browser: BrowserSession, marker: str) -> None:
    browser.goto("/home")
    browser.wait_for_service_worker()
    browser.goto("/home")  # a page the worker controls: its copy is kept now
    assert marker in browser.page.locator("main").inner_text()
    browser.page.wait_for_function(
        "async (name) => (await caches.has(name))"
        " && (await (await caches.open(name)).keys()).length > 0",
        arg=FEED_CACHE,
    )


def _leaks(browser: BrowserSession, *needles: str) -> list[str]:
    return [
        f"{area}: {entry[:160]}"
        for area, entries in browser.stored_data().items()
        for entry in entries
        for needle in needles
        if needle in entry
    ]


@pytest.mark.parametrize("locale", ["de", "ar"])
def test_the_last_feed_opens_offline_as_a_saved_copy(
    browser: BrowserSession, seed: Seed, db: Session, locale: str
) -> None:
    set_locale(db, seed.parent, locale)
    browser.log_in(seed.parent)
    _visit_feed_online(browser, seed.marker)
    assert _kept(browser) == ["/home"]

    browser.context.set_offline(True)
    response = browser.goto("/home")
    assert response is not None and response.from_service_worker
    main = browser.page.locator("main")
    assert seed.marker in main.inner_text()
    assert browser.page.locator("html").get_attribute("lang") == locale
    # The page says it is a saved copy, in the parent's language.
    note = Translations.load(str(catalogs.TRANSLATIONS), [locale]).gettext(NOTE)
    assert main.locator("[role=status]").first.inner_text() == note

    # Only the feed is kept: another page offline is the offline page, naming nobody.
    browser.goto("/account")
    assert seed.marker not in browser.page.content()
    assert seed.parent.email not in browser.page.content()

    # Back online the live page is shown again, without the note.
    browser.context.set_offline(False)
    browser.goto("/home")
    assert browser.page.locator("main[data-offline]").count() == 0
    assert seed.marker in browser.page.locator("main").inner_text()


def test_logout_drops_the_feed_and_every_stored_marker(browser: BrowserSession, seed: Seed) -> None:
    browser.log_in(seed.parent)
    _visit_feed_online(browser, seed.marker)
    # Markers where later features keep data (localStorage, an IndexedDB outbox), so the scan
    # below proves that logout empties every store, not only the feed cache.
    browser.page.evaluate(
        """async (marker) => {
          localStorage.setItem("feed-draft", marker);
          await new Promise((resolve, reject) => {
            const open = indexedDB.open("kita-test-feed", 1);
            open.onupgradeneeded = () => open.result.createObjectStore("items", {keyPath: "id"});
            open.onerror = () => reject(open.error);
            open.onsuccess = () => {
              const tx = open.result.transaction("items", "readwrite");
              tx.objectStore("items").put({id: 1, child: marker});
              tx.oncomplete = () => { open.result.close(); resolve(); };
              tx.onerror = () => reject(tx.error);
            };
          });
        }""",
        seed.marker,
    )
    before = browser.stored_data()
    assert all(
        any(seed.marker in entry for entry in before[area])
        for area in ("caches", "indexedDB", "localStorage")
    ), "the markers should be stored before the logout"

    browser.log_out()
    assert _leaks(browser, seed.marker, seed.parent.display_name, seed.parent.email) == []
    assert _kept(browser) == []

    # Offline now, the feed is not there any more: the offline page instead.
    browser.wait_for_service_worker()
    browser.context.set_offline(True)
    browser.goto("/home")
    assert seed.marker not in browser.page.content()
    assert browser.page.locator("main h1").inner_text() in {"Sie sind offline", "You are offline"}


def test_an_ended_session_drops_the_copy_at_the_next_online_page(
    browser: BrowserSession, seed: Seed, db: Session
) -> None:
    """The session ends on the server (timeout, password change) without a logout here: the
    next page the browser gets is the login page, which tells the worker to drop the copy."""
    browser.log_in(seed.parent)
    _visit_feed_online(browser, seed.marker)
    db.execute(delete(ServerSession).where(ServerSession.user_id == seed.parent.id))
    db.commit()

    browser.goto("/home")
    assert "/login" in browser.page.url
    browser.page.wait_for_function("async (name) => !(await caches.has(name))", arg=FEED_CACHE)
    assert _leaks(browser, seed.marker) == []
    browser.context.set_offline(True)
    browser.goto("/home")
    assert seed.marker not in browser.page.content()


def test_staff_pages_are_never_kept(browser: BrowserSession, seed: Seed) -> None:
    """Staff work on shared devices (Kita tablets, the office computer)."""
    browser.log_in(seed.leader)
    browser.goto("/home")
    browser.wait_for_service_worker()
    for path in ("/home", f"/admin/kitas/{seed.kita.id}/children", "/home"):
        browser.goto(path)
    assert seed.marker in browser.page.content() or seed.kita.name in browser.page.content()
    assert _kept(browser) == []
    assert _leaks(browser, seed.marker, seed.kita.name, seed.leader.email) == []
    browser.context.set_offline(True)
    browser.goto("/home")
    assert browser.page.locator("main h1").inner_text() in {"Sie sind offline", "You are offline"}


def test_an_expired_copy_is_not_shown(
    browser: BrowserSession, seed: Seed, config: KitaConfig
) -> None:
    """The copy carries the end of the session's lifetime; past it, offline shows the offline
    page and the copy is deleted."""
    browser.log_in(seed.parent)
    _visit_feed_online(browser, seed.marker)
    expires = browser.page.evaluate(
        """async (name) => {
          const cache = await caches.open(name);
          const [request] = await cache.keys();
          const copy = await cache.match(request);
          const headers = new Headers(copy.headers);
          const expires = Number(headers.get("X-Kita-Expires"));
          headers.set("X-Kita-Expires", String(Date.now() - 1000));  // as if the time had come
          await cache.put(request, new Response(await copy.blob(), {headers}));
          return expires - Date.now();
        }""",
        FEED_CACHE,
    )
    # Kept for the session's absolute lifetime at most.
    assert 0 < expires <= config.session_absolute_hours * 3600 * 1000
    browser.context.set_offline(True)
    browser.goto("/home")
    assert seed.marker not in browser.page.content()
    assert browser.page.locator("main h1").inner_text() in {"Sie sind offline", "You are offline"}
    assert _kept(browser) == []
