"""Kita terms that must survive machine translation unchanged.

Before a text goes to an engine each term is replaced by a placeholder such as ``[[K0]]``, which
engines pass through like a code; afterwards the placeholders are replaced back. Text that
already looks like a placeholder is protected the same way, so :func:`restore` after
:func:`protect` always gives the original text back.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: Bump when :data:`TERMS` or the placeholder format change: it is part of the memory key,
#: so translations made with the old glossary are not reused.
GLOSSARY_VERSION = "1"

#: German words that are the real names of things here; families know them by these names.
TERMS: tuple[str, ...] = (
    "Kita",
    "Kitas",
    "Kita-Card",
    "U3",
    "Ü3",
    "OGS",
    "Elternbeirat",
    "Elternversammlung",
    "Rat der Tageseinrichtung",
    "KiBiz",
    "Familienzentrum",
)

# Engines sometimes add spaces inside codes ("[[ K0 ]]"); restoring tolerates that.
_PLACEHOLDER = r"\[\[\s*K\s*(\d+)\s*\]\]"
_PLACEHOLDER_RE = re.compile(_PLACEHOLDER)


@dataclass(frozen=True)
class Protected:
    """A text with its terms replaced by placeholders, and the terms in placeholder order."""

    text: str
    slots: tuple[str, ...]


def placeholder(index: int) -> str:
    return f"[[K{index}]]"


def glossary_version(extra_terms: Iterable[str] = ()) -> str:
    """The memory-key component: the glossary version plus any caller-supplied terms."""
    extra = sorted({term.strip() for term in extra_terms if term.strip()})
    if not extra:
        return GLOSSARY_VERSION
    digest = hashlib.sha256("\x1f".join(extra).encode()).hexdigest()[:16]
    return f"{GLOSSARY_VERSION}+{digest}"


def _pattern(terms: Sequence[str]) -> re.Pattern[str]:
    # Longest first, so "Kita-Card" wins over "Kita"; terms only match as whole words.
    ordered = sorted({t for t in terms if t.strip()}, key=lambda t: (-len(t), t))
    alternatives = [_PLACEHOLDER] + [rf"(?<!\w){re.escape(t)}(?!\w)" for t in ordered]
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


def protect(text: str, extra_terms: Iterable[str] = ()) -> Protected:
    """Replace glossary terms (and ``extra_terms``, e.g. group names) with placeholders."""
    slots: list[str] = []

    def _slot(match: re.Match[str]) -> str:
        slots.append(match.group(0))
        return placeholder(len(slots) - 1)

    protected = _pattern([*TERMS, *extra_terms]).sub(_slot, text)
    return Protected(protected, tuple(slots))


def restore(text: str, slots: Sequence[str]) -> str:
    """Put the terms back. Unknown placeholder numbers are left as they are."""

    def _term(match: re.Match[str]) -> str:
        index = int(match.group(1))
        return slots[index] if index < len(slots) else match.group(0)

    return _PLACEHOLDER_RE.sub(_term, text)
