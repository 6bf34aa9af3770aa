"""The translator against a local LibreTranslate-compatible server, on the real database:
memory, glossary, engine outages, corrections and the phrasebook."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kita.config import SUPPORTED_LOCALES, KitaConfig
from kita.errors import ValidationError
from kita.models.messaging import TranslationMemoryEntry, TranslationStatus
from kita.services.translation import MAX_BATCH_TEXTS, Translator, translator_for
from kita.translation import phrasebook
from kita.translation.providers import LibreTranslateProvider
from tests.factories import make_user
from tests.libretranslate_fake import FakeLibreTranslate

TEXT = "Morgen kommt der Zahnarzt in die Kita. Bitte Zahnbürste mitgeben."


@pytest.fixture
def engine_config(config: KitaConfig, libretranslate: FakeLibreTranslate) -> KitaConfig:
    return replace(
        config, translation_provider="libretranslate", libretranslate_url=libretranslate.url
    )


@pytest.fixture
def translator(db: Session, engine_config: KitaConfig) -> Translator:
    return translator_for(db, engine_config)


def memory_rows(db: Session) -> int:
    return db.scalar(select(func.count()).select_from(TranslationMemoryEntry)) or 0


def test_second_translation_of_the_same_text_costs_no_engine_call(
    db: Session,
    translator: Translator,
    engine_config: KitaConfig,
    libretranslate: FakeLibreTranslate,
) -> None:
    first = translator.translate(TEXT, "de", "tr")
    assert (first.text, first.status, first.provider) == (
        f"[tr] {TEXT}",
        TranslationStatus.MACHINE,
        "libretranslate",
    )
    assert libretranslate.calls == 1
    db.commit()

    # A new translator (as in the next request) on the same database: memory, no call.
    again = translator_for(db, engine_config)
    second = again.translate(TEXT, "de", "tr")
    assert (second.text, second.status) == (f"[tr] {TEXT}", TranslationStatus.MEMORY)
    assert libretranslate.calls == 1
    assert memory_rows(db) == 1
    # Another target language is a different text for the memory.
    assert again.translate(TEXT, "de", "ar").status is TranslationStatus.MACHINE
    assert libretranslate.calls == 2


def test_batch_sends_only_misses_in_one_call(
    translator: Translator, libretranslate: FakeLibreTranslate
) -> None:
    translator.translate("Guten Morgen", "de", "pl")
    results = translator.translate_many(
        ["Guten Morgen", "Bis morgen", "", "Bis morgen", "Schönes Wochenende"], "de", "pl"
    )
    assert [r.status for r in results] == [
        TranslationStatus.MEMORY,
        TranslationStatus.MACHINE,
        TranslationStatus.ORIGINAL,
        TranslationStatus.MACHINE,
        TranslationStatus.MACHINE,
    ]
    assert libretranslate.calls == 2
    assert libretranslate.requests[-1]["q"] == ["Bis morgen", "Schönes Wochenende"]


def test_large_batches_are_split(
    translator: Translator, libretranslate: FakeLibreTranslate
) -> None:
    texts = [f"Satz Nummer {n}." for n in range(MAX_BATCH_TEXTS + 3)]
    results = translator.translate_many(texts, "de", "en")
    assert [r.text for r in results] == [f"[en] {t}" for t in texts]
    assert [len(r["q"]) for r in libretranslate.requests] == [MAX_BATCH_TEXTS, 3]


def test_glossary_terms_survive_an_engine_that_changes_every_word(
    db: Session, config: KitaConfig, libretranslate: FakeLibreTranslate
) -> None:
    libretranslate.mangle = True
    translator = Translator(
        db, LibreTranslateProvider(libretranslate.url), extra_terms=["Sonnengruppe"]
    )
    text = "Die Kita-Card der Sonnengruppe: Elternbeirat und U3 treffen sich in der Kita (KiBiz)."
    result = translator.translate(text, "de", "ru")
    assert result.text == (
        "[ru] DIE Kita-Card DER Sonnengruppe: Elternbeirat UND U3 TREFFEN SICH IN DER Kita (KiBiz)."
    )
    # The engine saw placeholders, never the terms.
    sent = libretranslate.requests[0]["q"][0]
    assert "Kita" not in sent and "Elternbeirat" not in sent and "[[K0]]" in sent


def test_engine_down_gives_the_original_as_pending_then_a_retry_translates(
    db: Session, translator: Translator, libretranslate: FakeLibreTranslate
) -> None:
    libretranslate.down = True
    result = translator.translate(TEXT, "de", "uk")
    assert (result.text, result.status, result.provider) == (
        TEXT,
        TranslationStatus.PENDING,
        None,
    )
    assert memory_rows(db) == 0  # nothing half-stored

    libretranslate.down = False
    retried = translator.translate(TEXT, "de", "uk")
    assert (retried.text, retried.status) == (f"[uk] {TEXT}", TranslationStatus.MACHINE)
    assert libretranslate.calls == 2
    assert memory_rows(db) == 1


def test_no_provider_means_pending_without_any_call(
    db: Session, config: KitaConfig, libretranslate: FakeLibreTranslate
) -> None:
    translator = translator_for(db, config)  # translation_provider="none"
    assert translator.provider is None
    result = translator.translate(TEXT, "de", "fa")
    assert (result.text, result.status) == (TEXT, TranslationStatus.PENDING)
    assert translator.translate(TEXT, "de", "de").status is TranslationStatus.ORIGINAL
    assert translator.back_translate(TEXT, "fa", "de") is None
    assert libretranslate.calls == 0


def test_a_correction_is_stored_and_wins(
    db: Session, translator: Translator, libretranslate: FakeLibreTranslate
) -> None:
    editor = make_user(db, name="Leitung")
    db.commit()
    assert translator.translate(TEXT, "de", "tr").status is TranslationStatus.MACHINE
    translator.correct(TEXT, "de", "tr", "  Yarın diş hekimi Kita'ya geliyor.  ", editor.id)
    db.commit()

    fresh = Translator(db, LibreTranslateProvider(libretranslate.url))
    result = fresh.translate(TEXT, "de", "tr")
    assert (result.text, result.status) == (
        "Yarın diş hekimi Kita'ya geliyor.",
        TranslationStatus.CORRECTED,
    )
    assert libretranslate.calls == 1
    entry = db.scalars(select(TranslationMemoryEntry)).one()
    assert entry.corrected_by_id == editor.id

    # A correction for a text never machine-translated is used right away as well.
    translator.correct("Neu", "de", "ar", "جديد", editor.id)
    assert translator.translate("Neu", "de", "ar").text == "جديد"
    assert libretranslate.calls == 1


def test_conversation_texts_stay_out_of_the_memory(
    db: Session, engine_config: KitaConfig, libretranslate: FakeLibreTranslate
) -> None:
    private = translator_for(db, engine_config, use_memory=False)
    assert private.translate("Unser Kind hat Fieber.", "de", "ro").status is (
        TranslationStatus.MACHINE
    )
    assert private.translate("Unser Kind hat Fieber.", "de", "ro").status is (
        TranslationStatus.MACHINE
    )
    assert libretranslate.calls == 2
    assert memory_rows(db) == 0
    with pytest.raises(ValueError, match="conversations"):
        private.correct("a", "de", "ro", "b", make_user(db).id)


def test_back_translation_for_the_staff_preview(
    translator: Translator, libretranslate: FakeLibreTranslate
) -> None:
    libretranslate.translations[("Yarın kapalıyız.", "de")] = "Morgen haben wir geschlossen."
    assert translator.back_translate("Yarın kapalıyız.", "tr", "de") == (
        "Morgen haben wir geschlossen."
    )
    libretranslate.down = True
    assert translator.back_translate("Başka bir metin.", "tr", "de") is None


def test_unknown_languages_are_rejected(translator: Translator) -> None:
    with pytest.raises(ValidationError) as info:
        translator.translate(TEXT, "de", "xx")
    assert "target" in info.value.fields
    with pytest.raises(ValidationError):
        translator.translate(TEXT, "klingon", "de")


def test_another_glossary_does_not_reuse_the_memory(
    db: Session, libretranslate: FakeLibreTranslate
) -> None:
    provider = LibreTranslateProvider(libretranslate.url)
    Translator(db, provider).translate(TEXT, "de", "bg")
    Translator(db, provider, extra_terms=["Zahnarzt"]).translate(TEXT, "de", "bg")
    assert libretranslate.calls == 2


def test_composing_from_the_phrasebook_needs_no_engine(
    translator: Translator, libretranslate: FakeLibreTranslate
) -> None:
    for key, phrase in phrasebook.PHRASES.items():
        params = {name: "2026-12-01" for name in phrase.param_names if name.startswith("date")}
        params.update({name: "10:00" for name in phrase.param_names if name == "time"})
        params.update({name: "Zoo" for name in phrase.param_names if name in {"place", "name"}})
        if "date_to" in params:
            params["date_to"] = "2026-12-24"
        rendered = phrasebook.compose(key, params, SUPPORTED_LOCALES)
        assert set(rendered) == set(SUPPORTED_LOCALES)
        assert rendered["de"].body != rendered["tr"].body
    assert libretranslate.calls == 0
