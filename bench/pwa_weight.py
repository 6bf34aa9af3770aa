"""``pwa_weight``: what the parent's home costs a phone, measured in Debian's Chromium.

The app runs under gunicorn on a small city (one Kita of families, built like the demo); one
parent is logged in by a session cookie, so the measured load is the home page itself, cold:
an empty browser profile, no HTTP cache, no service worker yet.

- ``js_gzip_bytes``: the app's JavaScript (page scripts and the service worker), gzipped.
- ``css_bytes``, ``html_bytes``, ``total_bytes``: bytes transferred (headers and bodies as sent),
  including what the service worker fetches to install its shell.
- ``offline_ms``: with the worker installed (warm) and the browser offline, from starting the
  navigation to /home until the page's heading is rendered; the median of several runs. The
  page is the parent's feed as the worker kept it at the last online visit (pwa/sw.js), checked
  to show the parent's child and the saved-copy note.

Targets (issue 5): js_gzip_bytes ≤ 30,000, total_bytes ≤ 100,000, offline_ms ≤ 300.
"""

from __future__ import annotations

import statistics
import time

from bench.city import City
from bench.registry import BenchError, RunContext, register
from bench.results import Figure, figure
from bench.server import HOST, gunicorn

NAME = "pwa_weight"
FAMILIES = 70
OFFLINE_RUNS = 7


@register(NAME)
def pwa_weight(ctx: RunContext) -> list[Figure]:
    """Parent home in Chromium: JS gzipped, CSS, HTML and total bytes cold; offline_ms warm."""
    try:
        from playwright.sync_api import sync_playwright

        from tests.browser.budget import measure_cold_load, measure_offline_ms
        from tests.browser.chromium import CHROMIUM, launch_chromium
    except ImportError as exc:  # the dev extra is not installed
        raise BenchError(f"playwright is missing ({exc}): run `make install`") from exc
    if not CHROMIUM.exists():
        raise BenchError(f"{CHROMIUM} is missing: run `make system-deps`")

    instance = ctx.workdir / "pwa-instance"
    instance.mkdir()
    city = City.create(instance)
    ctx.stack.callback(city.dispose)
    city.grow_to(FAMILIES)
    token, parent = city.log_in(1)[0]

    with (
        gunicorn(instance, workers=1, log=ctx.workdir / "pwa-gunicorn.log") as server,
        sync_playwright() as playwright,
    ):
        base = f"http://{server.host}:{server.port}"
        context = launch_chromium(playwright, ctx.workdir / "pwa-profile")
        try:
            context.add_cookies(
                [{"name": server.cookie_name, "value": token, "domain": HOST, "path": "/"}]
            )
            weight = measure_cold_load(context, f"{base}/home")
            ctx.log("cold load of /home:\n" + weight.describe())

            page = context.new_page()
            page.goto(f"{base}/home", wait_until="load")
            if parent.child_name not in page.locator("main").inner_text():
                raise BenchError(f"/home at {page.url} does not show the parent's child")
            page.wait_for_function("() => navigator.serviceWorker.controller !== null")
            context.set_offline(True)
            timings = []
            for _ in range(OFFLINE_RUNS):
                timings.append(measure_offline_ms(page, f"{base}/home"))
                time.sleep(0.05)
            if "/home" not in page.url or page.locator("main h1").count() != 1:
                raise BenchError("the offline navigation did not render a page")
            if (
                page.locator("main[data-offline]").count() != 1
                or parent.child_name not in page.locator("main").inner_text()
            ):
                raise BenchError("offline, /home was not the parent's kept feed")
        finally:
            context.close()

    ctx.log(f"offline_ms runs: {[round(t, 1) for t in timings]}")
    return [
        figure(NAME, "js_gzip_bytes", weight.js_gzip_bytes, "B", digits=0),
        figure(NAME, "css_bytes", weight.css_bytes, "B", digits=0),
        figure(NAME, "html_bytes", weight.html_bytes, "B", digits=0),
        figure(NAME, "total_bytes", weight.total_bytes, "B", digits=0),
        figure(NAME, "offline_ms", statistics.median(timings), "ms"),
    ]
