"""The access log never holds one-time tokens or query strings."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

from gunicorn.config import Config

from kita.access_log import MaskingLogger, mask_path


def test_token_paths_are_masked() -> None:
    assert mask_path("/join/SeCrEtToKeN123") == "/join/…"
    assert mask_path("/password/reset/abc-def_1") == "/password/reset/…"
    assert mask_path("/home") == "/home"


def test_logger_atoms_hide_the_token_in_every_field() -> None:
    logger = MaskingLogger(Config())
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": "/join/SeCrEtToKeN123?x=1",
        "PATH_INFO": "/join/SeCrEtToKeN123",
        "QUERY_STRING": "x=1",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_REFERER": "https://kita.test/join/SeCrEtToKeN123",
    }
    response = SimpleNamespace(status="200 OK", sent=10, headers=[])
    request = SimpleNamespace(headers=[])
    atoms = logger.atoms(response, request, environ, timedelta(milliseconds=5))
    assert "SeCrEtToKeN123" not in " ".join(str(value) for value in atoms.values())
    assert atoms["U"] == "/join/…"
    assert atoms["r"] == "GET /join/… HTTP/1.1"
