"""PDF reports: the portfolio and the family export read back with poppler (pdftotext, pdffonts,
pdfimages), glyph coverage for every shipped script, and the locked-down URL fetcher."""

from __future__ import annotations

import datetime as dt
import io
import logging
import re
import shutil
import socket
import subprocess
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.support import Translations
from flask import Flask
from flask_babel import Babel
from flask_babel import lazy_gettext as _l
from PIL import Image
from weasyprint.urls import URLFetcher

from kita.reports import (
    AreaSection,
    FamilyExport,
    Portfolio,
    PortfolioEntry,
    Record,
    RefusedResourceError,
    ReportError,
    StaticFilesFetcher,
    Table,
    html_to_pdf,
    render_family_export,
    render_family_export_html,
    render_portfolio,
    render_portfolio_html,
)
from kita.reports import pdf as pdf_module

POPPLER = ("pdftotext", "pdffonts", "pdfimages", "pdfinfo")
pytestmark = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in POPPLER),
    reason="poppler-utils missing: run `make system-deps`",
)

GERMAN = "Das Kind baut einen Turm aus Holzklötzen und zählt die Stücke: Größe, Maß, Straße."
TURKISH = "Çocuk ğüşıöç İstanbul'da oynuyor"
ARABIC = "الطفل يلعب في الحديقة"
UKRAINIAN = "Дитина грається у саду: їжак, ґанок, єнот"
# One sample per shipped language: each must come back from the PDF character for character.
SAMPLES = {
    "de": GERMAN,
    "tr": TURKISH,
    "ar": ARABIC,
    "uk": UKRAINIAN,
    "fa": "کودک در باغ بازی می‌کند و گل‌ها را می‌شمارد",
    "bg": "Детето играе в градината с пясък и щастливо се смее",
    "ru": "Ребёнок играет в саду и считает жёлтые листья",
    "ro": "Copilul își construiește un turn și învață să numere: ăâîșț ĂÂÎȘȚ",
    "pl": "Dziecko bawi się w ogrodzie: żółć, gęślą, jaźń, Łódź, źdźbło",
    "en": "The child builds a tower and counts the blocks",
}
ENTRY_DATE = dt.date(2025, 3, 14)


