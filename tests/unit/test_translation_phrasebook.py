"""The phrasebook: every phrase in every shipped language, same placeholders, local formats."""

from __future__ import annotations

import re

import pytest

from kita.config import SUPPORTED_LOCALES
from kita.errors import ValidationError
from kita.translation import phrasebook
from kita.translation.phrasebook import PHRASES, ParamKind, load_texts, placeholders, render

SAMPLE = {
    "date": "2026-11-26",
    "date_from": "2026-07-20",
    "date_to": "2026-08-07",
    "time": "07:45",
    "place": "Zoo Duisburg",
    "name": "Anna Schmidt",
}
LEFTOVER_RE = re.compile(r"[{}]")


def sample_params(key: str) -> dict[str, str]:
    return {name: SAMPLE[name] for name in PHRASES[key].param_names}


def test_at_least_forty_phrases_with_known_categories() -> None:
    assert len(PHRASES) >= 40
    assert {p.category for p in PHRASES.values()} == set(phrasebook.CATEGORIES)


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_every_phrase_exists_with_the_declared_placeholders(locale: str) -> None:
    texts = load_texts(locale)
    assert set(texts) == set(PHRASES), f"{locale}: missing or extra phrases"
    for key, phrase in PHRASES.items():
        entry = texts[key]
        assert set(entry) == {"title", "body"}, (locale, key)
        assert entry["title"].strip() and entry["body"].strip(), (locale, key)
        # Titles double as select-box labels: they carry no placeholders.
        assert placeholders(entry["title"]) == set(), (locale, key)
        assert placeholders(entry["body"]) == set(phrase.param_names), (locale, key)
        # German is the source of truth: the same placeholders everywhere.
        assert placeholders(entry["body"]) == placeholders(load_texts("de")[key]["body"])


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_every_phrase_renders_without_leftover_placeholders(locale: str) -> None:
    for key in PHRASES:
        rendered = render(key, sample_params(key), locale)
        assert not LEFTOVER_RE.search(rendered.title + rendered.body), (locale, key)
        for name in ("place", "name"):
            if name in PHRASES[key].param_names:
                assert SAMPLE[name] in rendered.body


@pytest.mark.parametrize(
    ("locale", "date_text", "time_text"),
    [
        ("de", "Donnerstag, 26. November 2026", "19:30"),
        ("en", "Thursday, November 26, 2026", "7:30\u202fPM"),
        ("tr", "26 Kasım 2026 Perşembe", "19:30"),
        ("ar", "26 نوفمبر 2026", "م"),
        ("pl", "26 listopada 2026", "19:30"),
        ("uk", "26 листопада 2026", "19:30"),
        ("ru", "26 ноября 2026", "19:30"),
        ("fa", "نوامبر", "19:30"),
    ],
)
def test_dates_and_times_use_the_local_format(locale: str, date_text: str, time_text: str) -> None:
    body = render("parents_evening", {"date": "2026-11-26", "time": "19:30"}, locale).body
    assert date_text in body
    assert time_text in body


def test_german_source_reads_as_expected() -> None:
    rendered = render("holiday_closure", {"date_from": "2026-07-20", "date_to": "2026-08-07"}, "de")
    assert rendered.title == "Schließzeit in den Ferien"
    assert rendered.body.startswith(
        "Die Kita ist vom Montag, 20. Juli 2026 bis zum Freitag, 7. August 2026 geschlossen."
    )


def test_a_value_containing_braces_is_not_expanded_again() -> None:
    body = render("excursion", {"date": "2026-05-04", "place": "{date}", "time": "08:00"}, "de")
    assert "Ziel: {date}." in body.body


def test_phrase_choices_are_localised_and_complete() -> None:
    choices = dict(phrasebook.phrase_choices("tr"))
    assert set(choices) == set(PHRASES)
    assert choices["head_lice"] == "Bit"
    ordered = [PHRASES[key].category for key, _ in phrasebook.phrase_choices("de")]
    assert ordered == sorted(ordered, key=phrasebook.CATEGORIES.index)


def test_validate_params_normalises() -> None:
    clean = phrasebook.validate_params(
        "excursion", {"date": "2026-05-04", "time": "8:05", "place": "  Zoo  ", "extra": "x"}
    )
    assert clean == {"date": "2026-05-04", "time": "08:05", "place": "Zoo"}


@pytest.mark.parametrize(
    ("key", "raw", "field"),
    [
        ("unknown_phrase", {}, "phrase"),
        ("closed_on_date", {}, "date"),
        ("closed_on_date", {"date": "26.11.2026"}, "date"),
        ("closed_on_date", {"date": "2026-02-30"}, "date"),
        ("closed_on_date", {"date": "1999-12-31"}, "date"),
        ("late_pickup_reminder", {"time": "24:00"}, "time"),
        ("late_pickup_reminder", {"time": "7 Uhr"}, "time"),
        ("excursion", {"date": "2026-05-04", "time": "08:00", "place": "x" * 81}, "place"),
        ("excursion", {"date": "2026-05-04", "time": "08:00", "place": "a\nb"}, "place"),
        ("holiday_closure", {"date_from": "2026-08-07", "date_to": "2026-07-20"}, "date_to"),
    ],
)
def test_validate_params_rejects_bad_input(key: str, raw: dict[str, str], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        phrasebook.validate_params(key, raw)
    assert field in info.value.fields


def test_param_kinds_match_their_names() -> None:
    for phrase in PHRASES.values():
        for name, kind in phrase.params:
            expected = (
                ParamKind.DATE
                if name.startswith("date")
                else ParamKind.TIME
                if name == "time"
                else ParamKind.TEXT
            )
            assert kind is expected, (phrase.key, name)
