"""Push in Chromium, end to end with real parts.

- Subscribing: the settings page's own code (pwa/push.js ``register``) hands the backend a
  subscription made by the push emulator (``pushManager.subscribe()`` would need a browser
  vendor's push service, which is out of reach here); the next announcement then travels
  through the outbox and the worker to the emulator, which decrypts it.
- Display: that payload, as read back from the emulator, is delivered to the service worker
  with ``ServiceWorker.deliverPushMessage``. Chromium shows it on a desktop notification server
  on a private D-Bus (tests/desktop_notifications.py), in the recipient's language.
- Click: the desktop sends the click, as a tap would; Chromium fires a trusted
  ``notificationclick`` and the worker opens the message.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from kita.access import load_actor
from kita.config import KitaConfig
from kita.db import Database
from kita.models.messaging import PushSubscription
from kita.push.payload import build_payload, topic_for
from kita.services import announcements, notify
from kita.services.announcements import AnnouncementInput, Audience
from kita.services.push_delivery import DeliveryReport, DeliverySettings, deliver_due
from kita.services.translation import translator_for
from tests.browser.conftest import BrowserSession, Seed, set_locale
from tests.desktop_notifications import (
    DesktopUnavailableError,
    NotificationServer,
    running_notification_server,
)
from tests.push_emulator import PushEmulator, running_push_emulator

pytestmark = pytest.mark.browser

TITLE = "Sommerfest am Freitag"
BODY = "Bitte bringen Sie einen Kuchen mit."


@pytest.fixture(scope="module")
def push_emulator() -> Iterator[PushEmulator]:
    with running_push_emulator() as emulator:
        yield emulator


@pytest.fixture
def config(config: KitaConfig, push_emulator: PushEmulator) -> KitaConfig:
    """The emulator is the one push service the backend accepts here."""
    return config.with_overrides(push_allowed_origins=(push_emulator.origin,))


@pytest.fixture
def desktop() -> Iterator[NotificationServer]:
    try:
        with running_notification_server() as server:
            yield server
    except DesktopUnavailableError as error:
        pytest.fail(str(error))


@pytest.fixture
def browser_options(desktop: NotificationServer) -> dict[str, Any]:
    """Chromium finds the desktop's notification server on its session bus."""
    return {"env": {**os.environ, "DBUS_SESSION_BUS_ADDRESS": desktop.bus_address}}


def _allow_notifications(browser: BrowserSession) -> None:
    browser.context.grant_permissions(["notifications"], origin=browser.server.base_url)


def _push(browser: BrowserSession, payload: str | bytes) -> None:
    """Deliver ``payload`` to the worker as the browser's push service would."""
    browser.page.wait_for_function("() => navigator.serviceWorker.controller !== null")
    cdp = browser.cdp()
    registrations: list[dict[str, Any]] = []
    cdp.on(
        "ServiceWorker.workerRegistrationUpdated",
        lambda event: registrations.extend(event["registrations"]),
    )
    cdp.send("ServiceWorker.enable")
    for _ in range(100):
        live = [r for r in registrations if not r["isDeleted"]]
        if live:
            break
        browser.page.wait_for_timeout(50)
    assert live, "the service worker registration was not reported"
    data = payload.decode("utf-8") if isinstance(payload, bytes) else payload
    cdp.send(
        "ServiceWorker.deliverPushMessage",
        {
            "origin": browser.server.base_url,
            "registrationId": live[-1]["registrationId"],
            "data": data,
        },
    )
    cdp.detach()


def _shown(browser: BrowserSession) -> list[dict[str, Any]]:
    """The worker's notifications on screen, as the page sees them."""
    return list(
        browser.page.evaluate(
            """async () => (await (await navigator.serviceWorker.ready).getNotifications())
                .map((n) => ({title: n.title, tag: n.tag, url: n.data && n.data.url,
                              dir: n.dir, icon: n.icon}))"""
        )
    )


def _deliver(app: Flask, config: KitaConfig) -> DeliveryReport:
    """One run of the worker's push job (in a thread: Playwright's event loop must not meet
    the worker's asyncio loop)."""
    database: Database = app.extensions["kita"].database
    settings = DeliverySettings.from_config(config, concurrency=4)
    reports: list[DeliveryReport] = []
    worker = threading.Thread(target=lambda: reports.append(deliver_due(database, settings)))
    worker.start()
    worker.join(60)
    assert reports, "the push worker did not finish"
    return reports[0]


