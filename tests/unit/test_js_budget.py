"""The issue's budget for the app's JavaScript: all of it (page modules and the service worker,
also those only some pages load) at most 30 KB gzipped, each file counted on its own as a
browser would fetch it."""

from __future__ import annotations

import gzip

from kita.app import PROJECT_ROOT
from tests.browser.budget import JS_GZIP_BUDGET


def test_all_app_javascript_fits_the_budget() -> None:
    scripts = sorted((PROJECT_ROOT / "pwa").rglob("*.js"))
    names = {path.name for path in scripts}
    assert {"app.js", "sw.js", "push.js"} <= names
    sizes = {path.name: len(gzip.compress(path.read_bytes(), 9)) for path in scripts}
    assert sum(sizes.values()) <= JS_GZIP_BUDGET, sizes
