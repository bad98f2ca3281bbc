"""A deterministic corpus of recruiting mail for the import benchmark (``bench/ingest.py``).

What :func:`corpus_messages` yields, per message (shares are approximate, drawn from a seeded
random generator, so the same ``seed`` and ``count`` give the same bytes):

- a body of 2-20 KB: plain text (60 %), plain text with an HTML alternative (30 %), or HTML
  only (10 %); HTML is quoted-printable, as most mailers send it, and sometimes carries a
  remote image (a tracking pixel);
- Japanese mail (15 %): ISO-2022-JP in 7 bit (as Outlook and Thunderbird send it) or
  Shift_JIS in base64 (as older Windows mailers do), with RFC 2047 encoded Subject and names;
- an attachment of 100 KB to 2 MB (4 %: a CV, incompressible like a real PDF), a fifth of them
  the same file sent again (so the store's de-duplication by content is exercised);
- correspondents from a pool of candidate and contact addresses that exist as records, plus
  some strangers; a quarter are the mailbox owner's own sent mail (as Gmail hands it out);
- threads: 45 % are replies (In-Reply-To and References) to a recent message.

Raw bytes use CRLF line ends, as POP3 delivers them, and no line exceeds 998 octets.
"""

from __future__ import annotations

import base64
import binascii
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

OWNER_ADDRESS = "owner@agency.example"
OWNER_NAME = "Olivia Owner"

_WORDS = (
    "candidate interview position salary offer engineer role team project experience skills "
    "schedule availability meeting client contract start date notice period reference resume "
    "review feedback shortlist onboarding recruiter agency manager senior junior backend "
    "frontend python django postgres remote hybrid office tokyo osaka benefits visa relocation "
    "thanks regards please confirm attached following discussed next steps week monday friday"
).split()
_JAPANESE_SENTENCES = [
    "お世話になっております。",
    "面接の日程についてご連絡いたします。",
    "履歴書と職務経歴書を添付いたしましたので、ご確認のほどよろしくお願いいたします。",
    "来週の火曜日の午後二時からはいかがでしょうか。",
    "ご検討いただきありがとうございます。",
    "給与条件について改めてご相談させてください。",
    "弊社の開発チームは東京と大阪に拠点があります。",
    "引き続きどうぞよろしくお願い申し上げます。",
    "株式会社サクラの採用担当です。",
    "ご不明な点がございましたらお気軽にお問い合わせください。",
]
_JAPANESE_NAMES = ["山田 太郎", "佐藤 花子", "鈴木 一郎", "高橋 美咲", "田中 健", "伊藤 由美"]
_JAPANESE_SUBJECTS = [
    "面接日程のご相談",
    "【ご連絡】書類選考の結果について",
    "ご応募ありがとうございます",
    "内定のご連絡",
    "職務経歴書の送付",
]
_ENGLISH_NAMES = ["Taro Yamada", "Hana Suzuki", "Ken Tanaka", "Mia Ito", "Leo Sato", "Aya Mori"]


@dataclass(frozen=True)
class AddressPool:
    """The addresses that exist as records in the benchmark's organisation."""

    candidates: list[str]
    contacts: dict[str, list[str]]  # client name -> its contacts' addresses

    @property
    def all_contacts(self) -> list[str]:
        return [address for group in self.contacts.values() for address in group]


def address_pool(
    *, candidates: int = 300, clients: int = 10, contacts_per_client: int = 3
) -> AddressPool:
    return AddressPool(
        candidates=[f"candidate{k}@mail{k % 7}.example" for k in range(candidates)],
        contacts={
            f"Client {j} KK": [f"hr{k}@client{j}.example" for k in range(contacts_per_client)]
            for j in range(clients)
        },
    )


@dataclass
class _Sent:
    message_id: str
    references: list[str]
    subject: str
    correspondent: str
    japanese: str | None