def _register_from_page(browser: BrowserSession, subscription: dict[str, Any]) -> Any:
    return browser.page.evaluate(
        "async (subscription) => (await import('/static/push.js')).register(subscription)",
        subscription,
    )


def test_a_subscription_from_the_page_gets_the_next_announcement_in_the_parents_language(
    browser: BrowserSession,
    seed: Seed,
    db: Session,
    app: Flask,
    config: KitaConfig,
    push_emulator: PushEmulator,
    desktop: NotificationServer,
) -> None:
    set_locale(db, seed.parent, "ar")
    _allow_notifications(browser)
    browser.log_in(seed.parent)
    browser.goto("/settings/notifications")
    browser.wait_for_service_worker()
    # Allowed but not subscribed yet: the page offers to turn notifications on.
    browser.page.locator("[data-state=off]").wait_for(state="visible")
    assert browser.page.locator("[data-push-enable]").is_visible()

    # The page's own code hands the emulator's subscription to the backend.
    key = browser.page.evaluate("async () => (await (await fetch('/api/v1/push/key')).json())")
    subscription = push_emulator.create_subscription(key["publicKey"])
    answer = _register_from_page(browser, subscription)
    db.rollback()  # a fresh snapshot: see what the requests wrote
    row = db.scalars(
        select(PushSubscription).where(PushSubscription.endpoint == subscription["endpoint"])
    ).one()
    assert answer == {"id": str(row.id)}
    assert row.user_id == seed.parent.id
    assert _register_from_page(browser, subscription) == answer  # sent again: the same row

    # The next announcement to the child's group reaches it, through outbox and worker.
    now = datetime.now(UTC)
    announcement = announcements.create_draft(
        db,
        actor=load_actor(db, seed.leader),
        data=AnnouncementInput(
            category="event",
            source_locale="de",
            audience=Audience(group_ids=(seed.group.id,)),
            title=TITLE,
            body=BODY,
        ),
        now=now,
    )
    announcements.send(db, announcement, now, translator_for(db, config))
    db.commit()
    assert _deliver(app, config).claimed >= 1
    received = push_emulator.get_notifications(subscription)
    assert len(received) == 1
    payload = json.loads(received[0])
    title = notify.generic_title("event", "ar")
    # Arabic, not the German default (this needs the shipped Arabic catalog to have the title).
    assert title != notify.generic_title("event", "de")
    assert payload == {
        "category": "event",
        "title": title,
        "url": f"/messages/a/{announcement.id}",
        "topic": topic_for(announcement.id),
    }
    for secret in (TITLE, BODY, seed.marker, seed.parent.display_name, seed.leader.display_name):
        assert secret not in received[0]

    # Shown by the worker: on the desktop and to the page, with the title in Arabic.
    _push(browser, received[0])
    shown = desktop.wait_for(lambda note: note.summary == title)
    assert _shown(browser) == [
        {
            "title": title,
            "tag": payload["topic"],
            "url": browser.url(payload["url"]),
            "dir": "auto",
            "icon": browser.url("/static/icons/icon-192.png"),
        }
    ]

    # A tap opens the message in a new window.
    with browser.context.expect_page() as opened:
        desktop.click(shown)
    page = opened.value
    page.wait_for_load_state("load")
    assert page.url == browser.url(payload["url"])
    assert TITLE in page.locator("main").inner_text()
    assert page.locator("html").get_attribute("lang") == "ar"
    assert _shown(browser) == []  # the tapped notification is gone

    # Turning notifications off on this device: the backend forgets the subscription.
    browser.page.evaluate(
        "async (endpoint) => (await import('/static/push.js')).unregister(endpoint)",
        subscription["endpoint"],
    )
    db.rollback()  # a fresh snapshot: see what the requests wrote
    assert db.scalars(select(PushSubscription).where(PushSubscription.id == row.id)).all() == []


