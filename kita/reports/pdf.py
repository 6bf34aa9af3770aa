"""Render a Jinja template from plain data and turn the HTML into a PDF with WeasyPrint.

Reports render the same way in a request, a CLI command and the worker, so the Jinja environment
here is standalone: it loads ``kita/templates/reports/``, its gettext is bound to the report's
locale (a portfolio is in the family's language, not in the language of the educator who prints
it), and it has no ``url_for`` or request globals. WeasyPrint may load only ``data:`` URLs and
regular files inside the app's static folder; any other URL stops the rendering.
"""

from __future__ import annotations

import base64
import functools
import mimetypes
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import weasyprint
from babel import dates as babel_dates
from babel.support import NullTranslations, Translations
from flask import has_app_context
from flask_babel import force_locale
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup
from weasyprint.urls import FatalURLFetchingError, URLFetcher, URLFetcherResponse

from kita.config import RTL_LOCALES, SUPPORTED_LOCALES

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PACKAGE_ROOT / "templates" / "reports"
TRANSLATIONS_DIR = PACKAGE_ROOT.parent / "translations"
#: The app's static folder (``static_folder`` in kita/app.py): the only files a report may load.
STATIC_ROOT = PACKAGE_ROOT.parent / "pwa"
#: Times are shown as the app shows them (``BABEL_DEFAULT_TIMEZONE`` in kita/app.py).
DISPLAY_TIMEZONE = babel_dates.get_timezone("Europe/Berlin")

# Signatures of the image formats a report embeds; anything else is refused.
IMAGE_SIGNATURES = {b"\xff\xd8\xff": "image/jpeg", b"\x89PNG\r\n\x1a\n": "image/png"}


class ReportError(Exception):
    """A report could not be rendered: a refused resource, an unsupported image or value."""


class RefusedResourceError(ReportError):
    """The document asked for a resource outside ``data:`` URLs and the app's static files."""


class StaticFilesFetcher(URLFetcher):
    """WeasyPrint's URL fetcher for reports: ``data:`` URLs and regular files inside
    ``static_root`` (symbolic links resolved first), nothing else: no network, no other files.

    A refusal raises, and because the fetcher fails on errors the rendering stops instead of
    leaving a hole in the document.
    """

    def __init__(self, static_root: Path = STATIC_ROOT) -> None:
        super().__init__(
            allowed_protocols=("data", "file"), allow_redirects=False, fail_on_errors=True
        )
        self.static_root = static_root.resolve()

    def fetch(self, url: str, headers: Mapping[str, str] | None = None) -> URLFetcherResponse:
        scheme = url.split(":", 1)[0].lower()
        if scheme == "data":
            return super().fetch(url, headers)
        if scheme == "file":
            return self._static_file(url)
        raise RefusedResourceError(f"refused to fetch {_shorten(url)}")

    def _static_file(self, url: str) -> URLFetcherResponse:
        parts = urlsplit(url)
        path = Path(url2pathname(parts.path)).resolve()
        if (
            parts.netloc not in {"", "localhost"}
            or not path.is_relative_to(self.static_root)
            or not path.is_file()
        ):
            raise RefusedResourceError(f"refused to fetch {_shorten(url)}")
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return URLFetcherResponse(url, path.read_bytes(), {"Content-Type": content_type})


def render_pdf(
    template_name: str, data: object, *, locale: str, translation_locale: str | None = None
) -> bytes:
    """Render ``kita/templates/reports/<template_name>`` with ``data`` (as ``report``) in
    ``locale`` and return the PDF. See :func:`render_html` for ``translation_locale``."""
    html = render_html(template_name, data, locale=locale, translation_locale=translation_locale)
    return html_to_pdf(html)


def render_html(
    template_name: str, data: object, *, locale: str, translation_locale: str | None = None
) -> str:
    """Render a report template to HTML.

    The template sees ``report`` (the data), ``locale``, ``direction`` (``ltr``/``rtl``),
    ``_``/``gettext``/``ngettext`` bound to ``locale``, ``format_date`` and ``format_value``.
    With ``translation_locale`` (the family's language, when it differs), every ``_()`` text
    is followed by its translation in a ``<span class="translation">`` carrying that language's
    ``lang`` and ``dir``; the template gets ``translation_locale`` and ``translation_direction``.

    Lazy strings (``_l()``) in the data render in ``locale`` when an app context is active.
    """
    _check_locale(locale)
    if translation_locale == locale:
        translation_locale = None
    if translation_locale is not None:
        _check_locale(translation_locale)
    primary = _translations(TRANSLATIONS_DIR, locale)
    context: dict[str, Any] = {
        "report": data,
        "locale": locale,
        "direction": text_direction(locale),
        "translation_locale": translation_locale,
        "translation_direction": text_direction(translation_locale) if translation_locale else "",
        "format_date": functools.partial(format_date, locale=locale),
        "format_value": functools.partial(format_value, locale=locale),
    }
    if translation_locale is None:
        context.update(_gettext_callables(primary))
    else:
        second = _translations(TRANSLATIONS_DIR, translation_locale)
        context.update(_bilingual_callables(primary, second, translation_locale))
    template = _environment().get_template(template_name)
    with _app_locale(locale):
        return template.render(context)


