"""Reading form input: each field is checked for shape, and all problems are reported at once.
Checks of meaning (is this child in this Kita?) live in the services."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from datetime import date

from flask_babel import lazy_gettext as _l

from kita.errors import ValidationError


def parse_uuid(raw: object) -> uuid.UUID | None:
    """A UUID from untrusted input, or None."""
    if not isinstance(raw, str) or len(raw) > 64:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        return None


class FormReader:
    def __init__(self, form: Mapping[str, str]) -> None:
        self.form = form
        self.errors: dict[str, object] = {}

    def _raw(self, name: str) -> str:
        value = self.form.get(name)
        return value.strip() if isinstance(value, str) else ""

    def text(self, name: str, *, max_length: int = 200, required: bool = False) -> str:
        value = self._raw(name)
        if "\x00" in value:
            self.errors[name] = _l("This field contains characters that are not allowed.")
        elif required and not value:
            self.errors[name] = _l("This field is required.")
        elif len(value) > max_length:
            self.errors[name] = _l("At most %(count)d characters are allowed.", count=max_length)
        else:
            return value
        return ""

    def password(self, name: str) -> str:
        """Passwords are not stripped."""
        value = self.form.get(name)
        if not isinstance(value, str) or not value:
            self.errors[name] = _l("This field is required.")
            return ""
        return value

    def uuid(self, name: str, *, required: bool = False) -> uuid.UUID | None:
        raw = self._raw(name)
        if not raw:
            if required:
                self.errors[name] = _l("Please choose one of the offered options.")
            return None
        try:
            return uuid.UUID(raw)
        except ValueError:
            self.errors[name] = _l("Please choose one of the offered options.")
            return None

    def choice(self, name: str, options: Collection[str], *, required: bool = True) -> str | None:
        raw = self._raw(name)
        if not raw and not required:
            return None
        if raw not in options:
            self.errors[name] = _l("Please choose one of the offered options.")
            return None
        return raw

    def checkbox(self, name: str) -> bool:
        return self.form.get(name) in {"on", "1", "true", "yes"}

    def date(self, name: str) -> date | None:
        raw = self._raw(name)
        if not raw:
            return None
        try:
            return date.fromisoformat(raw)
        except ValueError:
            self.errors[name] = _l("Please enter a date like 2024-03-31.")
            return None

    def check(self) -> None:
        """Raise one ``ValidationError`` naming every field that failed."""
        if self.errors:
            raise ValidationError(self.errors)