def test_a_newer_notice_replaces_the_older_and_only_app_links_open(
    browser: BrowserSession, seed: Seed, desktop: NotificationServer
) -> None:
    _allow_notifications(browser)
    browser.log_in(seed.parent)
    browser.goto("/home")
    browser.wait_for_service_worker()
    topic = topic_for(uuid.uuid4())
    url = f"/messages/a/{uuid.uuid4()}"
    _push(browser, build_payload("event", "Neue Veranstaltung", url, topic))
    desktop.wait_for(lambda note: note.summary == "Neue Veranstaltung")
    # An edit of the same message comes with the same topic: one notification, the newer one.
    _push(browser, build_payload("urgent", "Dringende Nachricht", url, topic))
    desktop.wait_for(lambda note: note.summary == "Dringende Nachricht")
    shown = _shown(browser)
    assert [(n["title"], n["tag"], n["url"]) for n in shown] == [
        ("Dringende Nachricht", topic, browser.url(url))
    ]

    # A payload pointing elsewhere (not one the backend makes) never opens another site: a tap
    # opens the home page (in a new window, as none shows it now).
    browser.goto("/account")
    _push(browser, json.dumps({"title": "Fremd", "url": "https://example.org/x", "topic": "t2"}))
    foreign = desktop.wait_for(lambda note: note.summary == "Fremd")
    assert {n["title"]: n["url"] for n in _shown(browser)}["Fremd"] == browser.url("/home")
    with browser.context.expect_page() as opened:
        desktop.click(foreign)
    opened.value.wait_for_load_state("load")
    assert opened.value.url == browser.url("/home")
    # The browser fixture checks that no request left the app.


def test_the_opt_in_says_when_notifications_are_blocked(
    browser: BrowserSession, seed: Seed
) -> None:
    browser.log_in(seed.parent)
    # DevTools grants the permissions named and denies every other one: notifications too.
    browser.context.grant_permissions(["geolocation"], origin=browser.server.base_url)
    browser.goto("/settings/notifications")
    assert browser.page.evaluate("() => Notification.permission") == "denied"
    denied = browser.page.locator("[data-state=denied]")
    denied.wait_for(state="visible")
    assert "reload" in denied.inner_text() or "neu" in denied.inner_text()
    assert not browser.page.locator("[data-push-enable]").is_visible()
    # Without JavaScript this paragraph would be the one shown; with it, it is hidden.
    assert not browser.page.locator("[data-state=nojs]").is_visible()
    # The guide for this browser (a computer) is open, the others are closed.
    opened = browser.page.locator("details[open]")
    assert opened.count() == 1 and opened.get_attribute("data-platform") == "desktop"


def test_iphone_outside_the_home_screen_is_told_to_add_the_app_first(
    browser: BrowserSession, seed: Seed
) -> None:
    browser.log_in(seed.parent)
    page = browser.context.new_page()
    cdp = browser.context.new_cdp_session(page)
    cdp.send(
        "Emulation.setUserAgentOverride",
        {
            "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) "
            "AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
        },
    )
    page.goto(browser.url("/settings/notifications"), wait_until="load")
    page.locator("[data-state=ios-install]").wait_for(state="visible")
    assert not page.locator("[data-push-enable]").is_visible()
    assert page.locator("details[open]").get_attribute("data-platform") == "ios"
    cdp.detach()


def test_turning_on_says_so_when_the_push_service_cannot_be_reached(
    browser: BrowserSession, seed: Seed, db: Session
) -> None:
    """Here, as on a phone without a connection to its push service, the browser never answers
    ``pushManager.subscribe()``: the page stops waiting, says it failed and offers to retry."""
    _allow_notifications(browser)
    browser.log_in(seed.parent)
    browser.goto("/settings/notifications")
    browser.wait_for_service_worker()
    browser.page.locator("[data-push-optin]").evaluate("(el) => { el.dataset.timeoutMs = 500; }")
    browser.page.locator("[data-push-enable]").click()
    browser.page.locator("[data-state=failed]").wait_for(state="visible")
    enable = browser.page.locator("[data-push-enable]")
    assert enable.is_visible()
    # The keyboard user is back on the button, ready to try again.
    assert enable.evaluate("(el) => el === document.activeElement")
    db.rollback()
    assert db.scalars(select(PushSubscription)).all() == []