def html_to_pdf(html: str, *, static_root: Path = STATIC_ROOT) -> bytes:
    """Lay out ``html`` with WeasyPrint and return the PDF bytes; relative URLs resolve against
    the static folder, and only ``data:`` URLs and static files are loaded."""
    try:
        document = weasyprint.HTML(
            string=html,
            base_url=static_root.resolve().as_uri() + "/",
            url_fetcher=StaticFilesFetcher(static_root),
        )
        pdf: bytes = document.write_pdf()
    except FatalURLFetchingError as error:
        # WeasyPrint wraps the fetcher's exception; keep ours (its message names the URL).
        cause = error.__cause__
        if isinstance(cause, ReportError):
            raise cause from None
        raise ReportError(str(error)[:200]) from cause
    return pdf


def text_direction(locale: str) -> str:
    """``rtl`` for Arabic and Persian, ``ltr`` otherwise (the ``dir`` attribute's value)."""
    return "rtl" if locale in RTL_LOCALES else "ltr"


def image_data_url(image: bytes) -> Markup:
    """A ``data:`` URL for a JPEG or PNG image, checked by its signature."""
    for signature, media_type in IMAGE_SIGNATURES.items():
        if image.startswith(signature):
            # Base64 has no character HTML escapes: marking it safe spares escaping megabytes.
            encoded = base64.b64encode(image).decode("ascii")
            return Markup(f"data:{media_type};base64,{encoded}")  # noqa: S704
    raise ReportError("a report image must be a JPEG or PNG file")


def static_url(path: str) -> str:
    """The absolute ``file:`` URL of a file in the static folder, so that the final HTML renders
    the same with or without our base URL."""
    return (STATIC_ROOT / path).resolve().as_uri()


def format_date(value: date, *, locale: str, style: str = "medium") -> str:
    """A date in the report's locale; ``style`` is Babel's ``short``, ``medium`` or ``long``."""
    return babel_dates.format_date(value, format=style, locale=locale)


def format_value(value: object, *, locale: str) -> str:
    """A table or row value as text: dates and times in the report's locale and the app's
    time zone, ``None`` as a dash. Naive datetimes are refused (the app stores UTC only)."""
    if value is None:
        return "–"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ReportError("naive datetime in report data")
        return babel_dates.format_datetime(
            value, format="medium", tzinfo=DISPLAY_TIMEZONE, locale=locale
        )
    if isinstance(value, date):
        return format_date(value, locale=locale)
    return str(value)


def _check_locale(locale: str) -> None:
    if locale not in SUPPORTED_LOCALES:
        raise ReportError(f"unsupported report locale {locale!r}")


def _shorten(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."


@functools.cache
def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Newstyle gettext (placeholders as keyword arguments, escaped) like Flask-Babel's; the
    # callables themselves come with each render because they depend on the report's locale.
    env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]
    env.filters["image_data_url"] = image_data_url
    env.globals["static_url"] = static_url
    return env


@functools.cache
def _translations(directory: Path, locale: str) -> NullTranslations:
    # Reads the compiled catalogs Flask-Babel reads (BABEL_TRANSLATION_DIRECTORIES); a missing
    # catalog gives the English msgids, as in the app.
    return Translations.load(str(directory), [locale], domain="messages")


Gettext = Callable[..., Markup]


def _gettext_callables(translations: NullTranslations) -> dict[str, Gettext]:
    """``gettext``/``ngettext`` that behave like Jinja's newstyle ones (and Flask-Babel's): the
    translation is trusted markup (our own catalogs), the placeholders are escaped."""

    def gettext(message: str, /, **variables: object) -> Markup:
        return Markup(translations.ugettext(message)) % variables  # noqa: S704

    def ngettext(singular: str, plural: str, num: int, /, **variables: object) -> Markup:
        variables.setdefault("num", num)
        return Markup(translations.ungettext(singular, plural, num)) % variables  # noqa: S704

    return {"_": gettext, "gettext": gettext, "ngettext": ngettext}


def _bilingual_callables(
    primary: NullTranslations, second: NullTranslations, locale: str
) -> dict[str, Gettext]:
    """Callables that return the primary text followed by its translation (when it differs)."""
    first = _gettext_callables(primary)
    other = _gettext_callables(second)
    wrapper = Markup('<span class="translation" lang="{}" dir="{}">{}</span>')
    # The document has the primary language's direction; the translation carries its own.
    second_direction = text_direction(locale)

    def both(primary_text: Markup, translated: Markup) -> Markup:
        if translated == primary_text:
            return primary_text
        return primary_text + wrapper.format(locale, second_direction, translated)

    def gettext(message: str, /, **variables: object) -> Markup:
        return both(first["gettext"](message, **variables), other["gettext"](message, **variables))

    def ngettext(singular: str, plural: str, num: int, /, **variables: object) -> Markup:
        return both(
            first["ngettext"](singular, plural, num, **variables),
            other["ngettext"](singular, plural, num, **variables),
        )

    return {"_": gettext, "gettext": gettext, "ngettext": ngettext}


@contextmanager
def _app_locale(locale: str) -> Iterator[None]:
    """Inside the app, make lazy strings in the data render in the report's locale."""
    if has_app_context():
        with force_locale(locale):
            yield
    else:
        yield
