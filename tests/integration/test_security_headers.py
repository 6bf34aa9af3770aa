"""Every route, in every state, answers with the hardening headers."""

from __future__ import annotations

import uuid

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from kita.models.accounts import Role
from tests.factories import make_kita, make_user


def _concrete_paths(app: Flask) -> list[str]:
    paths = []
    for rule in app.url_map.iter_rules():
        values: dict[str, object] = {}
        for argument in rule.arguments:
            converter = rule._converters[argument]
            values[argument] = uuid.uuid4() if "UUID" in type(converter).__name__ else "x" * 20
        if rule.endpoint == "static":
            values = {"filename": "app.css"}
        with app.test_request_context():
            from flask import url_for

            paths.append(url_for(rule.endpoint, **values))
    return sorted(set(paths))


def _check(response_headers: dict[str, str], path: str, secure: bool = False) -> None:
    csp = response_headers.get("Content-Security-Policy", "")
    assert csp, path
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
    assert "frame-ancestors 'none'" in csp, path
    assert "script-src 'self'" in csp, path
    assert response_headers.get("X-Content-Type-Options") == "nosniff", path
    assert response_headers.get("Referrer-Policy") == "no-referrer", path
    if not path.startswith("/static/"):
        assert response_headers.get("Cache-Control") == "no-store", path
    if secure:
        assert "max-age=" in response_headers.get("Strict-Transport-Security", ""), path
    else:
        assert "Strict-Transport-Security" not in response_headers, path


@pytest.mark.parametrize("who", ["anonymous", "parent", "leader"])
def test_headers_on_every_route(
    app: Flask, client: FlaskClient, db: Session, login: object, who: str
) -> None:
    kita = make_kita(db)
    if who != "anonymous":
        role = Role.PARENT if who == "parent" else Role.LEADER
        login(make_user(db, roles=[(kita, role)]))  # type: ignore[operator]
    paths = _concrete_paths(app)
    assert len(paths) > 5
    for path in paths:
        with client.get(path) as response:
            assert response.status_code != 500, path
            _check(dict(response.headers), path)


def test_hsts_only_over_https(client: FlaskClient) -> None:
    response = client.get("/login", base_url="https://kita.test")
    _check(dict(response.headers), "/login", secure=True)


def test_error_pages_are_localised_without_internals(client: FlaskClient) -> None:
    response = client.get("/does-not-exist", headers={"Accept-Language": "tr"})
    assert response.status_code == 404
    body = response.get_data(as_text=True)
    assert 'lang="tr"' in body
    assert "Traceback" not in body and "werkzeug" not in body.lower()


def test_unexpected_errors_show_a_generic_page(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    @app.route("/boom")
    def boom() -> str:
        raise RuntimeError("secret detail of Aylin Muster")

    app.view_functions["boom"].kita_guard = "public"  # type: ignore[attr-defined]
    with caplog.at_level("ERROR"):
        response = client.get("/boom")
    assert response.status_code == 500
    # The log names the failure and where, not its message (which may carry content).
    assert "RuntimeError" in caplog.text
    assert "boom (" in caplog.text
    assert "Aylin" not in caplog.text
    body = response.get_data(as_text=True)
    assert "Aylin" not in body and "RuntimeError" not in body
    assert "Nothing you entered was saved" in body
    _check(dict(response.headers), "/boom")
