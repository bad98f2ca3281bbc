"""manage.py demo_mail: sample mail for the demo organisation (after demo_setup), idempotent.

The messages go through the real storing path (parse, link, thread), into a demo mailbox that
is paused, so the scheduler never tries to reach its made-up server.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from mailboxes.mailstore import content_hash
from mailboxes.models import Mailbox, MailboxStatus, uid_digest
from mailboxes.parsing import parse_message
from mailboxes.storing import IncomingMessage, messages_store
from records.management.commands.demo_setup import ADMIN_EMAIL, RECRUITER_EMAIL
from records.models import User
from sharing.models import MailboxSharing, Permission

DEMO_HOST = "pop.demo.recruitmail.test"

# (from, to, subject, body, charset, minutes ago, message id, in reply to)
SAMPLES: list[tuple[str, str, str, str, str, int, str, str]] = [
    (
        "山田 太郎 <taro.yamada@example.jp>",
        "recruiter@demo.recruitmail.test",
        "面接日程のご相談",
        "お世話になっております。山田です。\n来週の面接ですが、①火曜 ②水曜のいずれかでお願いできますでしょうか。\n㈱サンプル様の件、楽しみにしております～。\n",
        "iso-2022-jp",
        50,
        "<interview-1@example.jp>",
        "",
    ),
    (
        "Ren Recruiter <recruiter@demo.recruitmail.test>",
        "taro.yamada@example.jp",
        "Re: 面接日程のご相談",
        "山田様\n\n火曜の14時でいかがでしょうか。\n\nRen\n",
        "utf-8",
        40,
        "<interview-2@demo.recruitmail.test>",
        "<interview-1@example.jp>",
    ),
    (
        "Hana Suzuki <hana.suzuki@acme.example>",
        "recruiter@demo.recruitmail.test",
        "Backend engineer role: shortlist",
        "Hi Ren,\n\nThanks for the shortlist. Could we meet Taro and Emily next week?\n\nHana\n",
        "utf-8",
        30,
        "<shortlist@acme.example>",
        "",
    ),
    (
        "Emily Clark <emily.clark@example.com>",
        "recruiter@demo.recruitmail.test",
        "Portfolio and CV",
        "Hello Ren,\n\nPlease find my updated portfolio link below. Happy to talk any time.\n\nEmily\n",
        "utf-8",
        20,
        "<cv@example.com>",
        "",
    ),
    (
        "採用担当 <saiyo@sample.example.jp>",
        "recruiter@demo.recruitmail.test",
        "求人票の更新について",
        "いつもお世話になっております。\n求人票を更新しましたのでご確認ください。\n",
        "shift_jis",
        10,
        "<jobs@sample.example.jp>",
        "",
    ),
]


def _iso2022jp_like_outlook(text: str) -> bytes:
    """ISO-2022-JP as Windows writes it (CP50220): vendor characters such as ① and ㈱ go out as
    their CP932 cells in JIS X 0208 form, which the importer's superset decoder reads back."""
    out, in_jis = bytearray(), False
    for char in text:
        if ord(char) < 0x80:
            if in_jis:
                out += b"\x1b(B"
                in_jis = False
            out += char.encode("ascii")
            continue
        first, second = char.encode("cp932")
        if not in_jis:
            out += b"\x1b$B"
            in_jis = True
        first -= 0x40 if first >= 0xE0 else 0
        row = (first - 0x81) * 2 + 0x21
        if second >= 0x9F:
            out += bytes((row + 1, second - 0x7E))
        else:
            out += bytes((row, second - 0x1F - (1 if second > 0x7F else 0)))
    if in_jis:
        out += b"\x1b(B"
    return bytes(out)


def _raw(sample: tuple[str, str, str, str, str, int, str, str], now: datetime) -> bytes:
    sender, to, subject, body, charset, minutes, message_id, parent = sample
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, subject
    message["Date"] = format_datetime(now - timedelta(minutes=minutes))
    message["Message-ID"] = message_id
    if parent:
        message["In-Reply-To"] = message["References"] = parent
    message.set_content(body)
    raw = message.as_bytes(policy=SMTP)
    if charset == "utf-8":
        return raw
    # Japanese mailers' own encodings, written the way their users' mail arrives.
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    head = [
        line
        for line in head
        if not line.lower().startswith((b"content-type", b"content-transfer", b"mime-version"))
    ]
    encoded = _iso2022jp_like_outlook(body) if charset == "iso-2022-jp" else body.encode("cp932")
    head += [
        b"MIME-Version: 1.0",
        f"Content-Type: text/plain; charset={charset.upper()}".encode(),
        b"Content-Transfer-Encoding: 7bit"
        if charset == "iso-2022-jp"
        else b"Content-Transfer-Encoding: 8bit",
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + encoded.replace(b"\n", b"\r\n")


class Command(BaseCommand):
    help = "Add a paused demo mailbox with sample mail to the demo organisation (once)."

    def handle(self, *args: Any, **options: Any) -> None:
        recruiter = User.objects.filter(email=RECRUITER_EMAIL).select_related("membership").first()
        if recruiter is None or not User.objects.filter(email=ADMIN_EMAIL).exists():
            raise CommandError("Run `manage.py demo_setup` first.")
        if Mailbox.objects.filter(owner=recruiter, pop3_host=DEMO_HOST).exists():
            return
        mailbox = Mailbox(
            owner=recruiter,
            organization_id=recruiter.membership.organization_id,
            name="Demo",
            email_address=RECRUITER_EMAIL,
            pop3_host=DEMO_HOST,
            pop3_username=RECRUITER_EMAIL,
            smtp_host="smtp.demo.recruitmail.test",
            is_active=True,
            status=MailboxStatus.PAUSED,
            status_message="Demo mailbox with sample mail: add your own POP3 mailbox under Mail accounts.",
            first_import_pending=False,
        )
        mailbox.set_pop3_password("demo")
        mailbox.save()
        MailboxSharing.objects.create(mailbox=mailbox, permission=Permission.PUBLIC)
        now = datetime.now(UTC)
        batch = []
        for index, sample in enumerate(SAMPLES):
            raw = _raw(sample, now)
            uid = f"demo-{index}"
            batch.append(
                IncomingMessage(
                    uid=uid,
                    uid_hash=uid_digest(uid),
                    raw=raw,
                    digest=content_hash(raw),
                    parsed=parse_message(raw),
                    size=len(raw),
                )
            )
        outcome = messages_store(mailbox=mailbox, batch=batch)
        self.stdout.write(
            f"  Demo mailbox with {outcome.imported} sample messages (paused: it polls nothing)."
        )
