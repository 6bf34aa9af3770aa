"""Real-browser fixtures: the app on a live WSGI server and Debian's Chromium driven by Playwright.

The server is Werkzeug's threaded WSGI server in a background thread of the test process, on a
free port of 127.0.0.1, serving the ``app`` of tests/conftest.py on its fresh test database, so a
test seeds and checks rows through ``db`` while the browser talks HTTP to the same app.

It speaks plain HTTP with the production cookie settings (``cookie_secure`` on, ``__Host-``
cookie): Chromium treats loopback origins as secure contexts, so it accepts Secure cookies there
and allows service workers, Clear-Site-Data and Cache Storage just as on an HTTPS host. Turning
``cookie_secure`` off would test a configuration that production never runs.

The browser is a persistent context (an incognito context can neither install nor subscribe)
with a profile folder per test, so no cache, worker or cookie leaks from one test to the next;
one Playwright driver serves the whole run.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from playwright.sync_api import BrowserContext, CDPSession, Page, Playwright, sync_playwright
from sqlalchemy.orm import Session
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from kita.app import PROJECT_ROOT
from kita.config import KitaConfig
from kita.db import Database
from kita.models.accounts import Role, ServerSession, User
from kita.models.organisation import Child, Group, Kita
from kita.sessions import _hash
from tests.browser.chromium import CHROMIUM, TIMEOUT_MS, launch_chromium
from tests.factories import PASSWORD, make_child, make_group, make_kita, make_user, totp_now

AXE_JS = PROJECT_ROOT / "node_modules" / "axe-core" / "axe.min.js"
HOST = "127.0.0.1"
#: Schemes that never leave the browser and so never reach another host.
LOCAL_SCHEMES = frozenset({"data", "blob", "about", "chrome-error"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run wherever Chromium is installed (CI installs it); skip them, saying why,
    only where it is missing."""
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(
        reason=f"{CHROMIUM} is missing: `make system-deps` installs the Debian package chromium"
    )
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(skip)


# --- the live server ---------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """One line per request would drown the test output; errors are still logged."""


class _Dispatch:
    """The WSGI callable the server is made with; the app is plugged in once it exists (its
    configuration needs the server's port first)."""

    def __init__(self) -> None:
        self.app: Flask | None = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        assert self.app is not None, "live server used before the app was attached"
        return self.app(environ, start_response)


@dataclass
class _Httpd:
    server: BaseWSGIServer
    dispatch: _Dispatch

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.server.server_port}"


@pytest.fixture
def _httpd() -> Iterator[_Httpd]:
    dispatch = _Dispatch()
    server = make_server(HOST, 0, dispatch, threaded=True, request_handler=_QuietHandler)
    yield _Httpd(server, dispatch)
    server.server_close()


@pytest.fixture
def config(config: KitaConfig, _httpd: _Httpd) -> KitaConfig:
    """The shared test configuration, with links pointing at the live server."""
    return config.with_overrides(base_url=_httpd.base_url)


class _ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass(frozen=True)
class LiveServer:
    base_url: str
    app: Flask

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


