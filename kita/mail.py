"""Outgoing e-mail over SMTP (``KITA_SMTP_*``). Without SMTP, development mode logs only the
links in the message (a reset or invitation link), never its text or the recipient's address."""

from __future__ import annotations

import logging
import re
import smtplib
from email.message import EmailMessage

from kita.config import KitaConfig

log = logging.getLogger("kita.mail")
LINK = re.compile(r"https?://\S+")


class MailError(Exception):
    """The SMTP server refused the message or could not be reached."""


def send_mail(
    config: KitaConfig, *, to: str, subject: str, body: str, language: str | None = None
) -> None:
    """Send a plain-text message, or log it when no SMTP server is configured. ``language``
    (a locale such as ``tr``) becomes the Content-Language header."""
    if not config.smtp_configured:
        # Only the links (a reset or invitation token), never the body: it greets the person.
        links = " ".join(LINK.findall(body)) or "(none)"
        log.warning("SMTP is not configured; message not sent. Links in it: %s", links)
        return
    message = EmailMessage()
    message["From"] = config.smtp_from
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    if language:  # after set_content, which drops every Content-* header
        message["Content-Language"] = language
    try:
        with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=15) as smtp:
            if config.smtp_starttls:
                smtp.starttls()
            if config.smtp_user:
                smtp.login(config.smtp_user, config.smtp_password)
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(type(exc).__name__) from exc
