"""A gunicorn access logger that never writes one-time tokens (invitation and password reset
links are credentials until used) or query strings to the log."""

from __future__ import annotations

import re
from typing import Any

from gunicorn.glogging import Logger

TOKEN_PATH = re.compile(r"(/join/|/password/reset/)[^/?#\s]+")


def mask_path(path: str) -> str:
    """``/join/<token>`` → ``/join/…`` wherever it appears in the text; the rest unchanged."""
    return TOKEN_PATH.sub(r"\1…", path)


class MaskingLogger(Logger):
    def atoms(
        self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any
    ) -> dict[str, Any]:
        atoms: dict[str, Any] = super().atoms(resp, req, environ, request_time)
        path = mask_path(str(environ.get("PATH_INFO") or ""))
        atoms["r"] = f"{environ.get('REQUEST_METHOD')} {path} {environ.get('SERVER_PROTOCOL')}"
        atoms["q"] = "-"
        atoms["f"] = "-"
        # Every other atom (headers, environ values) too: a token can hide in any of them.
        return {
            key: mask_path(value) if isinstance(value, str) else value
            for key, value in atoms.items()
        }