@pytest.fixture
def live_server(app: Flask, _httpd: _Httpd) -> Iterator[LiveServer]:
    """The app served over HTTP; a test fails if the app logged an unhandled error meanwhile."""
    errors = _ErrorLog()
    app.logger.addHandler(errors)
    _httpd.dispatch.app = app
    thread = threading.Thread(
        target=_httpd.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield LiveServer(_httpd.base_url, app)
    _httpd.server.shutdown()
    thread.join(timeout=10)
    app.logger.removeHandler(errors)
    assert not errors.records, f"the app logged errors: {[r.getMessage() for r in errors.records]}"


# --- the browser -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    """One Playwright driver per test process; browsers are launched per test."""
    with sync_playwright() as driver:
        yield driver


@dataclass
class BrowserSession:
    """One Chromium profile pointed at the live server, with what tests need to look inside."""

    context: BrowserContext
    page: Page
    server: LiveServer
    #: Every request URL the context made: pages, subresources and the service worker's own.
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    _totp_offsets: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.server.url(path)

    def goto(self, path: str) -> Any:
        return self.page.goto(self.url(path), wait_until="load")

    def cdp(self) -> CDPSession:
        return self.context.new_cdp_session(self.page)

    # -- accounts --

    def log_in(self, user: User, *, next_path: str | None = None) -> None:
        """Log in through the real form; staff continue with a TOTP code."""
        self.goto("/login" if next_path is None else f"/login?next={next_path}")
        form = self.page.locator("main form")
        form.locator("#f-email").fill(user.email)
        form.locator("#f-password").fill(PASSWORD)
        form.locator("button[type=submit]").click()
        self.page.wait_for_load_state("load")
        if user.totp_enabled_at is not None:
            self.page.wait_for_url("**/login/code")
            # A time step is accepted once per user: a second login in a test takes the next one.
            offset = self._totp_offsets.get(user.email, -1) + 1
            self._totp_offsets[user.email] = offset
            self.page.locator("#f-code").fill(totp_now(offset=offset))
            self.page.locator("main form button[type=submit]").click()
        self.page.wait_for_url(lambda url: "/login" not in url)

    def log_out(self) -> None:
        self.page.locator("form[data-logout] button[type=submit]").click()
        self.page.wait_for_url("**/login")
        self.page.wait_for_load_state("load")

    # -- service worker --

    def wait_for_service_worker(self) -> None:
        """Until the worker is active and this page is controlled by it."""
        # `ready` never settles when the registration failed: fail instead of waiting forever.
        ready = self.page.evaluate(
            """(ms) => Promise.race([
                 navigator.serviceWorker.ready.then(() => true),
                 new Promise((resolve) => setTimeout(() => resolve(false), ms)),
               ])""",
            TIMEOUT_MS,
        )
        assert ready, "the service worker did not become active"
        if not self.page.evaluate("() => navigator.serviceWorker.controller !== null"):
            self.page.reload(wait_until="load")
        self.page.wait_for_function("() => navigator.serviceWorker.controller !== null")

    # -- inspection --

    def stored_data(self) -> dict[str, list[str]]:
        """Everything this origin keeps in Cache Storage, IndexedDB, localStorage and
        sessionStorage, as text, for scanning for names that must not be there."""
        return dict(self.page.evaluate(_DUMP_STORAGE_JS))

    def run_axe(self) -> list[dict[str, Any]]:
        """axe-core's violations of the current page (WCAG 2.1 A/AA and axe's best practices).
        Evaluated over the DevTools protocol, which the page's CSP (no inline scripts) does not
        restrict."""
        assert AXE_JS.exists(), f"{AXE_JS} is missing: run `make node-deps`"
        if not self.page.evaluate("() => typeof window.axe === 'object'"):
            self.page.evaluate(AXE_JS.read_text(encoding="utf-8"))
        result = self.page.evaluate(
            """() => axe.run(document, {
                runOnly: {
                  type: "tag",
                  values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"],
                },
                resultTypes: ["violations"],
            })"""
        )
        return list(result["violations"])

    def foreign_requests(self) -> list[str]:
        """Request URLs that went anywhere but the app's own origin."""
        origin = urlsplit(self.server.base_url)
        foreign = []
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in LOCAL_SCHEMES:
                continue
            if (parts.scheme, parts.netloc) != (origin.scheme, origin.netloc):
                foreign.append(url)
        return foreign


_DUMP_STORAGE_JS = """async () => {
  const out = {caches: [], indexedDB: [], localStorage: [], sessionStorage: []};
  for (const name of await caches.keys()) {
    const cache = await caches.open(name);
    for (const request of await cache.keys()) {
      const response = await cache.match(request);
      out.caches.push(`${name} ${request.url}\\n${await response.text()}`);
    }
  }
  const readBlob = (value) => value instanceof Blob ? value.text() : value;
  for (const info of (await indexedDB.databases())) {
    const db = await new Promise((resolve, reject) => {
      const open = indexedDB.open(info.name);
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error);
    });
    for (const storeName of db.objectStoreNames) {
      const rows = await new Promise((resolve, reject) => {
        const request = db.transaction(storeName).objectStore(storeName).getAll();
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error);
      });
      for (const row of rows) {
        const value = await readBlob(row);
        out.indexedDB.push(`${info.name}/${storeName} ${JSON.stringify(value)}`);
      }
    }
    db.close();
  }
  const storages = [["localStorage", localStorage], ["sessionStorage", sessionStorage]];
  for (const [key, storage] of storages) {
    for (let i = 0; i < storage.length; i++) {
      out[key].push(`${storage.key(i)}=${storage.getItem(storage.key(i))}`);
    }
  }
  return out;
}"""


@pytest.fixture
def browser_options() -> dict[str, Any]:
    """Extra options for launching the ``browser`` fixture's Chromium (a test module overrides
    this fixture, e.g. to give the browser a desktop notification server)."""
    return {}


@pytest.fixture
def browser(
    playwright: Playwright,
    live_server: LiveServer,
    tmp_path: Path,
    browser_options: dict[str, Any],
) -> Iterator[BrowserSession]:
    """A fresh Chromium profile on the live server. After the test, no request may have gone to
    another host and the page may not have hit the Content-Security-Policy."""
    profile = tmp_path / "chromium-profile"
    context = launch_chromium(playwright, profile, **browser_options)
    page = context.pages[0] if context.pages else context.new_page()
    session = BrowserSession(context=context, page=page, server=live_server)
    context.on("request", lambda request: session.requests.append(request.url))
    page.on(
        "console",
        lambda message: (
            session.console_errors.append(message.text) if message.type == "error" else None
        ),
    )
    try:
        yield session
    finally:
        context.close()
        shutil.rmtree(profile, ignore_errors=True)
    assert session.foreign_requests() == []
    csp = [text for text in session.console_errors if "Content Security Policy" in text]
    assert csp == [], csp


@dataclass(frozen=True)
class Seed:
    """One Kita with a group, a child whose first name is a unique marker (searched for in
    browser storage), a parent of that child (no TOTP) and the Kita's leader (with TOTP)."""

    kita: Kita
    group: Group
    child: Child
    parent: User
    leader: User

    @property
    def marker(self) -> str:
        return self.child.first_name


@pytest.fixture
def seed(db: Session) -> Seed:
    kita = make_kita(db, name=f"Kita Sonnenblume {uuid.uuid4().hex[:6]}")
    group = make_group(db, kita, name="Marienkäfer")
    child = make_child(db, group, first_name=f"Zwetschge{uuid.uuid4().hex[:8]}")
    parent = make_user(db, roles=[(kita, Role.PARENT)], children=[child], name="Petra Elternteil")
    leader = make_user(db, roles=[(kita, Role.LEADER)], name="Lena Leitung")
    return Seed(kita, group, child, parent, leader)


def set_locale(db: Session, user: User, locale: str | None) -> None:
    """The user's own language setting, which beats the browser's Accept-Language."""
    db.get_one(User, user.id).locale = locale
    db.commit()


def add_session_cookie(
    context: BrowserContext, app: Flask, user: User, *, host: str = HOST
) -> None:
    """Log ``user`` in without the form (a server-side session row and its cookie), for
    measurements that must start from a cold page rather than from the login page."""
    database: Database = app.extensions["kita"].database
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    with database.transaction() as session:
        session.add(
            ServerSession(
                id=_hash(token),
                user_id=user.id,
                data={"uid": str(user.id)},
                created_at=now,
                last_seen_at=now,
            )
        )
    secure = bool(app.config["SESSION_COOKIE_SECURE"])
    cookie: Any = {"name": app.config["SESSION_COOKIE_NAME"], "value": token}
    cookie |= {"domain": host, "path": "/", "secure": secure, "httpOnly": True, "sameSite": "Lax"}
    context.add_cookies([cookie])
