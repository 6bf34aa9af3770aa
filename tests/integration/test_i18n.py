"""Locale choice (user setting > session choice > Accept-Language > Kita default > de), right-to-
left layout, the language switch, and locale-aware formatting."""

from __future__ import annotations

from datetime import date

import pytest
from babel.support import Translations
from flask import Flask
from flask.testing import FlaskClient
from flask_babel import format_date, format_decimal
from sqlalchemy.orm import Session

from kita import catalogs
from kita.models.accounts import Role, User
from tests.conftest import post_form
from tests.factories import make_child, make_group, make_kita, make_user


def _translated(locale: str, text: str) -> str:
    return Translations.load(str(catalogs.TRANSLATIONS), [locale]).gettext(text)


def _lang(body: str) -> str:
    return body.split('lang="', 1)[1].split('"', 1)[0]


@pytest.mark.parametrize("locale", ["de", "en", "tr", "ar", "bg", "ro", "pl", "uk", "ru", "fa"])
def test_login_page_in_every_language(client: FlaskClient, locale: str) -> None:
    body = client.get("/login", headers={"Accept-Language": f"{locale},en;q=0.1"}).get_data(
        as_text=True
    )
    assert _lang(body) == locale
    translated = _translated(locale, "Forgot your password?")
    assert translated in body
    if locale != "en":  # the catalog really was compiled and used
        assert translated != "Forgot your password?"
        assert "Forgot your password?" not in body
    assert ('dir="rtl"' in body) == (locale in {"ar", "fa"})


def test_default_is_german(client: FlaskClient) -> None:
    client.environ_base.pop("HTTP_ACCEPT_LANGUAGE")
    body = client.get("/login").get_data(as_text=True)
    assert _lang(body) == "de"
    assert _translated("de", "Forgot your password?") in body
    assert "Forgot your password?" not in body


def test_user_setting_beats_accept_language(
    client: FlaskClient, db: Session, login: object
) -> None:
    login(make_user(db, locale="uk"))  # type: ignore[operator]
    body = client.get("/home", headers={"Accept-Language": "tr"}).get_data(as_text=True)
    assert _lang(body) == "uk"


def test_kita_default_when_the_browser_offers_nothing_we_ship(
    client: FlaskClient, db: Session, login: object
) -> None:
    kita = make_kita(db, default_locale="ro")
    login(make_user(db, roles=[(kita, Role.PARENT)]))  # type: ignore[operator]
    body = client.get("/home", headers={"Accept-Language": "ja"}).get_data(as_text=True)
    assert _lang(body) == "ro"
    body = client.get("/home", headers={"Accept-Language": "bg"}).get_data(as_text=True)
    assert _lang(body) == "bg"


def test_switch_before_login_is_kept_in_the_session(client: FlaskClient) -> None:
    response = post_form(client, "/language", {"locale": "fa", "next": "/login"})
    assert response.headers["Location"] == "/login"
    body = client.get("/login", headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert _lang(body) == "fa"
    assert 'dir="rtl"' in body


def test_switch_after_login_is_stored_on_the_account(
    client: FlaskClient, db: Session, login: object
) -> None:
    user = make_user(db, locale="de")
    login(user)  # type: ignore[operator]
    post_form(client, "/language", {"locale": "ar", "next": "/home"}, token_from="/home")
    db.rollback()
    db.expire_all()
    assert db.get(User, user.id).locale == "ar"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example", "/\\evil", "/home\r\nX-Evil: 1"]
)
def test_switch_never_redirects_elsewhere(client: FlaskClient, target: str) -> None:
    response = post_form(client, "/language", {"locale": "tr", "next": target})
    assert response.headers["Location"] == "/"


def test_unknown_language_changes_nothing(client: FlaskClient) -> None:
    client.environ_base.pop("HTTP_ACCEPT_LANGUAGE")
    post_form(client, "/language", {"locale": "xx", "next": "/login"})
    assert _lang(client.get("/login").get_data(as_text=True)) == "de"


def test_every_page_has_the_language_switch(
    client: FlaskClient, db: Session, login: object
) -> None:
    kita = make_kita(db)
    child = make_child(db, make_group(db, kita))
    login(make_user(db, roles=[(kita, Role.PARENT)], children=[child]))  # type: ignore[operator]
    for path in ("/home", "/account", "/offline", "/no-such-page"):
        body = client.get(path).get_data(as_text=True)
        assert 'id="language-select"' in body, path
        assert body.count("<option value=") >= 10, path


def test_dates_and_numbers_follow_the_locale(app: Flask) -> None:
    day = date(2026, 3, 31)
    with app.test_request_context(headers={"Accept-Language": "de"}):
        assert format_date(day) == "31.03.2026"
        assert format_decimal(1234.5) == "1.234,5"
    with app.test_request_context(headers={"Accept-Language": "en"}):
        assert format_date(day) == "Mar 31, 2026"
    with app.test_request_context(headers={"Accept-Language": "ar"}):
        assert format_decimal(1234.5) != "1234.5"