def jpeg(
    width: int = 320, height: int = 240, colour: tuple[int, int, int] = (200, 90, 40)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def entry(text: str, *, title: str = "Beobachtung", **extra: Any) -> PortfolioEntry:
    return PortfolioEntry(date=ENTRY_DATE, title=title, text=text, author="Frau Schneider", **extra)


def portfolio(sections: list[AreaSection], *, locale: str = "ar") -> Portfolio:
    return Portfolio(
        child_name="Ayşe Yılmaz",
        kita_name="Kita Sonnenblume",
        group_name="Raupen",
        period=(dt.date(2023, 8, 1), dt.date(2026, 7, 31)),
        locale=locale,
        sections=sections,
    )


def normalise(text: str) -> str:
    """What pdftotext gives back, comparable to the source: Arabic presentation forms folded
    (NFKC), bidi controls and zero-width joiners dropped (format characters), no whitespace."""
    folded = unicodedata.normalize("NFKC", text)
    return "".join(c for c in folded if not c.isspace() and unicodedata.category(c) != "Cf")


def pdftotext(pdf: bytes) -> str:
    done = subprocess.run(["pdftotext", "-", "-"], input=pdf, capture_output=True, check=True)
    return done.stdout.decode("utf-8")


def page_count(pdf: bytes) -> int:
    done = subprocess.run(["pdfinfo", "-"], input=pdf, capture_output=True, check=True)
    match = re.search(rb"^Pages:\s+(\d+)$", done.stdout, re.MULTILINE)
    assert match
    return int(match[1])


class LogCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@dataclass(frozen=True)
class Rendered:
    pdf: bytes
    warnings: list[str]


def render_collecting_warnings(data: Portfolio) -> Rendered:
    """Render and keep WeasyPrint's warnings: it reports every character no font has
    (``.notdef glyph rendered``), which pdftotext cannot see (the text layer keeps the
    character even when the page shows an empty box)."""
    collector = LogCollector()
    logger = logging.getLogger("weasyprint")
    logger.addHandler(collector)
    try:
        pdf = render_portfolio(data)
    finally:
        logger.removeHandler(collector)
    return Rendered(pdf, collector.messages)


def pdffonts(pdf: bytes, tmp_path: Path) -> list[list[str]]:
    path = tmp_path / "fonts.pdf"
    path.write_bytes(pdf)
    done = subprocess.run(["pdffonts", str(path)], capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    # Header, dashes, then one row per font: name type... emb sub uni object id (from the right).
    return [line.split() for line in lines[2:] if line.strip()]


def pdfimages(pdf: bytes, tmp_path: Path) -> list[dict[str, str]]:
    path = tmp_path / "images.pdf"
    path.write_bytes(pdf)
    done = subprocess.run(
        ["pdfimages", "-list", str(path)], capture_output=True, text=True, check=True
    )
    lines = done.stdout.splitlines()
    header = lines[0].split()
    return [dict(zip(header, line.split(), strict=False)) for line in lines[2:] if line.strip()]


@pytest.fixture(scope="module")
def sample() -> Rendered:
    """A portfolio for an Arabic-speaking family with a sample of every language."""
    sections = [
        AreaSection(
            area_title="Bewegung",
            translated_area_title="الحركة",
            entries=[
                entry(
                    GERMAN,
                    title="Der Turm",
                    translated_title="البرج",
                    translated_text=ARABIC,
                    photos=[jpeg(), jpeg(colour=(30, 120, 200))],
                ),
                entry(UKRAINIAN, title=TURKISH),
            ],
        ),
        AreaSection(
            area_title="Sprache und Kommunikation",
            entries=[entry(text, title=f"Probe {code}") for code, text in SAMPLES.items()],
        ),
    ]
    return render_collecting_warnings(portfolio(sections))


@pytest.fixture(scope="module")
def sample_pdf(sample: Rendered) -> bytes:
    return sample.pdf


def test_portfolio_text_reads_back_in_every_script(sample_pdf: bytes) -> None:
    text = normalise(pdftotext(sample_pdf))

    for expected in (GERMAN, TURKISH, ARABIC, UKRAINIAN, "Çocuk ğüşıöç", "الحركة", "البرج"):
        assert normalise(expected) in text
    for expected in ("Ayşe Yılmaz", "Kita Sonnenblume", "Raupen", "Frau Schneider"):
        assert normalise(expected) in text
    # Dates in German, the period on the cover, page numbers in the footer ("page / pages").
    assert "14.03.2025" in text
    assert "01.08.2023–31.07.2026" in text
    pages = page_count(sample_pdf)
    assert pages >= 4
    assert f"1/{pages}" not in text  # the cover page has no footer
    assert f"2/{pages}" in text and f"{pages}/{pages}" in text


def test_arabic_words_come_back_in_reading_order(sample_pdf: bytes) -> None:
    lines = [normalise(line) for line in pdftotext(sample_pdf).splitlines()]

    assert normalise(ARABIC) in lines
    words = [normalise(word) for word in ARABIC.split()]
    for word in words:
        assert any(word in line for line in lines)


@pytest.mark.parametrize("code", sorted(SAMPLES))
def test_every_sample_comes_back_character_for_character(sample_pdf: bytes, code: str) -> None:
    text = pdftotext(sample_pdf)

    assert "\ufffd" not in text
    assert normalise(SAMPLES[code]) in normalise(text)


def test_no_glyph_is_missing(sample: Rendered) -> None:
    assert not [m for m in sample.warnings if "notdef" in m]


def test_missing_glyph_would_be_noticed() -> None:
    # The check above can fail: a character no installed font has is reported, by code point.
    marker = "Fehlt\U0010fffdHier"
    rendered = render_collecting_warnings(
        portfolio([AreaSection(area_title="Probe", entries=[entry(marker)])])
    )

    missing = [m for m in rendered.warnings if "notdef" in m]
    assert len(missing) == 1
    assert "U+10FFFD" in missing[0]


def test_every_font_is_embedded(sample_pdf: bytes, tmp_path: Path) -> None:
    fonts = pdffonts(sample_pdf, tmp_path)

    assert fonts
    for row in fonts:
        emb, _sub, _uni = row[-5:-2]
        assert emb == "yes", row
    names = " ".join(row[0] for row in fonts)
    assert "Noto-Sans-Arabic" in names
    assert "Noto-Sans" in names


def test_photos_are_embedded_as_jpeg_images(sample_pdf: bytes, tmp_path: Path) -> None:
    images = pdfimages(sample_pdf, tmp_path)

    photos = [i for i in images if i["enc"] == "jpeg"]
    assert len(photos) == 2
    assert {(p["width"], p["height"]) for p in photos} == {("320", "240")}


def test_portfolio_html_marks_languages_and_direction() -> None:
    html = render_portfolio_html(
        portfolio(
            [
                AreaSection(
                    area_title="Bewegung",
                    translated_area_title="الحركة",
                    entries=[entry(GERMAN, translated_text=ARABIC)],
                )
            ],
            locale="fa",
        )
    )

    assert '<html lang="de" dir="ltr">' in html
    assert f'<div class="text translated" lang="fa" dir="rtl">{ARABIC}</div>' in html
    assert '<span class="translation" lang="fa" dir="rtl">الحركة</span>' in html


def test_german_family_gets_no_translation_blocks() -> None:
    html = render_portfolio_html(
        portfolio(
            [AreaSection(area_title="Bewegung", entries=[entry(GERMAN, translated_text=ARABIC)])],
            locale="de",
        )
    )

    assert ARABIC not in html
    assert 'class="translation' not in html


def test_empty_portfolio_says_so() -> None:
    html = render_portfolio_html(portfolio([], locale="tr"))
    message = "No entries have been shared with the family yet."
    catalogs = str(Path(__file__).resolve().parents[2] / "translations")
    german = Translations.load(catalogs, ["de"]).gettext(message)
    turkish = Translations.load(catalogs, ["tr"]).gettext(message)

    # German first (the Kita's language), then the family's language.
    assert german != message
    assert german in html
    assert turkish in html
    assert 'class="area"' not in html


def write_catalog(directory: Path, locale: str, messages: dict[str, str]) -> None:
    catalog = Catalog(locale=locale)
    for msgid, msgstr in messages.items():
        catalog.add(msgid, msgstr)
    target = directory / locale / "LC_MESSAGES"
    target.mkdir(parents=True)
    with (target / "messages.mo").open("wb") as handle:
        write_mo(handle, catalog)


@pytest.fixture
def catalogs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Compiled German, Turkish and Persian catalogs with a few report strings."""
    write_catalog(tmp_path, "de", {"Development portfolio": "Entwicklungsportfolio"})
    write_catalog(
        tmp_path,
        "tr",
        {"Development portfolio": "Gelişim portfolyosu", "Period": "Dönem", "Group": "Grup"},
    )
    write_catalog(
        tmp_path,
        "fa",
        {"Personal data of %(name)s": "دادهٔ شخصی %(name)s", "Children": "کودکان"},
    )
    monkeypatch.setattr(pdf_module, "TRANSLATIONS_DIR", tmp_path)
    return tmp_path


def test_headings_are_german_with_the_family_language(catalogs: Path) -> None:
    html = render_portfolio_html(portfolio([], locale="tr"))

    assert (
        'Entwicklungsportfolio<span class="translation" lang="tr" dir="ltr">'
        "Gelişim portfolyosu</span>" in html
    )
    # No German translation for "Group": the msgid stands, then the Turkish text.
    assert 'Group<span class="translation" lang="tr" dir="ltr">Grup</span>' in html


def test_family_export_is_right_to_left_and_escapes_data(catalogs: Path) -> None:
    html = render_family_export_html(family_export(locale="fa", name="<b>Sara</b>"))

    assert '<html lang="fa" dir="rtl">' in html
    assert "دادهٔ شخصی &lt;b&gt;Sara&lt;/b&gt;" in html
    assert "<b>Sara</b>" not in html
    assert "<h2>کودکان</h2>" in html


def test_lazy_labels_render_in_the_export_locale_inside_the_app(catalogs: Path) -> None:
    app = Flask(__name__)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(catalogs)
    Babel(app, locale_selector=lambda: "de")
    export = family_export(locale="tr")
    labelled = Record(title=_l("Period"), rows=[(_l("Group"), "Raupen")])

    with app.app_context():
        html = render_family_export_html(FamilyExport(**{**export.__dict__, "guardian": labelled}))

    assert "<h3>Dönem</h3>" in html
    assert '<th scope="row">Grup</th>' in html


def family_export(*, locale: str, name: str = "Sara Ahmadi") -> FamilyExport:
    given = dt.datetime(2025, 1, 10, 8, 30, tzinfo=dt.UTC)
    return FamilyExport(
        locale=locale,
        subject_name=name,
        generated_at=dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC),
        guardian=Record(title=name, rows=[("E-Mail", "sara@example.org"), ("Sprache", "فارسی")]),
        children=[
            Record(title="Dariush Ahmadi", rows=[("Geburtsdatum", dt.date(2021, 5, 4))]),
        ],
        consents=Table(
            title="Einwilligungen",
            columns=["Kind", "Zweck", "Erteilt", "Widerrufen"],
            rows=[["Dariush Ahmadi", "Dokumentation", given, None]],
        ),
        entries=[
            Record(
                title="Im Garten",
                rows=[("Datum", dt.date(2025, 3, 14))],
                text=SAMPLES["fa"],
                photos=[jpeg(200, 150)],
            )
        ],
        audit_events=Table(
            title="Zugriffe",
            columns=["Wann", "Wer", "Was"],
            rows=[[given, "Frau Schneider", "Eintrag gelesen"]],
        ),
    )


def test_family_export_pdf_holds_every_section(tmp_path: Path) -> None:
    pdf = render_family_export(family_export(locale="fa"))

    text = normalise(pdftotext(pdf))
    for expected in ("sara@example.org", "Dariush Ahmadi", "Einwilligungen", "Eintrag gelesen"):
        assert normalise(expected) in text
    assert normalise(SAMPLES["fa"]) in text
    # Times in the app's zone (UTC+1 in January), dates in the export's locale.
    assert "9:30:00" in text
    assert "–" in text  # the consent that was never withdrawn
    assert len([i for i in pdfimages(pdf, tmp_path) if i["enc"] == "jpeg"]) == 1
    assert all(row[-5] == "yes" for row in pdffonts(pdf, tmp_path))


def test_images_must_be_jpeg_or_png() -> None:
    bad = entry(GERMAN, photos=[b"GIF89a" + b"\0" * 32])

    with pytest.raises(ReportError, match="JPEG or PNG"):
        render_portfolio_html(portfolio([AreaSection(area_title="Bewegung", entries=[bad])]))


def test_naive_datetimes_and_unknown_locales_are_refused() -> None:
    export = family_export(locale="de")
    naive_time = dt.datetime(2026, 7, 1, 12, 0)
    naive = FamilyExport(**{**export.__dict__, "generated_at": naive_time})

    with pytest.raises(ReportError, match="naive"):
        render_family_export_html(naive)
    with pytest.raises(ReportError, match="locale"):
        render_family_export_html(family_export(locale="xx"))
    with pytest.raises(ReportError, match="locale"):
        render_portfolio_html(portfolio([], locale="klingon"))


# URL fetcher: only data: URLs and files in the static folder.


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A TCP port that records whether anything connected to it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


def connections(server: socket.socket) -> int:
    count = 0
    while True:
        try:
            client, _address = server.accept()
        except BlockingIOError:
            return count
        client.close()
        count += 1


@pytest.mark.parametrize(
    "markup",
    [
        '<img src="http://127.0.0.1:{port}/x.png">',
        '<img src="https://127.0.0.1:{port}/x.png">',
        '<link rel="stylesheet" href="http://127.0.0.1:{port}/x.css">',
        "<style>@import url(http://127.0.0.1:{port}/x.css);</style>",
        '<p style="background: url(http://127.0.0.1:{port}/x.png)">x</p>',
    ],
)
def test_network_urls_are_refused_and_never_fetched(listener: socket.socket, markup: str) -> None:
    port = listener.getsockname()[1]
    html = f"<html><body>{markup.format(port=port)}<p>text</p></body></html>"

    with pytest.raises(RefusedResourceError, match="refused"):
        html_to_pdf(html)
    assert connections(listener) == 0


def test_the_unreachable_port_from_the_brief_is_refused_before_connecting() -> None:
    with pytest.raises(RefusedResourceError, match=r"http://127\.0\.0\.1:1/x\.png"):
        html_to_pdf('<img src="http://127.0.0.1:1/x.png">')


@pytest.mark.parametrize(
    "src",
    [
        "file:///etc/passwd",
        "file://localhost/etc/passwd",
        "file://evil.example/etc/passwd",
        "../../../../../../etc/passwd",
        "icons/../../pyproject.toml",
        "icons/not-there.png",
    ],
)
def test_files_outside_the_static_folder_are_refused(
    src: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Spies on the two ways a file could be read: ours, and urllib's (the parent fetcher).
    read: list[Path] = []
    passed_on: list[str] = []
    original_read = Path.read_bytes
    original_fetch = URLFetcher.fetch

    def spy_read(path: Path) -> bytes:
        read.append(path)
        return original_read(path)

    def spy_fetch(self: URLFetcher, url: str, headers: object = None) -> object:
        passed_on.append(url)
        return original_fetch(self, url, headers)

    monkeypatch.setattr(Path, "read_bytes", spy_read)
    monkeypatch.setattr(URLFetcher, "fetch", spy_fetch)

    with pytest.raises(RefusedResourceError):
        html_to_pdf(f'<img src="{src}"><link rel="stylesheet" href="{src}">')
    assert read == []
    assert passed_on == []


def test_symlinks_out_of_the_static_folder_are_refused(tmp_path: Path) -> None:
    static = tmp_path / "static"
    static.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("not for reports")
    (static / "link.txt").symlink_to(secret)
    (static / "ok.css").write_text("p { color: red }")
    fetcher = StaticFilesFetcher(static)

    with pytest.raises(RefusedResourceError):
        fetcher.fetch((static / "link.txt").as_uri())
    response = fetcher.fetch((static / "ok.css").as_uri())
    assert response.read() == b"p { color: red }"
    assert response.content_type == "text/css"


def test_static_files_and_data_urls_are_allowed() -> None:
    fetcher = StaticFilesFetcher()

    icon = fetcher.fetch(pdf_module.static_url("icons/icon-192.png"))
    assert icon.read().startswith(b"\x89PNG")
    assert icon.content_type == "image/png"
    data = fetcher.fetch("data:text/plain;base64,aGFsbG8=")
    assert data.read() == b"hallo"


def test_user_text_cannot_inject_markup_or_fetch(listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    hostile = (
        f'<img src="http://127.0.0.1:{port}/x.png"><link rel=stylesheet href="file:///etc/passwd">'
    )
    hostile_portfolio = portfolio(
        [AreaSection(area_title="Bewegung", entries=[entry(hostile, title=hostile)])]
    )

    html = render_portfolio_html(hostile_portfolio)
    pdf = render_portfolio(hostile_portfolio)

    assert f"&lt;img src=&#34;http://127.0.0.1:{port}/x.png&#34;&gt;" in html
    assert normalise(f'<img src="http://127.0.0.1:{port}/x.png">') in normalise(pdftotext(pdf))
    assert connections(listener) == 0
