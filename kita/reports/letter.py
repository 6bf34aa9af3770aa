"""Printed letters for families an announcement did not reach: one page per family, in the
family's language and direction, with the original beneath a translation and a slip to return
when the Kita asks for a confirmation.

The service (``kita.services.reach.build_letters``) passes every text already in the family's
language, including the labels: one PDF holds letters in several languages, while a report
template's own ``_()`` speaks only the document's language.
"""

from __future__ import annotations

from dataclasses import dataclass

from kita.reports.pdf import render_html, render_pdf

TEMPLATE = "letters.html"
#: The document's language (its metadata); every letter carries its own ``lang`` and ``dir``.
DOCUMENT_LOCALE = "de"


@dataclass(frozen=True, kw_only=True)
class LetterLabels:
    """The fixed texts of a letter, in its language (placeholders filled in)."""

    salutation: str
    salutation_unnamed: str
    date: str
    from_kita: str
    not_translated: str
    machine: str
    original: str
    interpreter: str
    confirm_title: str
    confirm_deadline: str
    confirm_no_deadline: str
    confirm_text: str
    confirm_child: str
    confirm_signature: str
    cut: str
    recalled: str


@dataclass(frozen=True, kw_only=True)
class Letter:
    locale: str
    direction: str
    kita_name: str
    #: Today's date, written out in the letter's language.
    date: str
    children: str
    groups: str
    category: str
    title: str
    body: str
    #: The original when ``title``/``body`` are a translation, else None.
    original_title: str | None
    original_body: str | None
    original_locale: str
    original_direction: str
    not_translated: bool
    machine: bool
    needs_interpreter: bool
    confirm_slip: bool
    has_deadline: bool
    recalled: bool
    labels: LetterLabels


@dataclass(frozen=True)
class LetterBatch:
    letters: list[Letter]


def render_letters(batch: LetterBatch) -> bytes:
    """The letters as one PDF, a page (or more) per family."""
    return render_pdf(TEMPLATE, batch, locale=DOCUMENT_LOCALE)


def render_letters_html(batch: LetterBatch) -> str:
    """The HTML :func:`render_letters` lays out (for HTML-level tests)."""
    return render_html(TEMPLATE, batch, locale=DOCUMENT_LOCALE)