class _Text:
    """Cheap text of any size: slices of one pre-wrapped lorem text, and Japanese lines."""

    def __init__(self, rng: random.Random) -> None:
        words = [rng.choice(_WORDS) for _ in range(40_000)]
        lines, line = [], ""
        for word in words:
            if len(line) + len(word) >= 72:
                lines.append(line)
                line = ""
            line = f"{line} {word}" if line else word.capitalize()
        self.english_lines = lines
        self.rng = rng

    def english(self, size: int) -> list[str]:
        lines = self.english_lines
        start = self.rng.randrange(len(lines) - size // 40 - 2)
        out, total = [], 0
        for line in lines[start:]:
            if total >= size:
                break
            out.append(line)
            total += len(line) + 2
        return out

    def japanese(self, size: int) -> list[str]:
        out, total = [], 0
        while total < size:
            line = "".join(self.rng.choice(_JAPANESE_SENTENCES) for _ in range(2))
            out.append(line)
            total += len(line.encode("utf-8")) + 2  # about the encoded size
        return out


def _encoded_word(text: str, charset: str, codec: str) -> str:
    """RFC 2047 B-encoded words, each short enough for a folded header line."""
    words = []
    for start in range(0, len(text), 12):
        chunk = text[start : start + 12].encode(codec)
        words.append(f"=?{charset}?B?{base64.b64encode(chunk).decode()}?=")
    return "\r\n ".join(words)


def _base64_lines(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _html(lines: list[str], *, remote_image: bool) -> str:
    paragraphs = ["<p>" + " ".join(lines[i : i + 4]) + "</p>" for i in range(0, len(lines), 4)]
    if len(paragraphs) > 2:
        paragraphs.insert(
            1, '<p><a href="https://jobs.example/position/42">See the position</a></p>'
        )
    if remote_image:
        paragraphs.append('<img src="https://tracker.example/open.gif" width="1" height="1">')
    return "<html><body>\r\n" + "\r\n".join(paragraphs) + "\r\n</body></html>\r\n"


def corpus_messages(*, count: int, pool: AddressPool, seed: int = 1) -> Iterator[bytes]:
    """Yield ``count`` raw messages (module docstring), the same ones for the same arguments."""
    rng = random.Random(seed)  # noqa: S311 -- test data, not secrets
    text = _Text(rng)
    recent: list[_Sent] = []
    attachments_sent: list[tuple[str, bytes]] = []
    start = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    everyone = pool.candidates + pool.all_contacts
    for index in range(count):
        japanese = None
        roll = rng.random()
        if roll < 0.08:
            japanese = "iso-2022-jp"
        elif roll < 0.15:
            japanese = "shift_jis"
        parent = rng.choice(recent[-200:]) if recent and rng.random() < 0.45 else None
        if parent is not None:
            correspondent = parent.correspondent
            japanese = parent.japanese
            subject = (
                parent.subject if parent.subject.startswith("Re: ") else f"Re: {parent.subject}"
            )
            references = (parent.references + [parent.message_id])[-20:]
        else:
            roll = rng.random()
            correspondent = (
                f"someone{rng.randrange(5000)}@stranger{rng.randrange(50)}.example"
                if roll < 0.1
                else rng.choice(everyone)
            )
            subject = (
                rng.choice(_JAPANESE_SUBJECTS)
                if japanese
                else f"{rng.choice(['Interview', 'Offer', 'Application', 'Position', 'Schedule'])} "
                f"{rng.choice(_WORDS)} #{index}"
            )
            references = []
        message_id = f"bench.{seed}.{index}@agency.example"
        outgoing = rng.random() < 0.25
        name = rng.choice(_JAPANESE_NAMES if japanese else _ENGLISH_NAMES)
        cc = rng.choice(everyone) if rng.random() < 0.15 else None
        headers = _headers(
            index=index,
            date=start + timedelta(minutes=7 * index),
            message_id=message_id,
            references=references,
            subject=subject,
            name=name,
            correspondent=correspondent,
            outgoing=outgoing,
            cc=cc,
            japanese=japanese,
        )
        size = int(2048 * 10 ** (rng.random() * 1.0))  # 2-20 KB, more small than large
        body_kind = rng.random()
        attachment = None
        if rng.random() < 0.04:
            if attachments_sent and rng.random() < 0.2:
                attachment = rng.choice(attachments_sent)
            else:
                length = int(100_000 * 20 ** rng.random())  # 100 KB - 2 MB
                attachment = (f"cv-{index}.pdf", rng.randbytes(length))
                attachments_sent.append(attachment)
        yield _assemble(rng, text, headers, size, body_kind, japanese, attachment)
        recent.append(_Sent(message_id, references, subject, correspondent, japanese))


def _headers(
    *,
    index: int,
    date: datetime,
    message_id: str,
    references: list[str],
    subject: str,
    name: str,
    correspondent: str,
    outgoing: bool,
    cc: str | None,
    japanese: str | None,
) -> list[str]:
    if japanese:
        charset, codec = (
            ("ISO-2022-JP", "iso2022_jp")
            if japanese == "iso-2022-jp"
            else (
                "Shift_JIS",
                "shift_jis",
            )
        )
        subject_field = _encoded_word(subject, charset, codec)
        name_field = _encoded_word(name, charset, codec)
    else:
        subject_field, name_field = subject, f'"{name}"'
    them = f"{name_field} <{correspondent}>"
    me = f'"{OWNER_NAME}" <{OWNER_ADDRESS}>'
    lines = [
        f"Return-Path: <{OWNER_ADDRESS if outgoing else correspondent}>",
        f"Received: from mx{index % 3}.example (mx{index % 3}.example [192.0.2.{index % 250 + 1}])"
        f"\r\n\tby pop.agency.example with ESMTPS id bench{index}; {format_datetime(date)}",
        f"From: {me if outgoing else them}",
        f"To: {them if outgoing else me}",
    ]
    if cc:
        lines.append(f"Cc: <{cc}>")
    lines += [
        f"Subject: {subject_field}",
        f"Date: {format_datetime(date)}",
        f"Message-ID: <{message_id}>",
    ]
    if references:
        lines.append(f"In-Reply-To: <{references[-1]}>")
        lines.append("References: " + "\r\n ".join(f"<{ref}>" for ref in references))
    lines.append("MIME-Version: 1.0")
    return lines


def _assemble(
    rng: random.Random,
    text: _Text,
    headers: list[str],
    size: int,
    body_kind: float,
    japanese: str | None,
    attachment: tuple[str, bytes] | None,
) -> bytes:
    parts: list[tuple[list[str], bytes]] = []  # (part headers, part body) of the leaves
    if japanese:
        lines = text.japanese(size)
        if japanese == "iso-2022-jp":
            parts.append(
                (
                    [
                        "Content-Type: text/plain; charset=ISO-2022-JP",
                        "Content-Transfer-Encoding: 7bit",
                    ],
                    "\r\n".join(lines).encode("iso2022_jp") + b"\r\n",
                )
            )
        else:
            parts.append(
                (
                    [
                        "Content-Type: text/plain; charset=Shift_JIS",
                        "Content-Transfer-Encoding: base64",
                    ],
                    _base64_lines("\r\n".join(lines).encode("shift_jis") + b"\r\n"),
                )
            )
    else:
        lines = text.english(size)
        plain = (
            ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 7bit"],
            ("\r\n".join(lines) + "\r\n").encode("ascii"),
        )
        html = (
            [
                "Content-Type: text/html; charset=utf-8",
                "Content-Transfer-Encoding: quoted-printable",
            ],
            binascii.b2a_qp(_html(lines, remote_image=rng.random() < 0.3).encode()).replace(
                b"\n", b"\r\n"
            ),
        )
        if body_kind < 0.6:
            parts.append(plain)
        elif body_kind < 0.9:
            parts.append(_multipart("alternative", [plain, html], rng))
        else:
            parts.append(html)
    if attachment is not None:
        filename, payload = attachment
        parts.append(
            (
                [
                    f'Content-Type: application/pdf; name="{filename}"',
                    f'Content-Disposition: attachment; filename="{filename}"',
                    "Content-Transfer-Encoding: base64",
                ],
                _base64_lines(payload),
            )
        )
        part_headers, body = _multipart("mixed", parts, rng)
    else:
        part_headers, body = parts[0]
    head = "\r\n".join(headers + part_headers) + "\r\n\r\n"
    return head.encode("ascii") + body


def _multipart(
    subtype: str, parts: list[tuple[list[str], bytes]], rng: random.Random
) -> tuple[list[str], bytes]:
    boundary = f"=_bench_{subtype}_{rng.getrandbits(64):016x}"
    chunks = [b"This is a multi-part message in MIME format.\r\n"]
    for part_headers, body in parts:
        chunks.append(
            f"--{boundary}\r\n".encode() + "\r\n".join(part_headers).encode() + b"\r\n\r\n"
        )
        chunks.append(body if body.endswith(b"\r\n") else body + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return [f'Content-Type: multipart/{subtype}; boundary="{boundary}"'], b"".join(chunks)
