"""Message catalogs: extract, update, compile and check (``kita translations ...``).

``check`` fails when the template is stale (the code has strings the template lacks, or the
other way round) or when a shipped language has an empty, fuzzy or placeholder-breaking entry.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from kita.config import SUPPORTED_LOCALES

ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = ROOT / "translations"
TEMPLATE = TRANSLATIONS / "messages.pot"
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|%[sd]")


def _pybabel(*args: str) -> None:
    subprocess.run(  # noqa: S603 (fixed arguments, our own interpreter)
        [sys.executable, "-m", "babel.messages.frontend", "-q", *args], check=True, cwd=ROOT
    )


def extract(output: Path = TEMPLATE) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    _pybabel(
        "extract",
        "-F",
        "babel.cfg",
        "-k",
        "_l",
        "-k",
        "lazy_gettext",
        "--no-location",
        "--sort-output",
        "--omit-header",
        "-o",
        str(output),
        "kita",
    )


def update() -> None:
    extract()
    for locale in SUPPORTED_LOCALES:
        po = TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po"
        if po.exists():
            _pybabel(
                "update",
                "--no-fuzzy-matching",
                "-i",
                str(TEMPLATE),
                "-d",
                str(TRANSLATIONS),
                "-l",
                locale,
            )
        else:
            _pybabel("init", "-i", str(TEMPLATE), "-d", str(TRANSLATIONS), "-l", locale)


def compile_all() -> None:
    """Compile every catalog; fail when one was skipped (babel skips catalogs it thinks fuzzy)."""
    _pybabel("compile", "-d", str(TRANSLATIONS))
    missing = [
        locale
        for locale in SUPPORTED_LOCALES
        if not (TRANSLATIONS / locale / "LC_MESSAGES" / "messages.mo").exists()
    ]
    if missing:
        raise RuntimeError(f"catalogs not compiled: {', '.join(missing)}")


def _read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=locale)


def _ids(catalog: Catalog) -> set[str]:
    return {str(m.id if isinstance(m.id, str) else m.id[0]) for m in catalog if m.id}


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(translations: Path = TRANSLATIONS) -> CheckReport:
    """Compare the strings in the code with the template and every shipped catalog."""
    report = CheckReport()
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "fresh.pot"
        extract(fresh)
        current = _ids(_read(fresh))
    template = translations / "messages.pot"
    committed = _ids(_read(template)) if template.exists() else set()
    for msgid in sorted(current - committed):
        report.problems.append(f"template is stale: missing {msgid!r} (run `make translations`)")
    for msgid in sorted(committed - current):
        report.problems.append(f"template is stale: obsolete {msgid!r} (run `make translations`)")
    for locale in SUPPORTED_LOCALES:
        po = translations / locale / "LC_MESSAGES" / "messages.po"
        if not po.exists():
            report.problems.append(f"{locale}: catalog missing")
            continue
        catalog = _read(po, locale)
        if catalog.fuzzy:
            # A missing header makes babel treat the whole catalog as fuzzy: never compiled.
            report.problems.append(f"{locale}: catalog header missing or fuzzy")
        have = {str(m.id if isinstance(m.id, str) else m.id[0]): m for m in catalog if m.id}
        for msgid in sorted(current):
            message = have.get(msgid)
            if message is None:
                report.problems.append(f"{locale}: missing {msgid!r}")
                continue
            raw = message.string if isinstance(message.string, tuple) else (message.string,)
            strings = tuple(str(text or "") for text in raw)
            if not all(strings):
                report.problems.append(f"{locale}: empty translation for {msgid!r}")
            elif message.fuzzy:
                report.problems.append(f"{locale}: fuzzy translation for {msgid!r}")
            else:
                wanted = set(PLACEHOLDER.findall(msgid))
                for text in strings:
                    if set(PLACEHOLDER.findall(text)) != wanted:
                        report.problems.append(f"{locale}: placeholders differ in {msgid!r}")
                        break
    return report
