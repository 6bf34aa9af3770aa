"""Domain exceptions. Views map them to a message in the user's language or to a status code."""

from __future__ import annotations

import traceback
from collections.abc import Mapping

from flask_babel import lazy_gettext as _l


class KitaError(Exception):
    """Base class of every expected failure; ``message`` is shown to the user."""

    status = 400
    default_message = _l("The request could not be completed.")

    def __init__(self, message: object | None = None) -> None:
        self.message = message if message is not None else self.default_message
        super().__init__(str(type(self).__name__))

    def __str__(self) -> str:
        return str(self.message)


class NotFoundError(KitaError):
    """The object does not exist or the actor may not see it (both answer 404)."""

    status = 404
    default_message = _l("This page does not exist or you do not have access to it.")


class ForbiddenError(KitaError):
    """The actor may see the object but not perform this action."""

    status = 403
    default_message = _l("You are not allowed to do this.")


class ValidationError(KitaError):
    """Input was rejected; ``fields`` maps form field names to messages."""

    status = 422
    default_message = _l("Please correct the marked fields.")

    def __init__(self, fields: Mapping[str, object], message: object | None = None) -> None:
        super().__init__(message)
        self.fields = dict(fields)


class AuthenticationError(KitaError):
    """Wrong credentials; deliberately vague."""

    status = 401
    default_message = _l("E-mail address or password is wrong.")


class ThrottledError(KitaError):
    """Too many failed attempts from this client; try again later."""

    status = 429
    default_message = _l("Too many failed attempts. Please wait a few minutes and try again.")

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after


class InvitationError(KitaError):
    """The invitation link is unknown, used, revoked or expired."""

    status = 410
    default_message = _l(
        "This invitation is no longer valid. Please ask your Kita for a new invitation."
    )


class TokenError(KitaError):
    """A one-time token (password reset) is unknown, used or expired."""

    status = 410
    default_message = _l("This link is no longer valid. Please request a new one.")


def describe_exception(error: BaseException) -> str:
    """Type and stack of an exception without its message: messages can carry content (a
    name in a failed INSERT, text in a ValueError), and logs must not."""
    frames = traceback.extract_tb(error.__traceback__)
    stack = " < ".join(
        f"{frame.name} ({frame.filename.rsplit('/', 1)[-1]}:{frame.lineno})"
        for frame in reversed(frames[-8:])
    )
    return f"{type(error).__module__}.{type(error).__name__} at {stack or '?'}"
