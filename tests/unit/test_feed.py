"""Which text a parent reads: their language when a usable translation exists, a fallback to
the language the message was sent for, else the original with the "not translated" flag."""

from __future__ import annotations

import pytest

from kita.models.messaging import (
    Announcement,
    AnnouncementTranslation,
    Category,
    TranslationStatus,
)
from kita.services.feed import localise


def announcement() -> Announcement:
    return Announcement(
        category=Category.INFORMATION, source_locale="de", title="Läuse", body="Bitte prüfen."
    )


def translation(locale: str, status: TranslationStatus) -> AnnouncementTranslation:
    return AnnouncementTranslation(
        locale=locale, title=f"title-{locale}", body=f"body-{locale}", status=status
    )


def test_the_readers_language_comes_first() -> None:
    text = localise(
        announcement(),
        [
            translation("tr", TranslationStatus.CORRECTED),
            translation("ar", TranslationStatus.MACHINE),
        ],
        ["ar", "tr"],
    )
    assert (text.shown.title, text.shown.locale, text.shown.direction) == ("title-ar", "ar", "rtl")
    assert (text.translated, text.not_translated, text.machine) == (True, False, True)
    assert (text.original.title, text.original.locale) == ("Läuse", "de")


def test_falls_back_to_the_language_it_was_sent_for() -> None:
    text = localise(announcement(), [translation("tr", TranslationStatus.PHRASEBOOK)], ["uk", "tr"])
    assert (text.shown.locale, text.machine, text.not_translated) == ("tr", False, False)


@pytest.mark.parametrize("status", [TranslationStatus.PENDING, None])
def test_pending_or_missing_gives_the_original_with_the_flag(
    status: TranslationStatus | None,
) -> None:
    rows = [translation("tr", status)] if status else []
    text = localise(announcement(), rows, ["tr"])
    assert text.shown == text.original
    assert (text.translated, text.not_translated) == (False, True)


def test_the_source_language_needs_no_translation() -> None:
    text = localise(announcement(), [translation("de", TranslationStatus.MACHINE)], ["de", "tr"])
    assert text.shown.title == "Läuse"
    assert (text.translated, text.not_translated) == (False, False)
