"""Glossary protection: terms become placeholders an engine keeps, and come back unchanged."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kita.translation import glossary
from kita.translation.glossary import TERMS, placeholder, protect, restore

# Text made of glossary terms, placeholder look-alikes, brackets and ordinary characters.
pieces = st.one_of(
    st.sampled_from([*TERMS, "Sonnengruppe", "[[K0]]", "[[ K 12 ]]", "[[", "]]", "K", "-", " "]),
    st.text(max_size=6),
)
texts = st.lists(pieces, max_size=12).map("".join)
extra_terms = st.lists(st.text(min_size=1, max_size=8), max_size=3)


@given(texts, extra_terms)
def test_protect_then_restore_is_identity(text: str, extra: list[str]) -> None:
    protected = protect(text, extra)
    assert restore(protected.text, protected.slots) == text


@given(texts)
def test_protected_text_contains_no_glossary_term_as_a_word(text: str) -> None:
    protected = protect(text)
    remaining = restore(protected.text, ["" for _ in protected.slots])
    for term in TERMS:
        assert not glossary._pattern([term]).search(remaining.replace("[[", "").replace("]]", ""))


def test_terms_are_replaced_longest_first_and_as_whole_words() -> None:
    protected = protect("Die Kita-Card und die Kita; Kitaleitung, U3 und Elternbeirat.")
    assert protected.slots == ("Kita-Card", "Kita", "U3", "Elternbeirat")
    assert protected.text == (
        f"Die {placeholder(0)} und die {placeholder(1)}; Kitaleitung, "
        f"{placeholder(2)} und {placeholder(3)}."
    )


def test_group_names_can_be_protected() -> None:
    protected = protect("Die Sonnengruppe geht in den Wald.", ["Sonnengruppe"])
    assert protected.slots == ("Sonnengruppe",)


def test_restore_tolerates_spaces_an_engine_inserted() -> None:
    assert restore("Die [[ K0 ]] ist zu, [[K1]].", ("Kita", "U3")) == "Die Kita ist zu, U3."


def test_unknown_placeholder_numbers_stay() -> None:
    assert restore("[[K5]]", ("Kita",)) == "[[K5]]"


def test_extra_terms_change_the_glossary_version() -> None:
    assert glossary.glossary_version() == glossary.GLOSSARY_VERSION
    assert glossary.glossary_version(["Bären"]) != glossary.glossary_version(["Füchse"])
    assert glossary.glossary_version(["A", "B"]) == glossary.glossary_version(["B", "A", " "])
