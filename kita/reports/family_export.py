"""A family's data-subject export (GDPR Art. 15) as PDF, from generic plain data.

The documentation service decides what goes in; this module only knows blocks of label/value
rows (optionally with a long text and photos) and tables. Labels are plain strings or ``_l()``
lazy strings (rendered in the export's locale when an app context is active).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TypeAlias

from flask_babel.speaklater import LazyString

from kita.reports.pdf import render_html, render_pdf

TEMPLATE = "family_export.html"

Label: TypeAlias = str | LazyString
#: A value in a row or table cell: dates and aware datetimes are formatted in the export's
#: locale, ``None`` prints as a dash.
Value: TypeAlias = str | int | dt.date | dt.datetime | None


@dataclass(frozen=True, kw_only=True)
class Record:
    """A titled block of label/value rows, e.g. a guardian, a child or one documentation entry;
    ``text`` is a long text printed below the rows, ``photos`` are JPEG or PNG bytes."""

    title: Label
    rows: list[tuple[Label, Value]]
    text: str | None = None
    photos: list[bytes] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Table:
    """A titled table, e.g. consents or audit events; every row has one value per column."""

    title: Label
    columns: list[Label]
    rows: list[list[Value]]


@dataclass(frozen=True, kw_only=True)
class FamilyExport:
    """Everything stored about one guardian and their children, in ``locale``."""

    locale: str
    subject_name: str
    generated_at: dt.datetime
    guardian: Record
    children: list[Record]
    consents: Table
    entries: list[Record]
    audit_events: Table


def render_family_export(export: FamilyExport) -> bytes:
    """The export as PDF in the guardian's language (right to left for ar and fa)."""
    return render_pdf(TEMPLATE, export, locale=export.locale)


def render_family_export_html(export: FamilyExport) -> str:
    """The HTML :func:`render_family_export` lays out (for HTML-level tests)."""
    return render_html(TEMPLATE, export, locale=export.locale)
