"""Building test messages as real RFC 5322 bytes (CRLF line ends, as POP3 delivers them)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid


def make_message(
    *,
    subject: str = "Hello",
    sender: str = "Taro Yamada <taro@example.jp>",
    to: str = "owner@sakura.example",
    cc: str | None = None,
    body: str = "Hello there.\n",
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    date: datetime | None = None,
    attachments: list[tuple[str, bytes, str]] | None = None,
) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    if cc:
        message["Cc"] = cc
    message["Subject"] = subject
    message["Date"] = format_datetime(date or datetime(2026, 11, 20, 9, 30, tzinfo=UTC))
    message["Message-ID"] = (
        message_id if message_id is not None else make_msgid(domain="example.jp")
    )
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
    if references:
        message["References"] = references
    message.set_content(body)
    for filename, payload, content_type in attachments or []:
        maintype, subtype = content_type.split("/")
        message.add_attachment(payload, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes(policy=SMTP)
