"""Provider clients against local servers speaking the real wire formats, and their config."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kita.config import ConfigError, KitaConfig
from kita.translation.providers import (
    DeepLProvider,
    LibreTranslateProvider,
    TranslationUnavailable,
    deepl_default_url,
    provider_from_config,
)
from tests.conftest import TEST_SECRET
from tests.libretranslate_fake import FakeLibreTranslate

DEEPL_KEY = "0b1c2d3e-test-key:fx"


class DeepLFake(ThreadingHTTPServer):
    """Answers like DeepL's ``POST /v2/translate``; ``status`` forces an error status."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _DeepLHandler)
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.status = 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _DeepLHandler(BaseHTTPRequestHandler):
    server: DeepLFake

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append((dict(self.headers), body))
        if self.path != "/v2/translate":
            self._send(404, {"message": "Not found"})
        elif self.headers.get("Authorization") != f"DeepL-Auth-Key {DEEPL_KEY}":
            self._send(403, {"message": "Authorization failure, check auth_key"})
        elif "FA" in (body.get("source_lang"), body["target_lang"]) and not body.get(
            "enable_beta_languages"
        ):
            self._send(400, {"message": "Value for 'target_lang' not supported."})
        elif self.server.status != 200:
            self._send(self.server.status, {"message": "Quota exceeded"})
        else:
            source = body["source_lang"]
            self._send(
                200,
                {
                    "translations": [
                        {"detected_source_language": source, "text": f"<{body['target_lang']}> {t}"}
                        for t in body["text"]
                    ]
                },
            )


@pytest.fixture
def deepl() -> Iterator[DeepLFake]:
    server = DeepLFake()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_deepl_speaks_the_v2_wire_format(deepl: DeepLFake) -> None:
    provider = DeepLProvider(DEEPL_KEY, deepl.url)
    assert provider.translate(["Hallo", "Die Kita"], "de", "en") == [
        "<EN-GB> Hallo",
        "<EN-GB> Die Kita",
    ]
    headers, body = deepl.received[0]
    assert headers["Authorization"] == f"DeepL-Auth-Key {DEEPL_KEY}"
    assert headers["Content-Type"] == "application/json"
    assert body == {"text": ["Hallo", "Die Kita"], "source_lang": "DE", "target_lang": "EN-GB"}
    assert provider.translate(["Merhaba"], "tr", "de") == ["<DE> Merhaba"]
    # Persian is a DeepL beta language: the request must enable those.
    assert provider.translate(["Hallo"], "de", "fa") == ["<FA> Hallo"]
    assert deepl.received[-1][1]["enable_beta_languages"] is True
    assert "enable_beta_languages" not in deepl.received[1][1]


@pytest.mark.parametrize("status", [403, 429, 456, 500, 503])
def test_deepl_errors_become_unavailable(deepl: DeepLFake, status: int) -> None:
    deepl.status = status
    with pytest.raises(TranslationUnavailable):
        DeepLProvider(DEEPL_KEY, deepl.url).translate(["Hallo"], "de", "tr")


def test_deepl_wrong_key_is_unavailable(deepl: DeepLFake) -> None:
    with pytest.raises(TranslationUnavailable):
        DeepLProvider("wrong", deepl.url).translate(["Hallo"], "de", "tr")


def test_deepl_default_hosts() -> None:
    assert deepl_default_url("abc:fx") == "https://api-free.deepl.com"
    assert deepl_default_url("abc") == "https://api.deepl.com"
    assert DeepLProvider("abc:fx").url == "https://api-free.deepl.com"


def test_libretranslate_batch_and_key(libretranslate: FakeLibreTranslate) -> None:
    libretranslate.api_key = "secret-key"
    provider = LibreTranslateProvider(libretranslate.url, "secret-key")
    assert provider.translate(["Hallo", "Tschüss"], "de", "uk") == ["[uk] Hallo", "[uk] Tschüss"]
    assert libretranslate.calls == 1
    assert libretranslate.requests[0] == {
        "q": ["Hallo", "Tschüss"],
        "source": "de",
        "target": "uk",
        "format": "text",
        "api_key": "secret-key",
    }
    with pytest.raises(TranslationUnavailable):
        LibreTranslateProvider(libretranslate.url, "other").translate(["Hallo"], "de", "uk")


