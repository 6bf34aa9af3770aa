"""Language detection of short texts (parents' replies) with py3langid, whose model ships inside
the wheel: nothing is downloaded at run time.

py3langid (4.6 MB, numpy only) was chosen over lingua-language-detector, whose wheel is 96 MB.
The classifier is restricted to the shipped languages and must be confident; text with too few
letters or an unclear result gives None, and the caller then keeps the family's own language.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from kita.config import SUPPORTED_LOCALES

#: Below this many letters a guess is not worth showing.
MIN_LETTERS = 8
#: Normalised probability the best language needs.
MIN_CONFIDENCE = 0.9


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages(list(SUPPORTED_LOCALES))
    return identifier


def detect_language(text: str) -> str | None:
    """The supported locale ``text`` is written in, or None when it is unclear."""
    if sum(1 for char in text if char.isalpha()) < MIN_LETTERS:
        return None
    language, confidence = _identifier().classify(text)
    if confidence < MIN_CONFIDENCE or language not in SUPPORTED_LOCALES:
        return None
    return str(language)
