"""Debian's Chromium under Playwright, as ARCHITECTURE.md ("Test harness") prescribes; shared by
the browser tests and the ``pwa_weight`` benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import BrowserContext, Playwright

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
TIMEOUT_MS = 15_000


def launch_chromium(
    playwright: Playwright, profile: Path, *, locale: str = "de-DE", **options: Any
) -> BrowserContext:
    """A persistent context (an incognito one can neither install nor subscribe to push) on a
    profile folder of its own; ``locale`` sets the browser's Accept-Language."""
    context = playwright.chromium.launch_persistent_context(
        profile,
        executable_path=str(CHROMIUM),
        headless=True,
        args=CHROMIUM_ARGS,
        locale=locale,
        **options,
    )
    context.set_default_timeout(TIMEOUT_MS)
    return context
