"""Translating free texts for families: the translation memory first, then the configured engine.

A text goes to the engine at most once per (source language, target language, glossary): the
result is kept in ``TranslationMemoryEntry`` and reused. Staff corrections replace the entry
and win over anything an engine says later. With no provider, or the engine down, the
original comes back as PENDING so it is delivered with a "not translated" note and retried.
Conversation texts use ``use_memory=False``: they are personal and must not land readable in
the shared memory.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kita.config import SUPPORTED_LOCALES, KitaConfig
from kita.db import utcnow
from kita.errors import ValidationError
from kita.models.messaging import TranslationMemoryEntry, TranslationStatus
from kita.translation import glossary
from kita.translation.providers import (
    TranslationProvider,
    TranslationUnavailable,
    provider_from_config,
)

#: The provider name stored with a staff correction.
CORRECTED_PROVIDER = "corrected"
#: One engine request carries at most this many texts and characters (servers limit both).
MAX_BATCH_TEXTS = 50
MAX_BATCH_CHARS = 20_000


@dataclass
class TranslationResult:
    text: str
    status: TranslationStatus
    provider: str | None


def memory_key(text: str, source: str, target: str, glossary_version: str) -> bytes:
    """sha256 over source locale, target locale, glossary version and the exact text."""
    material = "\x1f".join((source, target, glossary_version, text))
    return hashlib.sha256(material.encode("utf-8")).digest()


def _check_locale(field: str, locale: str) -> None:
    if locale not in SUPPORTED_LOCALES:
        raise ValidationError({field: _l("This language is not supported.")})


class Translator:
    """Translates texts between shipped languages through memory and engine (see module doc)."""

    def __init__(
        self,
        db: Session,
        provider: TranslationProvider | None,
        *,
        use_memory: bool = True,
        extra_terms: Sequence[str] = (),
    ) -> None:
        self.db = db
        self.provider = provider
        self.use_memory = use_memory
        # Names that must stay intact besides the glossary (group names, for instance).
        self.extra_terms = tuple(extra_terms)
        self.glossary_version = glossary.glossary_version(self.extra_terms)

    # -- public API -------------------------------------------------------------------------

    def translate(self, text: str, source: str, target: str) -> TranslationResult:
        """``text`` (in ``source``) in ``target``; never raises for engine trouble."""
        return self.translate_many([text], source, target)[0]

    def translate_many(
        self, texts: Sequence[str], source: str, target: str
    ) -> list[TranslationResult]:
        """Like :meth:`translate` for several texts; all memory misses go in one engine call."""
        _check_locale("source", source)
        _check_locale("target", target)
        results: list[TranslationResult | None] = [None] * len(texts)
        misses: dict[str, list[int]] = {}
        for index, text in enumerate(texts):
            if source == target or not text.strip():
                results[index] = TranslationResult(text, TranslationStatus.ORIGINAL, None)
                continue
            entry = self._lookup(text, source, target)
            if entry is not None:
                results[index] = self._from_memory(entry)
            else:
                misses.setdefault(text, []).append(index)
        if misses:
            translated = self._engine(list(misses), source, target)
            for text, indexes in misses.items():
                result = translated.get(text)
                if result is None:
                    result = TranslationResult(text, TranslationStatus.PENDING, None)
                for index in indexes:
                    results[index] = result
        return [result for result in results if result is not None]

    def back_translate(self, text: str, source: str, target: str) -> str | None:
        """``text`` (a translation in ``source``) rendered back into ``target``, usually German,
        so staff can check a translation; None when no engine can do it now."""
        result = self.translate(text, source, target)
        if result.status is TranslationStatus.PENDING:
            return None
        return result.text

    def correct(
        self, source_text: str, source: str, target: str, corrected: str, user_id: uuid.UUID
    ) -> None:
        """Store a staff member's translation; it is used from now on instead of the engine's."""
        if not self.use_memory:
            raise ValueError("corrections are kept in the shared memory; not for conversations")
        _check_locale("source", source)
        _check_locale("target", target)
        if not corrected.strip():
            raise ValidationError({"translation": _l("Please fill in this field.")})
        key = memory_key(source_text, source, target, self.glossary_version)
        entry = self.db.scalar(
            select(TranslationMemoryEntry).where(TranslationMemoryEntry.source_hash == key)
        )
        now = utcnow()
        if entry is None:
            entry = TranslationMemoryEntry(
                source_hash=key,
                source_locale=source,
                target_locale=target,
                source_text=source_text,
                created_at=now,
            )
            self.db.add(entry)
        entry.translated_text = corrected.strip()
        entry.provider = CORRECTED_PROVIDER
        entry.corrected_by_id = user_id
        entry.used_at = now
        self.db.flush()

    # -- internals --------------------------------------------------------------------------

    def _lookup(self, text: str, source: str, target: str) -> TranslationMemoryEntry | None:
        if not self.use_memory:
            return None
        key = memory_key(text, source, target, self.glossary_version)
        return self.db.scalar(
            select(TranslationMemoryEntry).where(TranslationMemoryEntry.source_hash == key)
        )

    def _from_memory(self, entry: TranslationMemoryEntry) -> TranslationResult:
        entry.used_at = utcnow()
        if entry.corrected_by_id is not None or entry.provider == CORRECTED_PROVIDER:
            return TranslationResult(entry.translated_text, TranslationStatus.CORRECTED, None)
        return TranslationResult(entry.translated_text, TranslationStatus.MEMORY, entry.provider)

    def _engine(self, texts: list[str], source: str, target: str) -> dict[str, TranslationResult]:
        if self.provider is None:
            return {}
        results: dict[str, TranslationResult] = {}
        for batch in _batches(texts):
            protected = [glossary.protect(text, self.extra_terms) for text in batch]
            try:
                answers = self.provider.translate([p.text for p in protected], source, target)
            except TranslationUnavailable:
                # The rest stays PENDING too: a down engine would only make each batch wait.
                break
            for text, safe, answer in zip(batch, protected, answers, strict=True):
                translated = glossary.restore(answer, safe.slots)
                results[text] = TranslationResult(
                    translated, TranslationStatus.MACHINE, self.provider.name
                )
                self._remember(text, source, target, translated)
        return results

    def _remember(self, text: str, source: str, target: str, translated: str) -> None:
        if not self.use_memory or self.provider is None:
            return
        entry = TranslationMemoryEntry(
            source_hash=memory_key(text, source, target, self.glossary_version),
            source_locale=source,
            target_locale=target,
            source_text=text,
            translated_text=translated,
            provider=self.provider.name,
        )
        # Another request may have stored the same text meanwhile (the hash is unique); a
        # savepoint keeps the caller's transaction usable, and the first entry stays.
        try:
            with self.db.begin_nested():
                self.db.add(entry)
        except IntegrityError:
            pass


def _batches(texts: list[str]) -> list[list[str]]:
    batches: list[list[str]] = []
    size = 0
    for text in texts:
        if batches and len(batches[-1]) < MAX_BATCH_TEXTS and size + len(text) <= MAX_BATCH_CHARS:
            batches[-1].append(text)
            size += len(text)
        else:
            batches.append([text])
            size = len(text)
    return batches


def translator_for(
    db: Session, config: KitaConfig, *, use_memory: bool = True, extra_terms: Sequence[str] = ()
) -> Translator:
    """A translator with the configured provider (none → every free text stays PENDING)."""
    return Translator(
        db, provider_from_config(config), use_memory=use_memory, extra_terms=extra_terms
    )
