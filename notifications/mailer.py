"""One email out through the configured SMTP relay (aiosmtplib), and what its failure means.

A failure is *temporary* (connection refused, timeout, a 4xx reply: retry later) or *permanent*
(a 5xx reply to the sender or recipient: retrying would get the same answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib

from core.settings import Settings
from core.time import utcnow

MESSAGE_ID_DOMAIN = "virtuoz"


@dataclass(frozen=True)
class Outgoing:
    message_id: str  # the delivery id: a redelivered message keeps its Message-ID, so relays can dedupe
    recipient: str
    subject: str
    html: str
    text: str


class SendFailed(Exception):
    def __init__(self, reason: str, *, permanent: bool) -> None:
        super().__init__(reason)
        self.permanent = permanent


def build_message(settings: Settings, outgoing: Outgoing) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = outgoing.recipient
    message["Subject"] = outgoing.subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = f"<{outgoing.message_id}@{MESSAGE_ID_DOMAIN}>"
    message.set_content(outgoing.text)
    message.add_alternative(outgoing.html, subtype="html")
    return message


def _permanent(error: aiosmtplib.SMTPException) -> bool:
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return all(refused.code >= 500 for refused in error.recipients)
    return isinstance(error, aiosmtplib.SMTPResponseException) and error.code >= 500


async def send(settings: Settings, outgoing: Outgoing) -> None:
    """Hand the message to the relay; raises ``SendFailed`` saying whether a retry can help."""
    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    try:
        await aiosmtplib.send(
            build_message(settings, outgoing),
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=password,
            start_tls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
        )
    except aiosmtplib.SMTPException as error:
        raise SendFailed(f"{type(error).__name__}: {error}", permanent=_permanent(error)) from error
    except (TimeoutError, OSError) as error:
        raise SendFailed(f"{type(error).__name__}: {error}", permanent=False) from error
