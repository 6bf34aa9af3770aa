"""PDF reports: plain dataclasses rendered by Jinja templates in kita/templates/reports/ and laid
out by WeasyPrint, which may load only ``data:`` URLs and the app's static files."""

from __future__ import annotations

from kita.reports.family_export import (
    FamilyExport,
    Record,
    Table,
    render_family_export,
    render_family_export_html,
)
from kita.reports.pdf import (
    RefusedResourceError,
    ReportError,
    StaticFilesFetcher,
    html_to_pdf,
    render_html,
    render_pdf,
)
from kita.reports.portfolio import (
    AreaSection,
    Portfolio,
    PortfolioEntry,
    render_portfolio,
    render_portfolio_html,
)

__all__ = [
    "AreaSection",
    "FamilyExport",
    "Portfolio",
    "PortfolioEntry",
    "Record",
    "RefusedResourceError",
    "ReportError",
    "StaticFilesFetcher",
    "Table",
    "html_to_pdf",
    "render_family_export",
    "render_family_export_html",
    "render_html",
    "render_pdf",
    "render_portfolio",
    "render_portfolio_html",
]
