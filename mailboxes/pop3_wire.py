"""The POP3 wire: a ``poplib.POP3`` that connects to checked addresses and reads replies safely.

``mailboxes.pop3`` builds its session (commands, errors, sign-in) on ``CheckedPOP3``; this module
is only about octets on the socket: connecting to the addresses ``mailboxes.hostcheck`` checked,
line limits, reading a multi-line reply in blocks up to its terminating "." line, and undoing
RFC 1939 §3 dot-stuffing. Errors are ``poplib.error_proto``, which the session translates.
"""

from __future__ import annotations

import io
import poplib
import re
import socket
import ssl
import sys
from typing import ClassVar, cast

from mailboxes.hostcheck import CheckedHost, open_checked_socket
from mailboxes.pop3_errors import EOF, LINE_TOO_LONG

__all__ = ["CheckedPOP3", "terminator_end", "unstuffed_crlf"]


class CheckedPOP3(poplib.POP3):
    """poplib.POP3 that connects to checked addresses and accepts long lines.

    poplib reads each line with ``readline(_MAXLINE + 1)`` where the module global ``_MAXLINE``
    is 2048 (RFC 1939's 512-octet limit is for commands and replies, not message content), so
    real mail with a long unwrapped HTML line fails with ``error_proto('line too long')``.
    ``_getline`` is overridden to use ``max_line_bytes`` instead, without touching the global.
    """

    max_line_bytes: ClassVar[int] = 1024 * 1024

    def __init__(
        self,
        checked: CheckedHost,
        port: int,
        *,
        timeout: float,
        implicit_tls: ssl.SSLContext | None,
    ) -> None:
        # poplib.POP3.__init__ would resolve the name again and leak the socket when the
        # greeting fails; set up the same attributes here and leave the greeting to the caller.
        self.host = checked.name  # used by poplib for TLS server_hostname
        self.port = port
        self._addresses = checked.addresses
        self._implicit_tls = implicit_tls
        self._tls_established = False
        self._debugging = 0
        self.sock = None  # type: ignore[assignment]
        self.file = None  # type: ignore[assignment]
        self.welcome = b""
        sys.audit("poplib.connect", self, self.host, port)
        self.sock = self._create_socket(timeout)
        self.file = self.sock.makefile("rb")

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = open_checked_socket(self._addresses, timeout=timeout)
        if self._implicit_tls is None:
            return sock
        try:
            return self._implicit_tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise

    def _getline(self) -> tuple[bytes, int]:
        line = self.file.readline(self.max_line_bytes + 1)
        if len(line) > self.max_line_bytes:
            raise poplib.error_proto(LINE_TOO_LONG)
        # A line without its LF means the stream ended mid-line: the reply is truncated
        # (poplib would chop the last byte off and carry on).
        if not line.endswith(b"\n"):
            raise poplib.error_proto(EOF)
        if line.endswith(b"\r\n"):
            return line[:-2], len(line)
        return line[:-1], len(line)

    # Typed doors to poplib's internals (typeshed leaves the underscored ones out); poplib's
    # public methods would do for most commands, but not for CAPA (see _ask_capabilities).
    def read_greeting(self) -> bytes:
        """Read the server's first line; error_proto if it is not +OK."""
        self.welcome = self._getresp()  # type: ignore[attr-defined]
        return self.welcome

    def short_command(self, line: str) -> bytes:
        """Send ``line``; return the +OK reply or raise error_proto(reply bytes)."""
        reply: bytes = self._shortcmd(line)  # type: ignore[attr-defined]
        return reply

    def long_command(self, line: str) -> list[bytes]:
        """Send ``line``; return the multi-line reply's lines, un-stuffed, without line ends."""
        _response, lines, _octets = self._longcmd(line)  # type: ignore[attr-defined]
        return list(lines)

    def long_command_bytes(self, line: str) -> bytes:
        """Send ``line``; return the multi-line reply as one bytes object, each line ending in CRLF.

        The octets of ``long_command``'s lines, each followed by CRLF (so a bare LF from a
        sloppy server becomes CRLF), un-stuffed (RFC 1939 §3), but read in blocks: poplib's
        loop costs a Python call per line, and a 2 MB attachment is 35,000 lines. The same
        checks as ``_getline``: a line over ``max_line_bytes`` is error_proto(LINE_TOO_LONG),
        a stream that ends before the terminating "." line is error_proto(EOF).
        """
        self._putcmd(line)  # type: ignore[attr-defined]
        self._getresp()  # type: ignore[attr-defined]  # error_proto(reply) unless +OK
        return unstuffed_crlf(self._read_to_terminator())

    def _read_to_terminator(self) -> bytes:
        """Consume the reply's lines and its terminating "." line; return the lines.

        Only what is used is taken from the buffer (peek, then read), so whatever follows the
        terminator stays there for the next reply, as with line-by-line reading.
        """
        reader = cast(io.BufferedReader, self.file)  # socket.makefile("rb") is buffered
        limit = self.max_line_bytes
        body = bytearray()
        line_length = 0  # octets of the unfinished last line in ``body``
        while True:
            chunk = reader.peek(1)
            if not chunk:
                raise poplib.error_proto(EOF)
            # A terminator split across reads: look back 3 octets. The reply's first line
            # starts a line, as if after a LF.
            tail = (b"\n" + body[-3:])[-3:]
            found = terminator_end(bytes(tail) + chunk)
            used = len(chunk) if found is None else found[0] - len(tail)
            part = chunk[:used]
            first_lf = part.find(b"\n")
            if first_lf == -1:
                line_length += used
            else:
                last_lf = part.rfind(b"\n")
                longest_inside = (
                    max(map(len, part[first_lf + 1 : last_lf].split(b"\n"))) + 1
                    if last_lf - first_lf > limit
                    else 0
                )
                if max(line_length + first_lf + 1, longest_inside) > limit:
                    raise poplib.error_proto(LINE_TOO_LONG)
                line_length = used - last_lf - 1
            if line_length > limit:
                raise poplib.error_proto(LINE_TOO_LONG)
            body += reader.read(used)
            if found is not None:
                del body[len(body) - found[1] :]
                return bytes(body)

    def start_tls(self, context: ssl.SSLContext) -> None:
        """Wrap the connected socket in TLS after the server said +OK to STLS (RFC 2595 §4)."""
        self.sock = context.wrap_socket(self.sock, server_hostname=self.host)
        # A fresh reader: anything the server sent in plain text after its +OK (a STARTTLS
        # response-injection attempt) stays in the old buffer and is never read as a reply.
        self.file = self.sock.makefile("rb")
        self._tls_established = True


def terminator_end(window: bytes) -> tuple[int, int] | None:
    """Where the first terminating line ("." alone, after a LF) in ``window`` ends, and its
    length without that LF; None if there is none, or it may be cut off at the end."""
    start = window.find(b"\n.")
    while start != -1:
        after = window[start + 2 : start + 4]
        if after[:1] == b"\n":
            return start + 3, 2
        if after == b"\r\n":
            return start + 4, 3
        start = window.find(b"\n.", start + 1)
    return None


_BARE_LF = re.compile(rb"(?<!\r)\n")


def unstuffed_crlf(lines: bytes) -> bytes:
    """Lines as read (each ending in LF) -> dot-stuffing undone (RFC 1939 §3), CRLF line ends.

    What poplib does line by line: a line starting ".." loses its first ".", and a line
    ending in a bare LF gets CRLF."""
    if lines.startswith(b".."):
        lines = lines[1:]
    if b"\n.." in lines:
        lines = lines.replace(b"\n..", b"\n.")
    if lines.count(b"\n") != lines.count(b"\r\n"):
        lines = _BARE_LF.sub(b"\r\n", lines)
    return lines
