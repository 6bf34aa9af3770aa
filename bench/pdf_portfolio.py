"""PDF benchmark of the hand-over portfolio (kita/reports).

- ``pdf_portfolio``: seconds to render a ~20-page portfolio with 20 JPEG photos (1600 x 1200,
  quality 85, as the upload pipeline stores them) through ``render_portfolio`` (Jinja template,
  locked-down URL fetcher, WeasyPrint), compared with WeasyPrint rendering the same final HTML
  string directly (``weasyprint.HTML(string=html).write_pdf()``) in the same run. Each is run
  three times after one untimed warm-up, interleaved; the medians are reported.
  Targets: ≤ 1.5 s, ratio ≤ 1.2.
"""

from __future__ import annotations

import datetime as dt
import gc
import io
import random
import re
import statistics
import subprocess
import time
from collections.abc import Callable

import weasyprint
from PIL import Image, ImageDraw, ImageFilter

from bench.registry import BenchError, RunContext, register
from bench.results import Figure, figure
from kita.reports import AreaSection, Portfolio, PortfolioEntry
from kita.reports.portfolio import render_portfolio, render_portfolio_html

NAME = "pdf_portfolio"
PHOTOS = 20
PHOTO_SIZE = (1600, 1200)
JPEG_QUALITY = 85
RUNS = 3
# The figure is for "a 20-page portfolio": the run fails when the layout drifts away from it.
PAGES = range(18, 23)
AREAS = (
    "Bewegung",
    "Körper, Gesundheit und Ernährung",
    "Sprache und Kommunikation",
    "Soziale und (inter-)kulturelle Bildung",
    "Musisch-ästhetische Bildung",
    "Religion und Ethik",
    "Mathematische Bildung",
    "Naturwissenschaftlich-technische Bildung",
    "Ökologische Bildung",
    "Medien",
)
SENTENCES = (
    "Emil hat heute im Garten einen Turm aus Holzklötzen gebaut und dabei laut gezählt.",
    "Er probierte verschiedene Formen aus, bis der Turm stabil stand, und erklärte es Mia.",
    "Beim Aufräumen sortierte er die Klötze nach Farben und nach Größe.",
    "Im Morgenkreis erzählte er von seinem Wochenende bei den Großeltern.",
    "Die anderen Kinder hörten aufmerksam zu und stellten Fragen, die er gern beantwortete.",
    "Mit Ausdauer und Freude blieb er über eine halbe Stunde bei seinem Vorhaben.",
)
TRANSLATED = (
    "Emil bugün bahçede tahta bloklardan bir kule yaptı ve yüksek sesle saydı.",
    "Kule sağlam durana kadar farklı şekiller denedi ve bunu Mia'ya açıkladı.",
    "Toplarken blokları renklerine ve büyüklüklerine göre ayırdı.",
)


def make_photo(rng: random.Random) -> bytes:
    """A photo-like JPEG: soft colour fields, shapes and sensor noise, so it compresses like a
    real picture (a few hundred kilobytes), not like a flat test card."""
    width, height = PHOTO_SIZE
    image = Image.new("RGB", (width, height), tuple(rng.randrange(60, 200) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y = rng.randrange(width), rng.randrange(height)
        radius = rng.randrange(40, 400)
        colour = tuple(rng.randrange(256) for _ in range(3))
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(6))
    noise = Image.effect_noise(PHOTO_SIZE, 24).convert("RGB")
    image = Image.blend(image, noise, 0.12)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def make_portfolio(rng: random.Random) -> Portfolio:
    """Ten areas with two entries each; every entry has one photo, German text and a Turkish
    translation, long enough for about two pages per area."""
    photos = iter([make_photo(rng) for _ in range(PHOTOS)])
    sections = []
    for index, area in enumerate(AREAS):
        entries = []
        for number in range(PHOTOS // len(AREAS)):
            text = "\n\n".join(" ".join(rng.choice(SENTENCES) for _ in range(6)) for _ in range(3))
            translated = " ".join(rng.choice(TRANSLATED) for _ in range(10))
            entries.append(
                PortfolioEntry(
                    date=dt.date(2025, 1, 1) + dt.timedelta(days=index * 30 + number * 9),
                    title=f"{area}: Beobachtung {number + 1}",
                    text=text,
                    author="Frau Schneider",
                    photos=[next(photos)],
                    translated_title=f"Gözlem {number + 1}",
                    translated_text=translated,
                )
            )
        sections.append(AreaSection(area_title=area, entries=entries))
    return Portfolio(
        child_name="Emil Yılmaz",
        kita_name="Kita Sonnenblume",
        group_name="Raupen",
        period=(dt.date(2023, 8, 1), dt.date(2026, 7, 31)),
        locale="tr",
        sections=sections,
    )


def _time(render: Callable[[], bytes]) -> tuple[float, bytes]:
    # Collect the previous render's garbage first, so neither side pays for the other's.
    gc.collect()
    started = time.perf_counter()
    pdf = render()
    return time.perf_counter() - started, pdf


def _pages(pdf: bytes) -> int:
    """The page count from poppler's pdfinfo (installed by ``make system-deps``)."""
    try:
        done = subprocess.run(["pdfinfo", "-"], input=pdf, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise BenchError(f"pdfinfo failed ({error}): run `make system-deps`") from error
    match = re.search(rb"^Pages:\s+(\d+)$", done.stdout, re.MULTILINE)
    return int(match[1]) if match else 0


def measure(log: Callable[[str], None] = print) -> list[Figure]:
    """Build the portfolio, render it both ways and return the figure (also usable without the
    bench runner)."""
    portfolio = make_portfolio(random.Random(2026))
    html = render_portfolio_html(portfolio)

    def ours() -> bytes:
        return render_portfolio(portfolio)

    def bare() -> bytes:
        pdf: bytes = weasyprint.HTML(string=html).write_pdf()
        return pdf

    # Warm-up: font configuration, the template cache and the image decoders, on both sides.
    for render in (ours, bare):
        render()
    timings: dict[str, list[float]] = {"ours": [], "bare": []}
    pdf = b""
    for _ in range(RUNS):
        for name, render in (("ours", ours), ("bare", bare)):
            seconds, pdf_out = _time(render)
            timings[name].append(seconds)
            if name == "ours":
                pdf = pdf_out
    pages = _pages(pdf)
    if pages not in PAGES or not pdf.startswith(b"%PDF"):
        raise BenchError(f"expected a portfolio of about 20 pages, got {pages} pages")
    median, baseline = statistics.median(timings["ours"]), statistics.median(timings["bare"])
    log(
        f"{NAME}: {pages} pages, {len(pdf) / 1e6:.1f} MB, render_portfolio "
        f"{', '.join(f'{t:.3f}' for t in timings['ours'])} s, bare WeasyPrint "
        f"{', '.join(f'{t:.3f}' for t in timings['bare'])} s"
    )
    return [figure(NAME, "seconds", median, "s", baselines={"bare_weasyprint": baseline}, digits=3)]


@register(NAME)
def pdf_portfolio(ctx: RunContext) -> list[Figure]:
    """Portfolio (cover, contents, 20 pages of entries, 20 JPEG photos) vs bare WeasyPrint"""
    return measure(ctx.log)


if __name__ == "__main__":
    for result in measure():
        print(result.to_json_line())
