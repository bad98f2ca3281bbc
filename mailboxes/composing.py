"""Building an outgoing message: checking what the writer typed, and the RFC 5322 bytes.

Everything a user types (addresses, display names, subject, file names) is checked here before
anything is stored, and header fields are set through ``email.message.EmailMessage`` with the
SMTP policy, which encodes non-ASCII text as RFC 2047 encoded words and refuses a value with a
line break. A line break is refused earlier still, with a sentence the writer can act on, and
the finished header block is read back to prove it holds only the fields we set: header
injection needs all three layers to fail.

The bytes never carry Bcc: blind copies exist only as envelope recipients and as the sender's
own MessageAddress rows (RFC 5322 §3.6.3 allows either; leaving it out is what clients do).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from mailboxes.models import AddressRole, Direction, Message
from records.addresses import InvalidAddress, domain_of, normalize_address

# Headers in 7-bit: non-ASCII text goes out base64 or quoted-printable, so the message needs
# no 8BITMIME or SMTPUTF8 from the server (policy.SMTP alone would pick "8bit" for Japanese).
SENDING_POLICY = SMTP.clone(cte_type="7bit")
MAX_RECIPIENTS = 100
MAX_SUBJECT_LENGTH = 998  # RFC 5322 §2.1.1; also the Message.subject column
MAX_ATTACHMENT_BYTES = 25 * 1024 * 1024  # what the big providers accept, before encoding
MAX_REFERENCES = 20  # kept in References: the first (thread root) and the latest ones

_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|antw)\s*(\[\d+\])?\s*[:：]", re.IGNORECASE)
_FORWARD_PREFIX = re.compile(r"^\s*(fwd?|wg|tr|転送)\s*(\[\d+\])?\s*[:：]", re.IGNORECASE)
_ANGLE_FORM = re.compile(r"^(?P<name>[^<>]*)<(?P<address>[^<>]*)>$")
_MESSAGE_ID = re.compile(r"[!-;=?-~]+@[!-;=?-~]+")  # printable ASCII without <, > or space
_CONTENT_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*")
_HEADER_NAME = re.compile(rb"^([!-9;-~]+):")
# The only top-level fields a message we build may have; _check_header_block enforces it.
_OUR_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "auto-submitted",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
    }
)


class MessageInvalid(ValidationError):
    """What the writer typed cannot be sent; ``message_dict`` maps form fields to sentences
    (``form.add_error(None, exc)`` puts each on its field)."""


@dataclass(frozen=True)
class Recipient:
    name: str
    address: str  # normalised (records.addresses.normalize_address)

    def header_address(self) -> Address:
        return Address(display_name=self.name, addr_spec=self.address)


@dataclass(frozen=True)
class OutgoingAttachment:
    filename: str
    content_type: str
    payload: bytes


@dataclass
class Draft:
    """A message ready to be built: every field already checked."""

    from_name: str
    from_address: str
    to: list[Recipient]
    cc: list[Recipient]
    bcc: list[Recipient]
    subject: str
    body_text: str
    attachments: list[OutgoingAttachment]
    message_id: str  # without <>
    in_reply_to: str  # without <>, "" if none
    references: list[str]  # without <>
    date: datetime
    auto_submitted: bool = False  # RFC 3834: a notification, so autoresponders stay quiet


class UploadedFileLike(Protocol):
    """What message_compose accepts as an attachment besides OutgoingAttachment."""

    name: str | None
    content_type: str | None

    def read(self) -> bytes: ...


def _has_line_break_or_control(text: str) -> bool:
    # Cc: C0/C1 controls (CR, LF, NUL, VT, FF, NEL...); Zl/Zp: U+2028/U+2029, which
    # str.splitlines() also treats as line ends.
    return any(unicodedata.category(char) in ("Cc", "Zl", "Zp") for char in text)


def single_line_name(text: str) -> str:
    """A display name from our own data (a user's name) made safe: controls become spaces."""
    cleaned = "".join(
        " " if unicodedata.category(char) in ("Cc", "Zl", "Zp") else char for char in text
    )
    return " ".join(cleaned.split())[:200]


def recipients_parse(values: Sequence[str], *, field: str) -> list[Recipient]:
    """Each value is one address, ``taro@example.jp`` or ``Taro Yamada <taro@example.jp>``.

    Raises MessageInvalid on ``field`` for a line break, a second address in one value, or an
    address that is not one. Repeated addresses are kept once.
    """
    recipients: list[Recipient] = []
    seen: set[str] = set()
    for value in values:
        text = value.strip()
        if not text:
            continue
        if _has_line_break_or_control(text):
            raise MessageInvalid({field: [_("An address cannot contain a line break.")]})
        name, address = "", text
        match = _ANGLE_FORM.match(text)
        if match:
            name = match.group("name").strip()
            address = match.group("address").strip()
            if len(name) >= 2 and name[0] == name[-1] == '"':
                name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        try:
            normalised = normalize_address(address)
        except InvalidAddress as exc:
            raise MessageInvalid(
                {field: [_("“%(value)s” is not an email address.") % {"value": text[:100]}]}
            ) from exc
        if not normalised.isascii():
            # A non-ASCII local part needs SMTPUTF8 end to end, which many servers lack.
            raise MessageInvalid(
                {
                    field: [
                        _(
                            "RecruitMail cannot yet send to “%(address)s”: the part before "
                            "the @ has characters other than Latin letters, digits and symbols."
                        )
                        % {"address": normalised}
                    ]
                }
            )
        if normalised not in seen:
            seen.add(normalised)
            recipients.append(Recipient(name=name[:200], address=normalised))
    return recipients


def sender_address_clean(address: str) -> str:
    """A sender address (a mailbox's or the system sender's), normalised for From and MAIL FROM."""
    try:
        normalised = normalize_address(address)
    except InvalidAddress:
        normalised = ""
    if not normalised.isascii() or not normalised:
        raise MessageInvalid(
            _("The sender address %(address)s cannot be used; correct it in the settings.")
            % {"address": address}
        )
    return normalised


def recipients_check_count(to: list[Recipient], cc: list[Recipient], bcc: list[Recipient]) -> None:
    total = len({r.address for r in [*to, *cc, *bcc]})
    if total == 0:
        raise MessageInvalid({"to": [_("Add at least one recipient.")]})
    if total > MAX_RECIPIENTS:
        raise MessageInvalid(
            {"to": [_("A message can go to at most %(max)d people.") % {"max": MAX_RECIPIENTS}]}
        )


def subject_clean(subject: str) -> str:
    """The subject, stripped; MessageInvalid for a line break or one too long."""
    if _has_line_break_or_control(subject.replace("\t", " ")):
        raise MessageInvalid({"subject": [_("The subject cannot contain a line break.")]})
    subject = subject.strip()
    if len(subject) > MAX_SUBJECT_LENGTH:
        raise MessageInvalid({"subject": [_("The subject is too long.")]})
    return subject


def body_clean(body_text: str) -> str:
    # NUL cannot be stored in a PostgreSQL text column, and has no place in mail text.
    return body_text.replace("\x00", "")


def attachments_clean(attachments: Sequence[OutgoingAttachment]) -> list[OutgoingAttachment]:
    """Safe file names and content types; MessageInvalid when they are too large together."""
    cleaned = []
    for attachment in attachments:
        name = attachment.filename.replace("\\", "/").rsplit("/", 1)[-1]
        name = single_line_name(name).strip(". ") or "attachment"
        content_type = attachment.content_type.strip().lower()
        if not _CONTENT_TYPE.fullmatch(content_type):
            content_type = "application/octet-stream"
        cleaned.append(OutgoingAttachment(name[:255], content_type, attachment.payload))
    if sum(len(a.payload) for a in cleaned) > MAX_ATTACHMENT_BYTES:
        raise MessageInvalid(
            {
                "attachments": [
                    _("The attachments are too large together (at most %(mb)d MB).")
                    % {"mb": MAX_ATTACHMENT_BYTES // (1024 * 1024)}
                ]
            }
        )
    return cleaned


def attachment_from_upload(item: OutgoingAttachment | UploadedFileLike) -> OutgoingAttachment:
    """An uploaded file (Django's UploadedFile or alike) as an attachment to send."""
    if isinstance(item, OutgoingAttachment):
        return item
    return OutgoingAttachment(
        filename=item.name or "attachment",
        content_type=item.content_type or "application/octet-stream",
        payload=item.read(),
    )


def attachments_of(parent: Message) -> list[OutgoingAttachment]:
    """The files of a stored message, to forward them."""
    files = []
    for attachment in parent.attachments.select_related("blob").order_by("pk"):
        with attachment.blob.file.open("rb") as handle:
            payload = handle.read()
        files.append(OutgoingAttachment(attachment.filename, attachment.content_type, payload))
    return files


def reply_subject(subject: str) -> str:
    """ "Re: " + subject, unless it already starts with a reply prefix (no "Re: Re:")."""
    return subject if _REPLY_PREFIX.match(subject) else f"Re: {subject}".strip()


def forward_subject(subject: str) -> str:
    return subject if _FORWARD_PREFIX.match(subject) else f"Fwd: {subject}".strip()


def new_message_id(from_address: str) -> str:
    """A fresh Message-ID (without <>) on the sender's domain (RFC 5322 §3.6.4)."""
    return make_msgid(domain=domain_of(from_address))[1:-1]


def reference_chain(parent: Message) -> tuple[str, list[str]]:
    """(In-Reply-To, References) for a reply to ``parent`` (RFC 5322 §3.6.4): the parent's
    References (or else its In-Reply-To) followed by the parent's own Message-ID."""
    if not parent.message_id or not _MESSAGE_ID.fullmatch(parent.message_id):
        return "", []
    earlier = [ref for ref in parent.references.split() if _MESSAGE_ID.fullmatch(ref)]
    if not earlier and parent.in_reply_to and _MESSAGE_ID.fullmatch(parent.in_reply_to):
        earlier = [parent.in_reply_to]
    chain = list(dict.fromkeys([*earlier, parent.message_id]))
    if len(chain) > MAX_REFERENCES:
        # Keep the thread's root and the most recent ones, as long chains are usually trimmed.
        chain = [chain[0], *chain[-(MAX_REFERENCES - 1) :]]
    return parent.message_id, chain


def user_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _who(name: str, address: str) -> str:
    return f"{name} <{address}>" if name else address


def reply_quote(parent: Message, *, zone: ZoneInfo) -> str:
    """The parent's text quoted below an attribution line, as mail clients write it."""
    when = (parent.sent_at or parent.sort_at).astimezone(zone)
    attribution = _("On %(date)s, %(who)s wrote:") % {
        "date": when.strftime("%Y-%m-%d %H:%M"),
        "who": _who(parent.from_name, parent.from_address),
    }
    # RFC 3676 §4.5: a quoted line gets ">" and a space, an already quoted one just ">".
    lines = [
        (">" + line if line.startswith(">") else "> " + line).rstrip()
        for line in parent.body_text.splitlines()
    ]
    return "\n".join([attribution, *lines]) + "\n"


def forward_text(parent: Message, *, zone: ZoneInfo) -> str:
    """The forwarded message's header summary and text, as mail clients write it."""
    when = (parent.sent_at or parent.sort_at).astimezone(zone)
    recipients = ", ".join(
        parent.addresses.filter(role=AddressRole.TO).values_list("address", flat=True)
    )
    lines = [
        _("---------- Forwarded message ----------"),
        _("From: %(who)s") % {"who": _who(parent.from_name, parent.from_address)},
        _("Date: %(date)s") % {"date": when.strftime("%Y-%m-%d %H:%M")},
        _("Subject: %(subject)s") % {"subject": parent.subject},
        _("To: %(to)s") % {"to": recipients},
        "",
        parent.body_text.rstrip("\n"),
    ]
    return "\n".join(lines) + "\n"


def draft_build(draft: Draft) -> bytes:
    """The message as RFC 5322 bytes with CRLF line ends (what SMTP sends), without Bcc.

    Raises MessageInvalid if a value slipped past the checks above and the email package or
    the header check refuses it.
    """
    message = EmailMessage(policy=SENDING_POLICY)
    try:
        message["From"] = Address(display_name=draft.from_name, addr_spec=draft.from_address)
        if draft.to:
            message["To"] = [r.header_address() for r in draft.to]
        if draft.cc:
            message["Cc"] = [r.header_address() for r in draft.cc]
        message["Subject"] = draft.subject
        message["Date"] = format_datetime(draft.date)
        message["Message-ID"] = f"<{draft.message_id}>"
        if draft.in_reply_to:
            message["In-Reply-To"] = f"<{draft.in_reply_to}>"
        if draft.references:
            message["References"] = " ".join(f"<{ref}>" for ref in draft.references)
        if draft.auto_submitted:
            message["Auto-Submitted"] = "auto-generated"
        message.set_content(draft.body_text)
        for attachment in draft.attachments:
            maintype, subtype = attachment.content_type.split("/", 1)
            message.add_attachment(
                attachment.payload, maintype=maintype, subtype=subtype, filename=attachment.filename
            )
        raw = message.as_bytes(policy=SENDING_POLICY)
    except (ValueError, TypeError, IndexError) as exc:
        # The email package raises ValueError for a line break in a header value and
        # IndexError/HeaderParseError (a ValueError) for an address it cannot parse.
        raise MessageInvalid(_("The message has a header value that cannot be sent.")) from exc
    _check_header_block(raw)
    return raw


def _check_header_block(raw: bytes) -> None:
    """Prove the header block holds only fields we set, each line a field or a continuation.

    The last line of defence against header injection: if any value had carried a line break
    through the email package (as in CVE-2024-6923), a new field name would appear here.
    """
    head = raw.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            continue
        match = _HEADER_NAME.match(line)
        if not match or match.group(1).decode("ascii").lower() not in _OUR_HEADERS:
            raise MessageInvalid(_("The message has a header value that cannot be sent."))
    if b"\r" in raw.replace(b"\r\n", b"") or b"\n" in raw.replace(b"\r\n", b""):
        raise MessageInvalid(_("The message has a line break that cannot be sent."))


def reply_to_warning(message: Message) -> str | None:
    """A warning when ``message``'s Reply-To points outside its sender's domain.

    A reply would go to the Reply-To address, so a look-alike sender with a foreign Reply-To
    is a common fraud. A subdomain of the sender's domain (or the reverse) counts as the same.
    """
    sender_domain = domain_of(message.from_address) if message.from_address else ""
    foreign = sorted(
        {
            address
            for address, domain in message.addresses.filter(role=AddressRole.REPLY_TO).values_list(
                "address", "domain"
            )
            if not _same_domain(domain, sender_domain)
        }
    )
    if not foreign:
        return None
    return _(
        "Replies to this message go to %(addresses)s, outside the sender's domain "
        "(%(domain)s). Check that you mean to write there: fraudulent mail often does this."
    ) % {"addresses": ", ".join(foreign), "domain": sender_domain or _("unknown")}


def reply_recipients(message: Message, *, reply_all: bool = False) -> tuple[list[str], list[str]]:
    """(To, Cc) for answering ``message``: Reply-To or From (or, for our own sent mail, its
    To); with ``reply_all`` the other To and Cc people as Cc, never the mailbox itself."""
    rows = list(message.addresses.values_list("role", "address"))
    by_role: dict[str, list[str]] = {}
    for role, address in rows:
        by_role.setdefault(role, []).append(address)
    own = message.mailbox.email_address if message.mailbox is not None else message.from_address
    if message.direction == Direction.OUTGOING:
        to = by_role.get(AddressRole.TO, [])
    else:
        to = by_role.get(AddressRole.REPLY_TO) or by_role.get(AddressRole.FROM, [])
    cc: list[str] = []
    if reply_all:
        cc = [
            address
            for address in [*by_role.get(AddressRole.TO, []), *by_role.get(AddressRole.CC, [])]
            if address != own and address not in to
        ]
    return list(dict.fromkeys(to)), list(dict.fromkeys(cc))


def _same_domain(domain: str, other: str) -> bool:
    """Equal, or one a subdomain of the other (mail.example.com and example.com)."""
    if not domain or not other:
        return False
    return domain == other or domain.endswith("." + other) or other.endswith("." + domain)
