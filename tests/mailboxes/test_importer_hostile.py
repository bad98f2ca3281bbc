"""The import pipeline against a real Dovecot under stress: hostile mail, and two workers at once.

Hostile mail must never stop a poll: each message is stored, its raw bytes kept exactly as
the server sent them, whatever the parser made of it. Two workers that poll one mailbox at
the same moment must not both run: the lease lets one through and turns the other away.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
from pathlib import Path

import pytest
from django.db import connection

from mailboxes.importer import mailbox_poll
from mailboxes.mailstore import raw_read
from mailboxes.models import (
    ImportState,
    Mailbox,
    Message,
    PollOutcome,
    PollReport,
    ServerMessage,
    ServerMessageState,
)
from tests.conftest import Team
from tests.mailboxes.mail import make_message
from tests.peers.fixtures import Pop3Account

pytestmark = pytest.mark.django_db(transaction=True)

EML = Path(__file__).parent / "eml"


def as_retrieved(raw: bytes) -> bytes:
    """What RETR hands over for ``raw`` as Dovecot stores it: line ends CRLF, last line ended."""
    raw = re.sub(rb"(?<!\r)\n", b"\r\n", raw)
    return raw if raw.endswith(b"\r\n") else raw + b"\r\n"


def nested_multipart(depth: int) -> bytes:
    inner = b"Content-Type: text/plain\r\n\r\ninnermost\r\n"
    for level in range(depth):
        boundary = f"level-{level}".encode()
        inner = (
            b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
            b"--" + boundary + b"\r\n" + inner + b"\r\n--" + boundary + b"--\r\n"
        )
    return b"From: deep@example.com\r\nSubject: deep\r\nMIME-Version: 1.0\r\n" + inner


def empty_parts(count: int) -> bytes:
    return (
        b"From: parts@example.com\r\nSubject: many parts\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="p"\r\n\r\n'
        + b"--p\r\n\r\n" * count
        + b"--p--\r\n"
    )


def garbage(seed: int, size: int) -> bytes:
    """Random bytes with the line shapes that trip POP3 code: NUL, lone CR, '.' lines."""
    chunks = [random.Random(seed).randbytes(size)]
    chunks += [b"\r\n.\r\n", b"\n..\n", b"\r\r\n", b"\x00\x00", b"\n.", b"\xff\xfe"]
    return b"".join(chunks)


def hostile_messages() -> dict[str, bytes]:
    """The parser's real-world fixtures, and the shapes the contract names, built here."""
    rng = random.Random(3)
    messages = {path.stem: path.read_bytes() for path in sorted(EML.glob("*.eml"))}
    messages |= {
        "no_ids_no_date": b"From: a@example.com\r\nSubject: no id, no date\r\n\r\nbody\r\n",
        "unclosed_boundary": (
            b'Subject: cut\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b"'
            b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nno end\r\n--b\r\n"
            b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBER"
        ),
        "malformed_mime": (
            b"Subject: broken\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n"
            b"Content-Transfer-Encoding: x-unknown\r\n\r\n--?\r\n\x00\r\n=ZZ=\r\n"
        ),
        "nested_100_deep": nested_multipart(100),
        "empty_parts_10000": empty_parts(10_000),
        "garbage_small": garbage(1, 300),
        "garbage_large": garbage(2, 200_000),
        "lf_only": b"From: a@example.com\nSubject: unix\n\nbody\n.dot line\n",
        "no_final_line_end": b"Subject: cut\r\n\r\nno line end",
        "headers_only": b"Subject: nothing else\r\n",
        # 998 characters (the line limit) of three UTF-8 bytes each, in an indexed column.
        "huge_message_id": (
            "Subject: long id\r\nMessage-ID: <"
            + "".join(chr(0x4E00 + rng.randrange(20_000)) for _ in range(990))
            + "@example.jp>\r\n\r\nbody\r\n"
        ).encode(),
        "eight_bit_everywhere": (
            b"From: \xe5\xb1\xb1\xe7\x94\xb0 <yamada@example.jp>\r\nSubject: \x93\xfa\x96\x7b\r\n"
            b"Content-Type: text/plain; charset=\xff\r\n\r\n\x82\xa0\x00\x1b$B\r\n"
        ),
    }
    return messages


def test_hostile_messages_are_all_stored_raw_and_the_worker_survives(
    team: Team, pop3_account: Pop3Account, dovecot_mailbox: Mailbox
) -> None:
    messages = hostile_messages()
    for raw in messages.values():
        pop3_account.deliver(raw)
    report = mailbox_poll(mailbox_id=dovecot_mailbox.pk)
    assert report is not None
    assert (report.outcome, report.error_code, report.failed) == (PollOutcome.OK, "", 0)
    assert report.imported == len(messages)
    by_digest = {m.raw_sha256: m for m in Message.objects.filter(mailbox=dovecot_mailbox)}
    stored: dict[str, Message] = {}
    # Dovecot's own copies (what it stored) against what the hub kept.
    for name, server_copy in zip(messages, pop3_account.messages(), strict=True):
        expected = as_retrieved(server_copy)
        message = by_digest.get(hashlib.sha256(expected).hexdigest())
        assert message is not None, f"{name} was not stored"
        assert raw_read(message.raw.name) == expected, f"{name} is not byte-exact"
        assert message.import_state in (ImportState.PARSED, ImportState.UNPARSED), name
        assert "\x00" not in message.subject + message.body_text + message.from_name, name
        stored[name] = message
    assert stored["nested_100_deep"].defects, "100 levels of nesting are noted as a defect"
    assert (stored["no_ids_no_date"].message_id, stored["no_ids_no_date"].sent_at) == ("", None)
    assert stored["unclosed_boundary"].defects and stored["malformed_mime"].defects
    again = mailbox_poll(mailbox_id=dovecot_mailbox.pk)
    assert again is not None and (again.new, again.imported) == (0, 0)


def test_two_workers_polling_at_once_import_each_message_once(
    team: Team, pop3_account: Pop3Account, dovecot_mailbox: Mailbox
) -> None:
    raws = [
        make_message(subject=f"Concurrent {i}", body=f"Body {i}\n" * (1 + i * 40))
        for i in range(50)
    ]
    for raw in raws:
        pop3_account.deliver(raw)
    start = threading.Barrier(2)
    results: list[PollReport | None | BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            results.append(mailbox_poll(mailbox_id=dovecot_mailbox.pk))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            results.append(exc)
        finally:
            connection.close()  # each thread has its own connection; leave none open

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(isinstance(result, BaseException) for result in results), results
    reports = [result for result in results if isinstance(result, PollReport)]
    assert len(results) == 2 and results.count(None) == 1 and len(reports) == 1
    assert (reports[0].outcome, reports[0].imported) == (PollOutcome.OK, 50)
    digests = list(
        Message.objects.filter(mailbox=dovecot_mailbox).values_list("raw_sha256", flat=True)
    )
    assert sorted(digests) == sorted(hashlib.sha256(raw).hexdigest() for raw in raws)
    assert (
        ServerMessage.objects.filter(
            mailbox=dovecot_mailbox, state=ServerMessageState.IMPORTED
        ).count()
        == 50
    )
    assert PollReport.objects.filter(mailbox=dovecot_mailbox).count() == 1
    dovecot_mailbox.refresh_from_db()
    # Released by the worker that ran (the other never held it).
    assert (dovecot_mailbox.lease_token, dovecot_mailbox.lease_expires_at) == ("", None)
