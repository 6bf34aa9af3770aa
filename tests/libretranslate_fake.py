"""A local server that speaks the LibreTranslate HTTP API, so the real client code runs in tests.

``POST /translate`` takes JSON or a form (``q`` a string or a list, ``source``, ``target``,
``format``, ``api_key``) and answers ``{"translatedText": ...}`` (a list for a list ``q``);
bad input answers 400 ``{"error": ...}`` like the real server. ``GET /languages`` lists
``{code, name, targets}``. The default translation is deterministic, ``f"[{target}] {text}"``;
``mangle = True`` upper-cases every word except glossary placeholders, which shows whether
protected terms really survive a round trip. ``calls`` counts /translate requests.

Use the fixture ``libretranslate`` (registered in tests/conftest.py).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import pytest

from kita.config import SUPPORTED_LOCALES

NAMES = {
    "de": "German", "en": "English", "tr": "Turkish", "ar": "Arabic", "bg": "Bulgarian",
    "ro": "Romanian", "pl": "Polish", "uk": "Ukrainian", "ru": "Russian", "fa": "Persian",
}  # fmt: skip
_PLACEHOLDER_RE = re.compile(r"(\[\[K\d+\]\])")


@dataclass
class FakeLibreTranslate:
    """State of the running fake; tests change ``down``, ``translations``, ``mangle``."""

    url: str = ""
    calls: int = 0
    down: bool = False
    mangle: bool = False
    #: Exact answers: ``{(text, target): answer}`` or ``{text: answer}``.
    translations: dict[Any, str] = field(default_factory=dict)
    #: Required ``api_key`` (None: no key needed).
    api_key: str | None = None
    #: Every /translate request body as received (parsed).
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, text: str, target: str) -> str:
        if (text, target) in self.translations:
            return self.translations[(text, target)]
        if text in self.translations:
            return self.translations[text]
        body = text
        if self.mangle:
            parts = _PLACEHOLDER_RE.split(text)
            body = "".join(p if _PLACEHOLDER_RE.fullmatch(p) else p.upper() for p in parts)
        return f"[{target}] {body}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        return

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.split("?")[0] != "/languages":
            self._send(404, {"error": "Not Found"})
            return
        self._send(
            200,
            [
                {"code": c, "name": NAMES[c], "targets": [t for t in SUPPORTED_LOCALES]}
                for c in SUPPORTED_LOCALES
            ],
        )

    def _read_body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8") if length else ""
        ctype = self.headers.get("Content-Type", "")
        if ctype.startswith("application/json"):
            try:
                data = json.loads(raw or "null")
            except ValueError:
                return None
            return data if isinstance(data, dict) else None
        form = parse_qs(raw)
        return {key: values if key == "q" and len(values) > 1 else values[0]
                for key, values in form.items()}  # fmt: skip

    def do_POST(self) -> None:
        fake = self.server.fake
        if self.path.split("?")[0] != "/translate":
            self._send(404, {"error": "Not Found"})
            return
        with fake.lock:
            fake.calls += 1
        if fake.down:
            self._send(503, {"error": "Service Unavailable"})
            return
        data = self._read_body()
        if data is None:
            self._send(400, {"error": "Invalid request: could not parse body"})
            return
        with fake.lock:
            fake.requests.append(data)
        if fake.api_key is not None and data.get("api_key") != fake.api_key:
            self._send(403, {"error": "Invalid API key"})
            return
        q, source, target = data.get("q"), data.get("source"), data.get("target")
        if q is None or q == "" or q == []:
            self._send(400, {"error": "Invalid request: missing q parameter"})
            return
        if not source:
            self._send(400, {"error": "Invalid request: missing source parameter"})
            return
        if not target:
            self._send(400, {"error": "Invalid request: missing target parameter"})
            return
        if source not in SUPPORTED_LOCALES and source != "auto":
            self._send(400, {"error": f"{source} is not supported"})
            return
        if target not in SUPPORTED_LOCALES:
            self._send(400, {"error": f"{target} is not supported"})
            return
        if isinstance(q, list):
            if not all(isinstance(item, str) for item in q):
                self._send(400, {"error": "Invalid request: q must be text"})
                return
            self._send(200, {"translatedText": [fake.answer(item, target) for item in q]})
        elif isinstance(q, str):
            self._send(200, {"translatedText": fake.answer(q, target)})
        else:
            self._send(400, {"error": "Invalid request: q must be text"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeLibreTranslate


def start_fake() -> tuple[FakeLibreTranslate, _Server, threading.Thread]:
    server = _Server(("127.0.0.1", 0), _Handler)
    fake = FakeLibreTranslate(url=f"http://127.0.0.1:{server.server_address[1]}")
    server.fake = fake
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="libretranslate-fake")
    thread.daemon = True
    thread.start()
    return fake, server, thread


@pytest.fixture
def libretranslate() -> Iterator[FakeLibreTranslate]:
    """A running LibreTranslate-compatible server on a free loopback port."""
    fake, server, thread = start_fake()
    yield fake
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
