"""RETR and TOP read their reply in blocks (``CheckedPOP3.long_command_bytes``): the same octets,
and the same errors, as poplib's line-by-line reading, whatever the reads' sizes."""

from __future__ import annotations

import io
import poplib
import random
from collections.abc import Callable

import pytest

from mailboxes.pop3_errors import EOF, LINE_TOO_LONG
from mailboxes.pop3_wire import CheckedPOP3


class ShortReads(io.RawIOBase):
    """A socket that hands out its bytes a few at a time, as TCP may."""

    def __init__(self, data: bytes, rng: random.Random) -> None:
        self.data, self.position, self.rng = data, 0, rng

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        size = min(len(buffer), self.rng.randrange(1, 40), len(self.data) - self.position)
        buffer[:size] = self.data[self.position : self.position + size]
        self.position += size
        return size


def client(stream: bytes, seed: float, max_line_bytes: int) -> CheckedPOP3:
    rng = random.Random(seed)
    pop = CheckedPOP3.__new__(CheckedPOP3)  # no socket: the reply comes from ``stream``
    pop.file = io.BufferedReader(ShortReads(stream, rng), buffer_size=rng.choice([8, 64, 8192]))
    pop._putcmd = lambda line: None  # type: ignore[attr-defined]
    pop._debugging = 0  # type: ignore[attr-defined]
    pop.max_line_bytes = max_line_bytes  # type: ignore[misc]
    return pop


def outcome(
    read: Callable[[CheckedPOP3], bytes], stream: bytes, seed: float, max_line_bytes: int
) -> tuple[bytes | tuple[str, object], bytes | None]:
    """(what the read returned or raised, what stays unread for the next reply)."""
    pop = client(stream, seed, max_line_bytes)
    try:
        return read(pop), pop.file.read()
    except poplib.error_proto as error:
        return ("error_proto", error.args[0]), None  # the session is abandoned after an error


def by_lines(pop: CheckedPOP3) -> bytes:
    return b"".join(line + b"\r\n" for line in pop.long_command("RETR 1"))


PIECES = [
    b"a",
    b".",
    b"..",
    b"\r",
    b"\n",
    b"\r\n",
    b"x" * 30,
    b"\n.",
    b".\r\n",
    b"\n.\r\n",
    b"\n.\n",
]
ENDINGS = [b"\r\n.\r\n", b"\n.\n", b".\r\n", b"\r\n.\r\n+OK next reply\r\n", b"", b"\r\n."]


def test_blocks_and_lines_agree_on_random_replies() -> None:
    rng = random.Random(1939)
    for _ in range(5000):
        status = rng.choice([b"+OK\r\n", b"+OK 120 octets\r\n", b"-ERR no such message\r\n"])
        body = b"".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 25)))
        stream = status + body + rng.choice(ENDINGS)
        seed, limit = rng.random(), rng.choice([5, 12, 1000])
        expected = outcome(by_lines, stream, seed, limit)
        got = outcome(lambda pop: pop.long_command_bytes("RETR 1"), stream, seed, limit)
        assert got == expected, stream


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b"+OK\r\n.\r\n", b""),
        (b"+OK\r\nSubject: x\r\n\r\n..dot\r\n...\r\n.\r\n", b"Subject: x\r\n\r\n.dot\r\n..\r\n"),
        (b"+OK\r\nbare\nlf\n.\n", b"bare\r\nlf\r\n"),
        (b"+OK\r\n.x\r\n.\r\n", b".x\r\n"),  # not stuffed, not the end: kept as poplib keeps it
    ],
)
def test_unstuffing_and_line_ends(stream: bytes, expected: bytes) -> None:
    assert outcome(lambda pop: pop.long_command_bytes("RETR 1"), stream, 0.5, 1000)[0] == expected


def test_a_long_line_and_a_cut_reply_are_the_errors_poplib_reading_gives() -> None:
    long_line = b"+OK\r\n" + b"y" * 100 + b"\r\n.\r\n"
    assert outcome(lambda pop: pop.long_command_bytes("RETR 1"), long_line, 0.5, 50)[0] == (
        "error_proto",
        LINE_TOO_LONG,
    )
    cut = b"+OK\r\nhalf a message\r\n"
    assert outcome(lambda pop: pop.long_command_bytes("RETR 1"), cut, 0.5, 1000)[0] == (
        "error_proto",
        EOF,
    )
