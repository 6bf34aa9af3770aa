"""Language detection of parents' short replies (model shipped in the py3langid wheel)."""

from __future__ import annotations

import pytest

from kita.translation.detect import detect_language


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mein Sohn ist heute krank und bleibt zu Hause.", "de"),
        ("Wir kommen morgen etwas später, wir haben einen Arzttermin.", "de"),
        ("Oğlum bugün hasta, evde kalacak. Teşekkür ederim.", "tr"),
        ("Yarın biraz geç geleceğiz, doktor randevumuz var.", "tr"),
        ("ابني مريض اليوم وسيبقى في المنزل. شكرا لكم.", "ar"),
        ("سنأتي غدا متأخرين قليلا لأن عندنا موعد عند الطبيب.", "ar"),
        ("Мій син сьогодні хворий і залишиться вдома. Дякую.", "uk"),
        ("Завтра ми прийдемо трохи пізніше, бо маємо візит до лікаря.", "uk"),
        ("Мой сын сегодня болеет и останется дома. Спасибо.", "ru"),
        ("Завтра мы придём немного позже, у нас приём у врача.", "ru"),
        ("Mój syn jest dziś chory i zostanie w domu. Dziękuję.", "pl"),
        ("Jutro przyjdziemy trochę później, bo mamy wizytę u lekarza.", "pl"),
        ("پسرم امروز مریض است و در خانه می‌ماند. ممنون.", "fa"),
        ("Fiul meu este bolnav azi și rămâne acasă. Mulțumesc.", "ro"),
        ("Синът ми днес е болен и ще остане вкъщи. Благодаря.", "bg"),
        ("My son is ill today and will stay at home. Thank you.", "en"),
    ],
)
def test_short_replies_are_detected(text: str, expected: str) -> None:
    assert detect_language(text) == expected


@pytest.mark.parametrize(
    "text",
    ["", "   ", "ok", "Danke", "12345 678", "😀😀😀 👍", "!!! ??? ...", "asdkjh qwe zxc",
     "xkcd qwrtz plmnb", "hjkl fdsa uiop"],
)  # fmt: skip
def test_unclear_text_gives_none(text: str) -> None:
    assert detect_language(text) is None
