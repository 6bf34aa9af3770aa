"""Page weight of a cold first load, measured in Chromium over the DevTools protocol.

Used by tests/browser/test_budget.py and by the ``pwa_weight`` benchmark (bench/pwa_weight.py).
Bytes are what crossed the wire (``encodedDataLength``: headers and body as sent); the app's
JavaScript is counted gzipped as well (what a compressing proxy in front of the app would send),
because the issue's budget is stated that way.
"""

from __future__ import annotations

import gzip
import time
from base64 import b64decode
from dataclasses import dataclass, field
from typing import Any

from playwright.sync_api import BrowserContext, Page

#: The issue's budget for the parent's home page.
JS_GZIP_BUDGET = 30_000
TOTAL_BUDGET = 100_000
OFFLINE_MS_BUDGET = 300


@dataclass
class Transfer:
    url: str
    kind: str  # "script", "stylesheet", "document", "other"
    size: int
    body: bytes = b""


@dataclass(frozen=True)
class PageWeight:
    """A cold load of one page, including what the service worker fetched to install itself."""

    js_gzip_bytes: int
    css_bytes: int
    html_bytes: int
    total_bytes: int
    transfers: tuple[Transfer, ...] = field(default=(), repr=False)

    def describe(self) -> str:
        return "\n".join(f"{t.size:>8} {t.kind:<10} {t.url}" for t in self.transfers)


def _kind(resource_type: str, mime_type: str) -> str:
    if resource_type == "Script" or "javascript" in mime_type:
        return "script"
    if resource_type == "Stylesheet" or mime_type == "text/css":
        return "stylesheet"
    if resource_type == "Document" or mime_type == "text/html":
        return "document"
    return "other"


def measure_cold_load(context: BrowserContext, url: str, *, settle_s: float = 0.5) -> PageWeight:
    """Open ``url`` in a new page of ``context`` (whose caches must be empty) and add up every
    byte transferred until the service worker is installed and the network is quiet.

    The page's own requests come from the DevTools ``Network`` domain of the page; the service
    worker runs in a target of its own, so its install fetches come from Playwright's request
    events, whose sizes are read from the same protocol."""
    page: Page = context.new_page()
    cdp = context.new_cdp_session(page)
    responses: dict[str, dict[str, Any]] = {}
    transfers: list[Transfer] = []
    scripts: dict[str, Transfer] = {}

    def on_response(event: dict[str, Any]) -> None:
        responses[event["requestId"]] = event

    def on_finished(event: dict[str, Any]) -> None:
        seen = responses.get(event["requestId"])
        if seen is not None:
            response = seen["response"]
            kind = _kind(seen.get("type", ""), response.get("mimeType", ""))
            transfer = Transfer(response["url"], kind, int(event["encodedDataLength"]))
            transfers.append(transfer)
            if kind == "script":
                scripts[event["requestId"]] = transfer

    worker_requests: list[Any] = []
    context.on(
        "requestfinished",
        lambda request: worker_requests.append(request) if request.service_worker else None,
    )
    cdp.on("Network.responseReceived", on_response)
    cdp.on("Network.loadingFinished", on_finished)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": False})
    page.goto(url, wait_until="load")
    page.evaluate("() => navigator.serviceWorker.ready")
    page.wait_for_load_state("networkidle")
    time.sleep(settle_s)  # the worker's last install fetches finish after "ready" resolves
    for request_id, transfer in scripts.items():
        reply = cdp.send("Network.getResponseBody", {"requestId": request_id})
        text = reply["body"]
        transfer.body = b64decode(text) if reply.get("base64Encoded") else text.encode("utf-8")
    for request in worker_requests:
        sizes = request.sizes()
        response = request.response()
        mime = response.headers.get("content-type", "") if response else ""
        kind = _kind("", mime.split(";")[0])
        body = response.body() if response and kind == "script" else b""
        body_bytes = max(sizes["responseBodySize"], 0)
        if request.url == request.service_worker.url:
            # The worker's own script is fetched by the browser, which reports no body size
            # for it; it is served with no-store, so it always crosses the wire in full.
            body_bytes = len(body)
        transfers.append(
            Transfer(
                f"(service worker) {request.url}",
                kind,
                sizes["responseHeadersSize"] + body_bytes,
                body,
            )
        )
    cdp.detach()
    page.close()

    js_gzip = sum(len(gzip.compress(t.body, 9)) for t in transfers if t.body)
    return PageWeight(
        js_gzip_bytes=js_gzip,
        css_bytes=sum(t.size for t in transfers if t.kind == "stylesheet"),
        html_bytes=sum(t.size for t in transfers if t.kind == "document"),
        total_bytes=sum(t.size for t in transfers),
        transfers=tuple(transfers),
    )


def measure_offline_ms(page: Page, url: str, *, selector: str = "main h1") -> float:
    """Milliseconds from starting a navigation to ``url`` to ``selector`` being rendered, with
    the page already controlled by the service worker (warm) and the context offline."""
    started = time.perf_counter()
    page.goto(url, wait_until="commit")
    page.locator(selector).first.wait_for(state="visible")
    return (time.perf_counter() - started) * 1000
