"""Every shipped language is complete, and the check notices a stale template or a gap."""

from __future__ import annotations

import shutil
from pathlib import Path

from kita import catalogs
from kita.config import SUPPORTED_LOCALES


def test_shipped_catalogs_are_complete_and_current() -> None:
    report = catalogs.check()
    assert report.problems == []


def test_check_notices_a_missing_translation_and_a_stale_template(tmp_path: Path) -> None:
    copy = tmp_path / "translations"
    shutil.copytree(catalogs.TRANSLATIONS, copy)
    template = copy / "messages.pot"
    text = template.read_text(encoding="utf-8")
    template.write_text(
        text.replace('msgid "Log in"\n', 'msgid "Log in (old)"\n', 1), encoding="utf-8"
    )
    po = copy / "tr" / "LC_MESSAGES" / "messages.po"
    lines = po.read_text(encoding="utf-8").split("\n")
    index = lines.index('msgid "Forgot your password?"')
    lines[index + 1] = 'msgstr ""'
    po.write_text("\n".join(lines), encoding="utf-8")
    problems = catalogs.check(copy).problems
    assert "template is stale: missing 'Log in' (run `make translations`)" in problems
    assert "tr: empty translation for 'Forgot your password?'" in problems


def test_ten_languages_are_shipped() -> None:
    assert len(SUPPORTED_LOCALES) == 10
    for locale in SUPPORTED_LOCALES:
        assert (catalogs.TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po").exists()
