"""The development portfolio handed to a family when their child leaves: plain data in, PDF out.

German is the primary language; where the family reads another language, every heading is
followed by its translation and entries carry the translated texts the service passes in.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from kita.reports.pdf import render_html, render_pdf

PRIMARY_LOCALE = "de"
TEMPLATE = "portfolio.html"


@dataclass(frozen=True, kw_only=True)
class PortfolioEntry:
    """One shared observation or learning story; ``photos`` are JPEG bytes."""

    date: dt.date
    title: str
    text: str
    author: str
    photos: list[bytes] = field(default_factory=list)
    translated_title: str | None = None
    translated_text: str | None = None


@dataclass(frozen=True, kw_only=True)
class AreaSection:
    """The entries of one educational area, in the order they are printed."""

    area_title: str
    entries: list[PortfolioEntry]
    translated_area_title: str | None = None


@dataclass(frozen=True, kw_only=True)
class Portfolio:
    """``locale`` is the family's language; ``period`` is the first and last day covered."""

    child_name: str
    kita_name: str
    group_name: str
    period: tuple[dt.date, dt.date]
    locale: str
    sections: list[AreaSection]


def render_portfolio(portfolio: Portfolio) -> bytes:
    """The portfolio as PDF: cover, contents, one section per area, photos embedded."""
    return render_pdf(
        TEMPLATE, portfolio, locale=PRIMARY_LOCALE, translation_locale=portfolio.locale
    )


def render_portfolio_html(portfolio: Portfolio) -> str:
    """The HTML :func:`render_portfolio` lays out (for benchmarks and HTML-level tests)."""
    return render_html(
        TEMPLATE, portfolio, locale=PRIMARY_LOCALE, translation_locale=portfolio.locale
    )
