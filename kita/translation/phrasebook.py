"""The phrasebook: vetted standard messages of Kita life in every shipped language.

Composing from it needs no machine translation: each phrase is written by people in all ten
languages (``translations/phrasebook/<locale>.json``, German is the source of truth) with named
placeholders (``{date}``, ``{time}``, ``{place}`` ...) that are filled per language, dates and
times in the local format. Place and name placeholders are proper names and stay as typed.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, time
from functools import lru_cache
from pathlib import Path

from babel.dates import format_date, format_time
from flask_babel import lazy_gettext as _l

from kita.config import SUPPORTED_LOCALES
from kita.errors import ValidationError

PHRASEBOOK_DIR = Path(__file__).resolve().parent.parent.parent / "translations" / "phrasebook"
CATEGORIES = ("information", "event", "closure", "health", "urgent")
MAX_TEXT_PARAM = 80
# Dates with the weekday ("full") read best, except where the phrase puts the date after a
# preposition that would need the weekday in another grammatical case (Slavic languages).
DATE_FORMATS: Mapping[str, str] = {"bg": "long", "pl": "long", "ru": "long", "uk": "long"}

_PLACEHOLDER_RE = re.compile(r"\{([a-z_]+)\}")
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME_RE = re.compile(r"(\d{1,2}):(\d{2})")


class ParamKind(enum.StrEnum):
    DATE = "date"
    TIME = "time"
    TEXT = "text"


@dataclass(frozen=True)
class Phrase:
    key: str
    category: str
    #: Placeholder name → kind, in the order a form asks for them.
    params: tuple[tuple[str, ParamKind], ...] = ()

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.params)


@dataclass(frozen=True)
class RenderedPhrase:
    title: str
    body: str


D, T, X = ParamKind.DATE, ParamKind.TIME, ParamKind.TEXT


def _phrases(*items: Phrase) -> dict[str, Phrase]:
    return {item.key: item for item in items}


PHRASES: Mapping[str, Phrase] = _phrases(
    # closures
    Phrase("closed_tomorrow", "closure"),
    Phrase("closed_on_date", "closure", (("date", D),)),
    Phrase("holiday_closure", "closure", (("date_from", D), ("date_to", D))),
    Phrase("staff_training_closure", "closure", (("date", D),)),
    Phrase("strike", "closure", (("date", D),)),
    Phrase("closing_early", "closure", (("date", D), ("time", T))),
    Phrase("water_damage", "closure", (("date", D),)),
    # urgent
    Phrase("emergency_closure_today", "urgent"),
    Phrase("pick_up_child", "urgent"),
    Phrase("heating_failure", "urgent"),
    # health
    Phrase("head_lice", "health"),
    Phrase("fever_rule", "health"),
    Phrase("chickenpox", "health"),
    Phrase("flu_wave", "health"),
    Phrase("stomach_bug", "health"),
    Phrase("vaccination_reminder", "health", (("date", D),)),
    Phrase("medical_checkup", "health", (("date", D),)),
    Phrase("dental_check", "health", (("date", D),)),
    # events
    Phrase("parents_evening", "event", (("date", D), ("time", T))),
    Phrase("summer_festival", "event", (("date", D), ("time", T))),
    Phrase("excursion", "event", (("date", D), ("place", X), ("time", T))),
    Phrase("photographer_day", "event", (("date", D),)),
    Phrase("swimming_day", "event", (("date", D),)),
    Phrase("forest_day", "event", (("date", D),)),
    Phrase("library_visit", "event", (("date", D),)),
    Phrase("st_martin", "event", (("date", D), ("time", T))),
    Phrase("christmas_party", "event", (("date", D), ("time", T))),
    Phrase("parents_council_election", "event", (("date", D), ("time", T))),
    Phrase("packed_lunch", "event", (("date", D),)),
    # information
    Phrase("rain_clothes", "information"),
    Phrase("indoor_shoes", "information"),
    Phrase("sun_protection", "information"),
    Phrase("winter_clothes", "information"),
    Phrase("spare_clothes", "information"),
    Phrase("late_pickup_reminder", "information", (("time", T),)),
    Phrase("absence_notice", "information", (("time", T),)),
    Phrase("menu_change", "information", (("date", D),)),
    Phrase("contribution_letter", "information"),
    Phrase("new_educator", "information", (("name", X), ("date", D))),
    Phrase("settling_in_talk", "information", (("date", D), ("time", T))),
    Phrase("development_talk", "information", (("date", D), ("time", T))),
    Phrase("return_library_books", "information", (("date", D),)),
    Phrase("fire_drill", "information", (("date", D),)),
    Phrase("lost_property", "information", (("date", D),)),
    Phrase("photo_consent_reminder", "information", (("date", D),)),
)


@lru_cache(maxsize=len(SUPPORTED_LOCALES))
def load_texts(locale: str) -> Mapping[str, Mapping[str, str]]:
    """The phrase texts of one language: key → {"title", "body"}."""
    if locale not in SUPPORTED_LOCALES:
        raise ValueError(f"unsupported locale {locale!r}")
    path = PHRASEBOOK_DIR / f"{locale}.json"
    data: dict[str, dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))
    return data


def placeholders(text: str) -> set[str]:
    """The placeholder names used in a phrase text."""
    return set(_PLACEHOLDER_RE.findall(text))


def phrase_choices(locale: str) -> list[tuple[str, str]]:
    """(key, localised title) of every phrase, grouped by category, for a select box."""
    texts = load_texts(locale)
    ordered = sorted(PHRASES.values(), key=lambda p: CATEGORIES.index(p.category))
    return [(phrase.key, texts[phrase.key]["title"]) for phrase in ordered]


def _parse_date(raw: str) -> date | None:
    if not _DATE_RE.fullmatch(raw):
        return None
    try:
        value = date.fromisoformat(raw)
    except ValueError:
        return None
    return value if 2000 <= value.year <= 2100 else None


def _parse_time(raw: str) -> time | None:
    match = _TIME_RE.fullmatch(raw)
    if not match:
        return None
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23 or minute > 59:
        return None
    return time(hour, minute)


def validate_params(key: str, raw: Mapping[str, str]) -> dict[str, str]:
    """Check and normalise the placeholder values of phrase ``key``.

    Dates are ISO ``YYYY-MM-DD``, times ``HH:MM``, texts one line of at most 80 characters.
    Raises ValidationError naming each bad field; unknown extra fields are ignored.
    """
    phrase = PHRASES.get(key)
    if phrase is None:
        raise ValidationError({"phrase": _l("Please choose a message from the list.")})
    clean: dict[str, str] = {}
    errors: dict[str, object] = {}
    for name, kind in phrase.params:
        value = str(raw.get(name) or "").strip()
        if not value:
            errors[name] = _l("Please fill in this field.")
        elif kind is ParamKind.DATE:
            parsed_date = _parse_date(value)
            if parsed_date is None:
                errors[name] = _l("Please enter a date.")
            else:
                clean[name] = parsed_date.isoformat()
        elif kind is ParamKind.TIME:
            parsed_time = _parse_time(value)
            if parsed_time is None:
                errors[name] = _l("Please enter a time (hours:minutes).")
            else:
                clean[name] = parsed_time.strftime("%H:%M")
        elif len(value) > MAX_TEXT_PARAM or any(ch in value for ch in "\r\n\t\x00"):
            errors[name] = _l("Please use at most %(count)d characters on one line.",
                              count=MAX_TEXT_PARAM)  # fmt: skip
        else:
            clean[name] = value
    if "date_from" in clean and "date_to" in clean and clean["date_from"] > clean["date_to"]:
        errors["date_to"] = _l("The end date must not be before the start date.")
    if errors:
        raise ValidationError(errors)
    return clean


def render(key: str, params: Mapping[str, str], locale: str) -> RenderedPhrase:
    """Phrase ``key`` in ``locale`` with its placeholders filled (validated here)."""
    clean = validate_params(key, params)  # rejects unknown keys
    phrase = PHRASES[key]
    values: dict[str, str] = {}
    for name, kind in phrase.params:
        if kind is ParamKind.DATE:
            values[name] = format_date(
                date.fromisoformat(clean[name]), DATE_FORMATS.get(locale, "full"), locale=locale
            )
        elif kind is ParamKind.TIME:
            values[name] = format_time(_parse_time(clean[name]), "short", locale=locale)
        else:
            values[name] = clean[name]
    texts = load_texts(locale)[key]

    def _fill(text: str) -> str:
        # One pass: a value that itself contains "{date}" is not expanded again.
        return _PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), text)

    return RenderedPhrase(title=_fill(texts["title"]), body=_fill(texts["body"]))


def compose(
    key: str, params: Mapping[str, str], locales: Iterable[str]
) -> dict[str, RenderedPhrase]:
    """The phrase in each of ``locales``: what an announcement from the phrasebook sends."""
    return {locale: render(key, params, locale) for locale in locales}