def test_libretranslate_refuses_unknown_language(libretranslate: FakeLibreTranslate) -> None:
    with pytest.raises(TranslationUnavailable):
        LibreTranslateProvider(libretranslate.url).translate(["Hallo"], "de", "xx")


def test_libretranslate_down_or_unreachable_is_unavailable(
    libretranslate: FakeLibreTranslate,
) -> None:
    libretranslate.down = True
    with pytest.raises(TranslationUnavailable):
        LibreTranslateProvider(libretranslate.url).translate(["Hallo"], "de", "tr")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    with pytest.raises(TranslationUnavailable):
        LibreTranslateProvider(f"http://127.0.0.1:{closed_port}").translate(["a"], "de", "tr")


def test_libretranslate_languages(libretranslate: FakeLibreTranslate) -> None:
    languages = LibreTranslateProvider(libretranslate.url).languages()
    codes = {entry["code"] for entry in languages}
    assert codes == {"de", "en", "tr", "ar", "bg", "ro", "pl", "uk", "ru", "fa"}
    assert all("fa" in entry["targets"] for entry in languages)


def test_empty_batch_makes_no_request(libretranslate: FakeLibreTranslate) -> None:
    assert LibreTranslateProvider(libretranslate.url).translate([], "de", "tr") == []
    assert libretranslate.calls == 0


# --- configuration ------------------------------------------------------------------------


def _env(tmp_path: Path, **values: str) -> dict[str, str]:
    return {"KITA_SECRET_KEY": TEST_SECRET, "KITA_INSTANCE_PATH": str(tmp_path), **values}


def test_config_reads_the_provider(tmp_path: Path) -> None:
    config = KitaConfig.from_env(
        _env(
            tmp_path,
            KITA_TRANSLATION_PROVIDER="LibreTranslate",
            KITA_LIBRETRANSLATE_URL="http://lt.internal:5000/",
            KITA_LIBRETRANSLATE_API_KEY="k",
        )
    )
    provider = provider_from_config(config)
    assert isinstance(provider, LibreTranslateProvider)
    assert (provider.url, provider.api_key) == ("http://lt.internal:5000", "k")
    deepl_config = KitaConfig.from_env(
        _env(tmp_path, KITA_TRANSLATION_PROVIDER="deepl", KITA_DEEPL_API_KEY="abc:fx")
    )
    deepl_provider = provider_from_config(deepl_config)
    assert isinstance(deepl_provider, DeepLProvider)
    assert deepl_provider.url == "https://api-free.deepl.com"
    assert provider_from_config(KitaConfig.from_env(_env(tmp_path))) is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"KITA_TRANSLATION_PROVIDER": "google"}, "KITA_TRANSLATION_PROVIDER='google' is unknown"),
        ({"KITA_TRANSLATION_PROVIDER": "libretranslate"}, "needs KITA_LIBRETRANSLATE_URL"),
        (
            {"KITA_TRANSLATION_PROVIDER": "libretranslate", "KITA_LIBRETRANSLATE_URL": "lt:5000"},
            "needs KITA_LIBRETRANSLATE_URL",
        ),
        ({"KITA_TRANSLATION_PROVIDER": "deepl"}, "needs KITA_DEEPL_API_KEY"),
        ({"KITA_DEEPL_URL": "ftp://deepl"}, "KITA_DEEPL_URL must be"),
    ],
)
def test_bad_provider_config_is_a_clear_error(
    tmp_path: Path, values: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        KitaConfig.from_env(_env(tmp_path, **values))


def test_replace_builds_a_test_config(tmp_path: Path) -> None:
    base = KitaConfig.from_env(_env(tmp_path))
    with pytest.raises(ConfigError):
        replace(base, translation_provider="libretranslate")
