"""A shared staff tablet in Chromium: pairing, PIN unlock, installability, observations with a
photo written offline and synced once (checked in the database), server errors, lost
connections, conflicts, damaged outbox entries, a full storage quota, background sync, and no
child data in browser storage after a lock."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from PIL import Image
from playwright.sync_api import Route
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.access import load_actor
from kita.models.accounts import Role, User
from kita.models.documentation import ConsentPurpose, DocumentationEntry, DocumentationPhoto
from kita.services import consent, documentation, tablets
from tests.browser.conftest import HOST, BrowserSession, Seed
from tests.factories import make_user

pytestmark = pytest.mark.browser

PIN = "4826"
OBSERVATION = "Baut einen Turm mit {marker}"


@dataclass(frozen=True)
class TabletSeed:
    seed: Seed
    educator: User

    @property
    def marker(self) -> str:
        return self.seed.marker


@pytest.fixture
def staff(db: Session, app: Flask, seed: Seed) -> TabletSeed:
    return make_staff(db, app, seed)


def make_staff(db: Session, app: Flask, seed: Seed) -> TabletSeed:
    """The seed's child with the family's consents, and an educator of its group with a PIN."""
    educator = make_user(
        db, name="Erika Erzieherin", roles=[(seed.kita, Role.EDUCATOR)], groups=[seed.group]
    )
    for purpose in (ConsentPurpose.DOCUMENTATION, ConsentPurpose.PHOTOS_IN_DOCUMENTATION):
        consent.give_consent(
            db, actor=load_actor(db, seed.parent), child=seed.child, purpose=purpose
        )
    tablets.set_pin(
        db, app.extensions["kita"].hasher, user=educator, pin=PIN, now=datetime.now(UTC)
    )
    db.commit()
    return TabletSeed(seed, educator)


def pair(browser: BrowserSession, db: Session, staff: TabletSeed) -> None:
    """Pair the browser's profile as a tablet (the cookie the leader's pairing page sets)."""
    seed = staff.seed
    paired = tablets.pair_tablet(
        db,
        actor=load_actor(db, seed.leader),
        kita=seed.kita,
        name="Tablet Marienkäfer",
        lock_minutes=None,
        now=datetime.now(UTC),
    )
    db.commit()
    browser.context.add_cookies(
        [
            {
                "name": "__Host-kita_tablet",
                "value": paired.token,
                "domain": HOST,
                "path": "/",
                "secure": True,
                "httpOnly": True,
                "sameSite": "Lax",
            }
        ]
    )


def unlock(browser: BrowserSession, user: User, pin: str = PIN) -> None:
    browser.goto("/tablet")
    browser.page.get_by_role("link", name=user.display_name.split()[0]).click()
    browser.page.locator("#f-pin").fill(pin)
    browser.page.locator("main form button[type=submit]").click()
    browser.page.wait_for_url("**/tablet/today")
    browser.page.wait_for_selector("#tablet-today[data-outbox-ready]", state="attached")


@pytest.fixture
def tablet(browser: BrowserSession, db: Session, staff: TabletSeed) -> BrowserSession:
    """A paired tablet, unlocked by the educator, its service worker in control."""
    pair(browser, db, staff)
    unlock(browser, staff.educator)
    browser.wait_for_service_worker()
    browser.page.wait_for_selector("#tablet-today[data-outbox-ready]", state="attached")
    return browser


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "green").save(buffer, "PNG")
    return buffer.getvalue()


def write(browser: BrowserSession, text: str, *, photo: bool = True) -> None:
    page = browser.page
    page.locator("[data-capture]").first.click()
    page.locator("#c-text").fill(text)
    if photo:
        page.locator("#c-photo").set_input_files(
            {"name": "turm.png", "mimeType": "image/png", "buffer": _png()}
        )
    page.locator("#capture-form button[type=submit]").click()
    page.wait_for_selector("#capture", state="hidden")


def _entry_state(browser: BrowserSession) -> str:
    return str(browser.page.locator("#outbox-list li").first.get_attribute("class"))


def _wait_for_state(browser: BrowserSession, state: str) -> None:
    browser.page.wait_for_selector(f"#outbox-list li.outbox-{state}")


def _counts(db: Session) -> tuple[int, int]:
    db.rollback()
    db.expire_all()
    entries = db.scalar(select(func.count()).select_from(DocumentationEntry)) or 0
    photos = db.scalar(select(func.count()).select_from(DocumentationPhoto)) or 0
    return int(entries), int(photos)


def _entry_text(app: Flask, db: Session, staff: TabletSeed) -> str:
    db.rollback()
    db.expire_all()
    entry = db.scalars(select(DocumentationEntry)).one()
    view = documentation.read_entry(
        db,
        actor=load_actor(db, staff.educator),
        keys=app.extensions["kita"].keys,
        entry_id=entry.id,
    )
    db.rollback()
    return view.text


def _strings(browser: BrowserSession) -> dict[str, str]:
    """The messages the page shows, in the page's language (from the server's catalog)."""
    return dict(json.loads(browser.page.locator("#tablet-strings").text_content() or "{}"))


def _leaks(browser: BrowserSession, *needles: str) -> list[str]:
    return [
        f"{area}: {entry[:200]}"
        for area, entries in browser.stored_data().items()
        for entry in entries
        for needle in needles
        if needle in entry
    ]


def _outbox_rows(browser: BrowserSession) -> list[dict[str, Any]]:
    return list(
        browser.page.evaluate(
            """async () => {
              const open = indexedDB.open("kita-outbox", 1);
              const db = await new Promise((ok, fail) => {
                open.onupgradeneeded = () =>
                  open.result.createObjectStore("entries", {keyPath: "id"});
                open.onsuccess = () => ok(open.result); open.onerror = () => fail(open.error);
              });
              const rows = await new Promise((ok) => {
                const r = db.transaction("entries").objectStore("entries").getAll();
                r.onsuccess = () => ok(r.result);
              });
              db.close();
              return rows.map((row) => ({id: row.id, state: row.state, error: row.error}));
            }"""
        )
    )


# --- pairing, unlock, install ------------------------------------------------------------------


def test_a_leader_pairs_the_tablet_and_staff_unlock_it_with_a_pin(
    browser: BrowserSession, staff: TabletSeed
) -> None:
    seed = staff.seed
    browser.log_in(seed.leader)
    browser.goto(f"/admin/kitas/{seed.kita.id}/tablets")
    browser.page.locator("#f-name").fill("Tablet Marienkäfer")
    browser.page.locator("main form button[type=submit]").click()
    browser.page.wait_for_load_state("load")
    assert "Tablet Marienkäfer" in browser.page.locator("main").inner_text()
    cookie = next(c for c in browser.context.cookies() if c["name"] == "__Host-kita_tablet")
    assert cookie["httpOnly"] and cookie["secure"]
    assert cookie["expires"] > datetime.now(UTC).timestamp() + 300 * 86400
    browser.log_out()

    # The installed app's start page on a paired tablet is the tiles.
    browser.goto("/home")
    assert browser.page.url.endswith("/tablet")
    tiles = browser.page.locator("main").inner_text()
    assert "Erika" in tiles and "Erzieherin" not in tiles
    browser.page.get_by_role("link", name="Erika").click()
    browser.page.locator("#f-pin").fill("9999")
    browser.page.locator("main form button[type=submit]").click()
    assert "4" in browser.page.locator("#f-pin-error").inner_text()
    browser.page.locator("#f-pin").fill(PIN)
    browser.page.locator("main form button[type=submit]").click()
    browser.page.wait_for_url("**/tablet/today")
    assert seed.marker in browser.page.locator("main").inner_text()


def test_the_staff_start_page_is_installable(tablet: BrowserSession, staff: TabletSeed) -> None:
    cdp = tablet.cdp()
    errors = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
    cdp.detach()
    assert errors == []
    assert staff.marker in tablet.page.locator("main").inner_text()


# --- offline capture and sync ------------------------------------------------------------------


def test_an_observation_with_a_photo_written_offline_syncs_once(
    tablet: BrowserSession, staff: TabletSeed, app: Flask, db: Session
) -> None:
    text = OBSERVATION.format(marker=staff.marker)
    tablet.context.set_offline(True)
    write(tablet, text)
    _wait_for_state(tablet, "pending")
    assert tablet.page.locator("#outbox-status").inner_text() == _strings(tablet)["offline"]
    assert _counts(db) == (0, 0)
    # Waiting in IndexedDB, encrypted: the text is not readable there.
    assert [row["state"] for row in _outbox_rows(tablet)] == ["pending"]
    assert _leaks(tablet, staff.marker) == []

    tablet.context.set_offline(False)
    _wait_for_state(tablet, "synced")
    assert _counts(db) == (1, 1)
    assert _entry_text(app, db, staff) == text

    # A replay (the background sync event, start-up) sends nothing twice.
    tablet.page.reload(wait_until="load")
    tablet.page.wait_for_selector("#tablet-today[data-outbox-ready]", state="attached")
    _dispatch_sync(tablet)
    tablet.page.wait_for_timeout(500)
    assert _counts(db) == (1, 1)


def test_a_lost_connection_mid_upload_is_retried_with_the_same_id(
    tablet: BrowserSession, staff: TabletSeed, db: Session
) -> None:
    calls: list[tuple[str, str | None]] = []

    def drop_first_answer(route: Route) -> None:
        request = route.request
        calls.append((request.url, request.headers.get("idempotency-key")))
        if len(calls) == 1:
            route.fetch()  # the server stores it ...
            route.abort("connectionreset")  # ... but the answer never arrives
        else:
            route.continue_()

    tablet.page.route("**/api/v1/observations/*", drop_first_answer)
    write(tablet, OBSERVATION.format(marker=staff.marker), photo=False)
    _wait_for_state(tablet, "synced")
    assert len(calls) == 2 and calls[0] == calls[1]
    assert calls[0][1] is not None and calls[0][0].endswith(calls[0][1])
    assert _counts(db) == (1, 0)


def test_a_server_error_keeps_the_entry_and_it_is_sent_again(
    tablet: BrowserSession, staff: TabletSeed, db: Session
) -> None:
    answers = iter([500])

    def fail_once(route: Route) -> None:
        status = next(answers, None)
        if status is None:
            route.continue_()
        else:
            body = json.dumps({"error": "InternalServerError", "message": "boom"})
            route.fulfill(status=status, body=body, content_type="application/json")

    tablet.page.route("**/api/v1/observations/*", fail_once)
    write(tablet, OBSERVATION.format(marker=staff.marker))
    tablet.page.wait_for_selector('#outbox-list li.outbox-pending[data-error="server"]')
    assert _counts(db) == (0, 0)
    _wait_for_state(tablet, "synced")
    assert _counts(db) == (1, 1)


def _dispatch_sync(browser: BrowserSession) -> None:
    cdp = browser.cdp()
    registrations: list[dict[str, Any]] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda event: registrations.extend(event["registrations"]),
    )
    cdp.send("ServiceWorker.enable")
    browser.page.wait_for_timeout(200)
    registration = next(r for r in registrations if not r.get("isDeleted"))
    cdp.send(
        "ServiceWorker.dispatchSyncEvent",
        {
            "origin": browser.server.base_url,
            "registrationId": registration["registrationId"],
            "tag": "outbox",
            "lastChance": False,
        },
    )
    cdp.detach()


def test_the_background_sync_event_wakes_the_page_to_send(
    tablet: BrowserSession, staff: TabletSeed, db: Session
) -> None:
    tablet.page.evaluate(
        """() => {
          window.syncMessages = 0;
          navigator.serviceWorker.addEventListener("message", (event) => {
            if (event.data && event.data.type === "outbox-sync") window.syncMessages += 1;
          });
        }"""
    )
    tablet.page.route("**/api/v1/observations/*", lambda route: route.abort("failed"))
    write(tablet, OBSERVATION.format(marker=staff.marker), photo=False)
    tablet.page.wait_for_selector('#outbox-list li.outbox-pending[data-error="network"]')
    tablet.page.unroute("**/api/v1/observations/*")
    _dispatch_sync(tablet)
    tablet.page.wait_for_function("() => window.syncMessages > 0")
    _wait_for_state(tablet, "synced")
    assert _counts(db) == (1, 0)


def test_a_conflict_shows_both_versions_and_loses_nothing(
    tablet: BrowserSession, staff: TabletSeed, app: Flask, db: Session
) -> None:
    write(tablet, "Erste Fassung", photo=False)
    _wait_for_state(tablet, "synced")
    # Meanwhile the leader changes the entry on her computer.
    db.rollback()
    entry = db.scalars(select(DocumentationEntry)).one()
    documentation.save_entry(
        db,
        actor=load_actor(db, staff.seed.leader),
        keys=app.extensions["kita"].keys,
        entry_id=entry.id,
        data=documentation.EntryInput(
            staff.seed.child.id, "observation", "draft", "", "Fassung der Leitung", base_version=1
        ),
    )
    db.commit()
    # The educator edits her (older) version on the tablet.
    tablet.page.locator('#outbox-list li.outbox-synced [data-action="edit"]').click()
    tablet.page.locator("#c-text").fill("Fassung vom Tablet")
    tablet.page.locator("#capture-form button[type=submit]").click()
    _wait_for_state(tablet, "conflict")
    conflict = tablet.page.locator("#outbox-list li.outbox-conflict").inner_text()
    assert "Fassung vom Tablet" in conflict and "Fassung der Leitung" in conflict
    assert _entry_text(app, db, staff) == "Fassung der Leitung"
    tablet.page.locator('#outbox-list [data-action="keep-mine"]').click()
    _wait_for_state(tablet, "synced")
    assert _entry_text(app, db, staff) == "Fassung vom Tablet"
    assert _counts(db) == (1, 0)


def test_a_damaged_entry_is_shown_kept_and_not_sent(
    tablet: BrowserSession, staff: TabletSeed, db: Session
) -> None:
    damaged_id = str(uuid.uuid4())
    tablet.page.evaluate(
        """async ([id, user, child]) => {
          const open = indexedDB.open("kita-outbox", 1);
          const db = await new Promise((ok) => { open.onsuccess = () => ok(open.result); });
          const noise = (n) => crypto.getRandomValues(new Uint8Array(n));
          await new Promise((ok, fail) => {
            const tx = db.transaction("entries", "readwrite");
            tx.objectStore("entries").put({
              id, user, child, state: "pending", base: 0, version: null, saved: false,
              created: new Date().toISOString(), attempts: 0, error: "", photos: [],
              body: {iv: noise(12), ct: noise(64)},
            });
            tx.oncomplete = ok; tx.onerror = () => fail(tx.error);
          });
          db.close();
        }""",
        [damaged_id, str(staff.educator.id), str(staff.seed.child.id)],
    )
    tablet.page.reload(wait_until="load")
    tablet.page.wait_for_selector("#tablet-today[data-outbox-ready]", state="attached")
    _wait_for_state(tablet, "damaged")
    assert _strings(tablet)["damaged"] in tablet.page.locator("#outbox-list").inner_text()
    tablet.page.wait_for_timeout(300)
    assert _counts(db) == (0, 0)
    assert [row["id"] for row in _outbox_rows(tablet)] == [damaged_id]


def test_a_full_storage_quota_is_told_and_the_text_kept(
    tablet: BrowserSession, staff: TabletSeed, db: Session
) -> None:
    cdp = tablet.cdp()
    cdp.send("Storage.overrideQuotaForOrigin", {"origin": tablet.server.base_url, "quotaSize": 1})
    text = OBSERVATION.format(marker=staff.marker)
    page = tablet.page
    page.locator("[data-capture]").first.click()
    page.locator("#c-text").fill(text)
    page.locator("#c-photo").set_input_files(
        {"name": "turm.png", "mimeType": "image/png", "buffer": _png()}
    )
    page.locator("#capture-form button[type=submit]").click()
    error = page.locator("#capture-error")
    error.wait_for(state="visible")
    assert error.inner_text() == _strings(tablet)["quota"]
    assert page.locator("#c-text").input_value() == text  # nothing typed is lost
    cdp.send("Storage.overrideQuotaForOrigin", {"origin": tablet.server.base_url})
    cdp.detach()
    page.locator("#capture-form button[type=submit]").click()
    _wait_for_state(tablet, "synced")
    assert _counts(db) == (1, 1)


# --- lock ----------------------------------------------------------------------------------------


def _plant(browser: BrowserSession, marker: str) -> None:
    """Child data where a careless page might keep it, so the lock is shown to remove it."""
    browser.page.evaluate(
        """async (marker) => {
          localStorage.setItem("draft", marker);
          sessionStorage.setItem("draft", marker);
          const cache = await caches.open("kita-test-feed");
          await cache.put("/feed-copy", new Response(marker));
        }""",
        marker,
    )


def test_after_a_lock_no_child_data_stays_and_the_outbox_survives(
    tablet: BrowserSession, staff: TabletSeed, app: Flask, db: Session
) -> None:
    tablet.context.set_offline(True)
    write(tablet, OBSERVATION.format(marker=staff.marker))
    _wait_for_state(tablet, "pending")
    # Back online, but the server cannot be reached: the entry keeps waiting.
    tablet.page.route("**/api/v1/observations/*", lambda route: route.abort("failed"))
    tablet.context.set_offline(False)
    _plant(tablet, staff.marker)
    assert _leaks(tablet, staff.marker)

    tablet.page.locator("#tablet-lock button").click()
    tablet.page.wait_for_url("**/tablet")
    tablet.page.wait_for_function("async () => !(await caches.has('kita-test-feed'))")
    assert _leaks(tablet, staff.marker, "Erzieherin", staff.seed.child.last_name) == []
    # The encrypted entry is still there for the next unlock; the session is gone.
    assert [row["state"] for row in _outbox_rows(tablet)] == ["pending"]
    tablet.goto("/tablet/today")
    assert "/login" in tablet.page.url
    assert _counts(db) == (0, 0)

    tablet.page.unroute("**/api/v1/observations/*")
    unlock(tablet, staff.educator)
    _wait_for_state(tablet, "synced")
    assert _counts(db) == (1, 1)
    assert _entry_text(app, db, staff) == OBSERVATION.format(marker=staff.marker)


def test_the_tablet_locks_itself_after_inactivity(
    browser: BrowserSession, staff: TabletSeed, db: Session
) -> None:
    pair(browser, db, staff)
    browser.page.clock.install()
    unlock(browser, staff.educator)
    browser.page.clock.fast_forward("04:00")
    assert browser.page.url.endswith("/tablet/today")
    browser.page.clock.fast_forward("01:05")
    browser.page.wait_for_url("**/tablet")
    assert staff.marker not in browser.page.content()
    browser.goto("/tablet/today")
    assert "/login" in browser.page.url


def test_a_lock_while_offline_ends_the_session_once_back_online(
    browser: BrowserSession, staff: TabletSeed, db: Session
) -> None:
    pair(browser, db, staff)
    browser.page.clock.install()
    unlock(browser, staff.educator)
    browser.wait_for_service_worker()
    browser.context.set_offline(True)
    browser.page.clock.fast_forward("05:05")
    browser.page.wait_for_url("**/tablet")
    assert staff.marker not in browser.page.content()
    # Back online within the server's idle time: the next page ends the session first.
    browser.context.set_offline(False)
    browser.goto("/tablet")
    browser.page.wait_for_selector("[data-tablet-locked]")
    browser.goto("/tablet/today")
    assert "/login" in browser.page.url
