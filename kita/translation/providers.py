"""Machine translation providers: a LibreTranslate-compatible server (the self-hosted choice)
and DeepL. Both speak their real HTTP APIs; every network or HTTP failure becomes
:class:`TranslationUnavailable`, so callers fall back to the original text and retry later."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import requests

from kita.config import KitaConfig
from kita.errors import KitaError

#: (connect, read) seconds. A slow engine must not hold a request for long: the text is
#: delivered untranslated and retried by the worker instead.
TIMEOUT: tuple[float, float] = (3.05, 20.0)

# DeepL names languages in upper case; English as a target must name a variant. Persian is
# one of DeepL's beta languages, which a request must enable explicitly.
_DEEPL_SOURCE = {"de": "DE", "en": "EN", "tr": "TR", "ar": "AR", "bg": "BG", "ro": "RO",
                 "pl": "PL", "uk": "UK", "ru": "RU", "fa": "FA"}  # fmt: skip
_DEEPL_TARGET = {**_DEEPL_SOURCE, "en": "EN-GB"}
_DEEPL_BETA = frozenset({"fa"})


class TranslationUnavailable(KitaError):
    """The engine could not be reached or refused the request; the original is used."""

    status = 503


class TranslationProvider(Protocol):
    """Translates a batch of plain texts from one language into another."""

    name: str

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        """One translation per text, in order; raises :class:`TranslationUnavailable`."""
        ...


def _post_json(url: str, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    try:
        response = requests.post(
            url, json=payload, headers=headers, timeout=TIMEOUT, allow_redirects=False
        )
    except requests.RequestException as exc:
        raise TranslationUnavailable() from exc
    if response.status_code != 200:
        raise TranslationUnavailable()
    try:
        return response.json()
    except ValueError as exc:
        raise TranslationUnavailable() from exc


def _strings(value: Any, count: int) -> list[str]:
    if not isinstance(value, list) or len(value) != count:
        raise TranslationUnavailable()
    if not all(isinstance(item, str) for item in value):
        raise TranslationUnavailable()
    return value


class LibreTranslateProvider:
    """A LibreTranslate server: ``POST /translate`` with a list ``q`` translates a batch."""

    name = "libretranslate"

    def __init__(self, url: str, api_key: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.api_key = api_key or None

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        if not texts:
            return []
        payload: dict[str, Any] = {
            "q": list(texts),
            "source": source,
            "target": target,
            "format": "text",
        }
        if self.api_key:
            payload["api_key"] = self.api_key
        body = _post_json(f"{self.url}/translate", payload)
        if not isinstance(body, dict):
            raise TranslationUnavailable()
        return _strings(body.get("translatedText"), len(texts))

    def languages(self) -> list[dict[str, Any]]:
        """The server's ``GET /languages``: ``[{code, name, targets}, ...]``."""
        try:
            response = requests.get(f"{self.url}/languages", timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise TranslationUnavailable() from exc
        if response.status_code != 200:
            raise TranslationUnavailable()
        try:
            body = response.json()
        except ValueError as exc:
            raise TranslationUnavailable() from exc
        if not isinstance(body, list):
            raise TranslationUnavailable()
        return body


def deepl_default_url(api_key: str) -> str:
    """Keys of the free plan end in ``:fx`` and must use the free API host."""
    return "https://api-free.deepl.com" if api_key.endswith(":fx") else "https://api.deepl.com"


class DeepLProvider:
    """DeepL's v2 API: ``POST /v2/translate`` with ``Authorization: DeepL-Auth-Key <key>``."""

    name = "deepl"

    def __init__(self, api_key: str, url: str | None = None) -> None:
        self.api_key = api_key
        self.url = (url or deepl_default_url(api_key)).rstrip("/")

    def translate(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        if not texts:
            return []
        if source not in _DEEPL_SOURCE or target not in _DEEPL_TARGET:
            raise TranslationUnavailable()
        payload: dict[str, Any] = {
            "text": list(texts),
            "source_lang": _DEEPL_SOURCE[source],
            "target_lang": _DEEPL_TARGET[target],
        }
        if {source, target} & _DEEPL_BETA:
            payload["enable_beta_languages"] = True
        headers = {"Authorization": f"DeepL-Auth-Key {self.api_key}"}
        body = _post_json(f"{self.url}/v2/translate", payload, headers)
        translations = body.get("translations") if isinstance(body, dict) else None
        if not isinstance(translations, list):
            raise TranslationUnavailable()
        return _strings(
            [item.get("text") if isinstance(item, dict) else None for item in translations],
            len(texts),
        )


def provider_from_config(config: KitaConfig) -> TranslationProvider | None:
    """The configured provider, or None for ``KITA_TRANSLATION_PROVIDER=none``."""
    if config.translation_provider == "libretranslate":
        return LibreTranslateProvider(config.libretranslate_url, config.libretranslate_api_key)
    if config.translation_provider == "deepl":
        return DeepLProvider(config.deepl_api_key, config.deepl_url or None)
    return None
