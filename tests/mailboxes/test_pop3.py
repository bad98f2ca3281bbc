"""The POP3 client against the fault-injecting server (and the real Dovecot, in test_pop3_dovecot).

Everything stays on 127.0.0.1; host-name lookups that would reach DNS are patched.
"""

from __future__ import annotations

import poplib
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from mailboxes import pop3, pop3_wire
from mailboxes.pop3 import (
    CertificateError,
    MessageRefused,
    Pop3Error,
    Pop3Security,
    Pop3Session,
    open_pop3_session,
)
from tests.peers.fault_fixtures import FaultPop3Factory
from tests.peers.faultpop3 import FaultPop3Server, long_line_message, stuffed
from tests.peers.fixtures import make_pop3_account

TIMEOUT = 1.0  # seconds; a stall must be noticed within about this


def message(number: int, body: bytes = b"Hello.\r\n") -> bytes:
    return (
        f"From: sender{number}@example.com\r\nTo: alice@example.com\r\n"
        f"Subject: message {number}\r\nMessage-ID: <{number}@example.com>\r\n\r\n"
    ).encode() + body


# Lines that need RFC 1939 dot-stuffing, a lone "." that must not end the message, a blank line.
DOTTY = message(1, b".hidden\r\n..two dots\r\n.\r\n\r\nplain\r\n. space\r\nend with dot.\r\n")


@pytest.fixture(autouse=True)
def _loopback_allowed(settings: Any) -> None:
    settings.MAIL_HOSTS_ALLOW_LOOPBACK = True
    settings.MAIL_HOSTS_ALLOW_PRIVATE = False
    settings.MAIL_CA_FILE = ""


def connect(server: FaultPop3Server, **overrides: Any) -> Pop3Session:
    options: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "security": "none",
        "username": "alice",
        "password": "secret",
        "timeout": TIMEOUT,
    }
    options.update(overrides)
    return open_pop3_session(**options)


def raises_code(code: str, within: float = TIMEOUT + 1.5) -> Any:
    """Context manager: a Pop3Error with ``code`` is raised, and quickly."""

    class Check:
        error: Pop3Error

        def __enter__(self) -> Check:
            self.started = time.monotonic()
            return self

        def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
            elapsed = time.monotonic() - self.started
            assert exc is not None, f"expected Pop3Error {code!r}, nothing was raised"
            assert isinstance(exc, Pop3Error), f"expected Pop3Error {code!r}, got {exc!r}"
            assert exc.code == code, f"expected {code!r}, got {exc.code!r}: {exc.detail}"
            assert elapsed < within, f"took {elapsed:.1f}s"
            self.error = exc
            return True

    return Check()


@pytest.fixture
def filled(fault_pop3: FaultPop3Server) -> FaultPop3Server:
    fault_pop3.add_message(DOTTY, uid="uid-a")
    fault_pop3.add_message(message(2), uid="uid-b")
    fault_pop3.add_message(message(3), uid="uid-c")
    return fault_pop3


# -- the normal path ---------------------------------------------------------------------------


def test_reads_a_mailbox(filled: FaultPop3Server) -> None:
    with connect(filled) as session:
        assert session.stat() == (3, sum(len(raw) for _, raw in filled.messages))
        assert session.uidl() == {1: "uid-a", 2: "uid-b", 3: "uid-c"}
        assert session.sizes() == {n: len(raw) for n, (_, raw) in enumerate(filled.messages, 1)}
        assert "UIDL" in session.capabilities()
        # Exact bytes back: stuffing removed, lone "." kept, CRLF line ends.
        assert session.retrieve(1) == DOTTY
        assert session.retrieve(3) == message(3)
        session.quit()
        assert session.closed
    assert filled.messages[0][1] == DOTTY  # nothing deleted
    assert filled.commands[-1] == "QUIT"


def test_stuffing_on_the_wire_is_what_rfc_1939_says() -> None:
    assert stuffed(b"a\r\n.b\r\n.\r\n") == b"a\r\n..b\r\n..\r\n.\r\n"


def test_bare_lf_from_a_sloppy_server_becomes_crlf(fault_pop3: FaultPop3Server) -> None:
    fault_pop3.add_message(b"Subject: x\n\nbody\n")
    with connect(fault_pop3) as session:
        assert session.retrieve(1) == b"Subject: x\r\n\r\nbody\r\n"


def test_dele_takes_effect_only_at_quit(filled: FaultPop3Server) -> None:
    with connect(filled) as session:
        session.retrieve(2)
        session.delete(2)
        assert filled.deleted_uids == []  # RFC 1939: only marked
        assert 2 not in session.sizes()
        session.quit()
    assert filled.deleted_uids == ["uid-b"]
    assert [uid for uid, _ in filled.messages] == ["uid-a", "uid-c"]


def test_abort_deletes_nothing(filled: FaultPop3Server) -> None:
    session = connect(filled)
    session.delete(1)
    session.delete(2)
    session.abort()
    session.abort()  # harmless twice
    filled.wait_idle()
    assert filled.deleted_uids == []
    assert len(filled.messages) == 3
    assert "QUIT" not in filled.commands


def test_leaving_the_block_without_quit_deletes_nothing(filled: FaultPop3Server) -> None:
    with pytest.raises(RuntimeError), connect(filled) as session:
        session.delete(1)
        raise RuntimeError("import failed")
    filled.wait_idle()
    with connect(filled) as session:
        session.delete(2)
    filled.wait_idle()
    assert filled.deleted_uids == []
    assert "QUIT" not in filled.commands


def test_reset_unmarks(filled: FaultPop3Server) -> None:
    with connect(filled) as session:
        session.delete(1)
        session.reset()
        session.quit()
    assert filled.deleted_uids == []


def test_closed_session_refuses_commands(filled: FaultPop3Server) -> None:
    session = connect(filled)
    session.quit()
    with pytest.raises(RuntimeError):
        session.stat()


@pytest.mark.parametrize("number", [0, -1, "1", "1\r\nDELE 2", True, 1.0])
def test_message_numbers_are_positive_ints(filled: FaultPop3Server, number: Any) -> None:
    with connect(filled) as session, pytest.raises(ValueError):
        session.retrieve(number)


def test_security_values_match_the_mailbox_choices() -> None:
    assert [s.value for s in Pop3Security] == ["ssl", "starttls", "none"]


# -- faults ---------------------------------------------------------------------------------


def test_drop_mid_retr_is_connection_lost_and_deletes_nothing(filled: FaultPop3Server) -> None:
    filled.faults.drop_mid_retr = 2
    with raises_code("connection_lost"), connect(filled) as session:
        session.delete(1)
        session.retrieve(2)
    filled.wait_idle()
    assert filled.deleted_uids == []
    assert len(filled.messages) == 3


def test_stall_mid_retr_times_out(filled: FaultPop3Server) -> None:
    filled.faults.stall_at = "RETR"
    filled.faults.stall_mid_retr = True
    filled.faults.stall_seconds = 10
    with raises_code("timeout") as check, connect(filled) as session:
        session.delete(1)
        session.retrieve(2)
    assert "did not answer in time" in str(check.error.user_message)
    assert filled.deleted_uids == []


@pytest.mark.parametrize("at", ["GREETING", "PASS", "RETR", "QUIT"])
def test_stall_at_any_step_times_out(filled: FaultPop3Server, at: str) -> None:
    filled.faults.stall_at = at
    filled.faults.stall_seconds = 10
    with raises_code("timeout"), connect(filled) as session:
        session.uidl()
        session.delete(1)
        session.retrieve(2)
        session.quit()
    assert filled.deleted_uids == []


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        ("-ERR [AUTH] Authentication failed.", "auth_failed"),
        ("-ERR Invalid login", "auth_failed"),
        ("-ERR [SYS/TEMP] Temporary authentication failure.", "temporary"),
        ("-ERR [IN-USE] Mailbox is locked.", "temporary"),
        ("-ERR [LOGIN-DELAY] Wait a little.", "temporary"),
        ("-ERR [SYS/PERM] Your account is not enabled for POP access.", "login_refused"),
    ],
)
def test_pass_replies_are_classified(filled: FaultPop3Server, reply: str, code: str) -> None:
    filled.faults.err_on["PASS"] = reply
    with raises_code(code) as check:
        connect(filled)
    assert reply.split("] ")[-1] not in str(check.error.user_message)  # no raw reply shown
    assert reply in check.error.detail  # but kept for the operator


def test_wrong_password_is_auth_failed(filled: FaultPop3Server) -> None:
    with raises_code("auth_failed") as check:
        connect(filled, password="wrong")
    assert "user name or password" in str(check.error.user_message)


def test_user_rejected_is_auth_failed(filled: FaultPop3Server) -> None:
    filled.faults.err_on["USER"] = "-ERR no such user"
    with raises_code("auth_failed"):
        connect(filled)
    assert not any(c.startswith("PASS") for c in filled.commands)


def test_mailbox_in_use_by_another_session_is_temporary(filled: FaultPop3Server) -> None:
    with connect(filled), raises_code("temporary") as check:
        connect(filled)
    assert "in use" in str(check.error.user_message)


def test_a_password_echoed_by_the_server_is_scrubbed(filled: FaultPop3Server) -> None:
    filled.faults.err_on["PASS"] = "-ERR [AUTH] wrong password secret for alice"
    with raises_code("auth_failed") as check:
        connect(filled)
    assert "secret" not in check.error.detail
    assert "secret" not in str(check.error)
    assert "********" in check.error.detail


def test_credentials_with_line_breaks_are_never_sent(filled: FaultPop3Server) -> None:
    with raises_code("auth_failed"):
        connect(filled, password="secret\r\nDELE 1")
    assert filled.connections == 0


@pytest.mark.parametrize(
    ("greeting", "code", "says"),
    [
        ("-ERR [SYS/TEMP] too many connections", "temporary", "temporarily"),
        ("-ERR go away", "protocol", "turned the connection away"),
    ],
)
def test_greeting_error_is_reported(
    filled: FaultPop3Server, greeting: str, code: str, says: str
) -> None:
    filled.faults.err_on["GREETING"] = greeting
    with raises_code(code) as check:
        connect(filled)
    assert says in str(check.error.user_message)
    assert filled.commands == []


def test_err_to_retr_is_protocol_and_the_session_goes_on(filled: FaultPop3Server) -> None:
    filled.faults.err_on["RETR 2"] = "-ERR message 2 is gone"
    with connect(filled) as session:
        with raises_code("protocol") as check:
            session.retrieve(2)
        assert "message 2 is gone" not in str(check.error.user_message)
        assert isinstance(check.error, MessageRefused)  # the importer skips just this message
        assert session.retrieve(3) == message(3)


def test_err_with_a_server_response_code_to_retr_is_not_a_refused_message(
    filled: FaultPop3Server,
) -> None:
    # RFC 2449 §8: [SYS/TEMP] is about the server, not the message; the poll ends there.
    filled.faults.err_on["RETR 2"] = "-ERR [SYS/TEMP] try again later"
    with connect(filled) as session:
        with raises_code("temporary") as check:
            session.retrieve(2)
        assert not isinstance(check.error, MessageRefused)


def test_no_uidl_gives_none(filled: FaultPop3Server) -> None:
    filled.faults.no_uidl = True
    with connect(filled) as session:
        assert "UIDL" not in session.capabilities()
        assert session.uidl() is None
        assert session.retrieve(1) == DOTTY  # the session is still usable


def test_no_capa_gives_empty_capabilities(filled: FaultPop3Server) -> None:
    filled.faults.no_capa = True
    with connect(filled) as session:
        assert session.capabilities() == {}
        assert session.uidl() == {1: "uid-a", 2: "uid-b", 3: "uid-c"}


def test_reused_uids_are_reported_as_the_server_gives_them(fault_pop3: FaultPop3Server) -> None:
    fault_pop3.add_message(message(1), uid="same")
    fault_pop3.add_message(message(2), uid="same")
    with connect(fault_pop3) as session:
        assert session.uidl() == {1: "same", 2: "same"}
        session.delete(1)
        session.quit()
    # The UID of a deleted message comes back on a new one.
    fault_pop3.add_message(message(3), uid="same")
    with connect(fault_pop3) as session:
        assert session.uidl() == {1: "same", 2: "same"}
        assert session.retrieve(2) == message(3)


def test_long_uids_are_kept_whole(fault_pop3: FaultPop3Server) -> None:
    uid = "U" * 300  # longer than RFC 1939's 70 characters, as some servers send
    fault_pop3.add_message(message(1), uid=uid)
    with connect(fault_pop3) as session:
        assert session.uidl() == {1: uid}


def test_renumbering_between_sessions(filled: FaultPop3Server) -> None:
    filled.faults.renumber = True
    seen = []
    for _ in range(2):
        with connect(filled) as session:
            numbers = session.uidl()
            assert numbers is not None
            seen.append(numbers)
            by_uid = {uid: number for number, uid in numbers.items()}
            assert session.retrieve(by_uid["uid-b"]) == message(2)
        filled.wait_idle()
    assert seen[0] != seen[1]


def test_gmail_quit_takes_retrieved_messages_abort_does_not(filled: FaultPop3Server) -> None:
    filled.faults.gmail_quit = True
    with connect(filled) as session:
        session.retrieve(1)
    filled.wait_idle()
    assert len(filled.messages) == 3  # aborted: nothing taken
    with connect(filled) as session:
        session.retrieve(1)
        session.quit()
    assert filled.deleted_uids == ["uid-a"]  # never DELE'd, gone anyway


def test_drop_before_quit_is_connection_lost_and_deletes_nothing(
    filled: FaultPop3Server,
) -> None:
    filled.faults.drop_before_quit = True
    session = connect(filled)
    session.delete(1)
    with raises_code("connection_lost"):
        session.quit()
    assert session.closed
    filled.wait_idle()
    assert filled.deleted_uids == []


def test_err_to_quit_is_reported(filled: FaultPop3Server) -> None:
    filled.faults.err_on["QUIT"] = "-ERR some deleted messages not removed"
    session = connect(filled)
    session.delete(1)
    with raises_code("protocol") as check:
        session.quit()
    assert "may still be on the server" in str(check.error.user_message)
    assert session.closed


def test_a_100_kb_line_imports(fault_pop3: FaultPop3Server) -> None:
    raw = long_line_message(100_000)
    fault_pop3.add_message(raw)
    with connect(fault_pop3) as session:
        assert session.retrieve(1) == raw
    assert poplib._MAXLINE == 2048  # type: ignore[attr-defined]  # not patched globally


def test_stock_poplib_would_refuse_that_line(fault_pop3: FaultPop3Server) -> None:
    fault_pop3.add_message(long_line_message(100_000))
    client = poplib.POP3("127.0.0.1", fault_pop3.port, timeout=TIMEOUT)
    try:
        client.user("alice")
        client.pass_("secret")
        with pytest.raises(poplib.error_proto, match="line too long"):
            client.retr(1)
    finally:
        client.close()


def test_an_absurd_line_is_a_protocol_error(
    fault_pop3: FaultPop3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pop3_wire.CheckedPOP3, "max_line_bytes", 50_000)
    fault_pop3.add_message(long_line_message(100_000))
    with raises_code("protocol") as check, connect(fault_pop3) as session:
        session.retrieve(1)
    assert "line far longer" in str(check.error.user_message)


# -- STARTTLS and TLS ----------------------------------------------------------------------


def test_starttls_not_offered_sends_no_credentials(filled: FaultPop3Server) -> None:
    with raises_code("stls_not_offered") as check:
        connect(filled, security="starttls")
    assert "did not send the password" in str(check.error.user_message)
    assert not any(c.split(" ")[0] in ("USER", "PASS", "STLS") for c in filled.commands)


def test_starttls_refused_sends_no_credentials(fault_pop3_factory: FaultPop3Factory) -> None:
    server = fault_pop3_factory(cert_kind="valid")
    server.faults.err_on["STLS"] = "-ERR not now"
    with raises_code("stls_not_offered"):
        connect(server, security="starttls")
    assert not any(c.split(" ")[0] in ("USER", "PASS") for c in server.commands)


def test_starttls_upgrades_then_asks_capa_again(
    fault_pop3_factory: FaultPop3Factory, settings: Any
) -> None:
    server = fault_pop3_factory(cert_kind="valid")
    server.add_message(DOTTY)
    settings.MAIL_CA_FILE = server.ca_file
    with connect(server, security="starttls") as session:
        # RFC 2595 §4: the capabilities are the ones given after TLS.
        assert "STLS" not in session.capabilities()
        assert "USER" in session.capabilities()
        assert session.retrieve(1) == DOTTY
        assert session.peer_certificate_sha256 is not None
        session.quit()
    verbs = [c.split(" ")[0] for c in server.commands]
    assert verbs[:5] == ["CAPA", "STLS", "CAPA", "USER", "PASS"]


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_verified_tls_against_the_test_ca(
    fault_pop3_factory: FaultPop3Factory, settings: Any, security: str
) -> None:
    server = fault_pop3_factory(cert_kind="valid", implicit_tls=security == "ssl")
    settings.MAIL_CA_FILE = server.ca_file
    for host in ("127.0.0.1", "localhost"):
        result = pop3.test_pop3_connection(
            host=host,
            port=server.port,
            security=security,
            username="alice",
            password="secret",
            timeout=TIMEOUT,
        )
        assert result.ok, result


def test_without_the_test_ca_the_certificate_is_untrusted(
    fault_pop3_factory: FaultPop3Factory,
) -> None:
    server = fault_pop3_factory(cert_kind="valid", implicit_tls=True)
    with raises_code("certificate") as check:
        connect(server, security="ssl")
    assert check.error.reason == "untrusted"  # type: ignore[attr-defined]


CERTIFICATE_CASES = [
    ("expired", "127.0.0.1", "expired", "has expired"),
    ("self_signed", "127.0.0.1", "self_signed", "self-signed"),
    ("wrong_host", "127.0.0.1", "wrong_host", "different server name"),
    ("wrong_host", "localhost", "wrong_host", "different server name"),
]


@pytest.mark.parametrize(("kind", "host", "reason", "says"), CERTIFICATE_CASES)
@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_certificate_problems_are_told_apart(
    fault_pop3_factory: FaultPop3Factory,
    settings: Any,
    security: str,
    kind: str,
    host: str,
    reason: str,
    says: str,
) -> None:
    server = fault_pop3_factory(cert_kind=kind, implicit_tls=security == "ssl")
    settings.MAIL_CA_FILE = server.ca_file
    with raises_code("certificate") as check:
        connect(server, host=host, security=security)
    error = check.error
    assert isinstance(error, CertificateError)
    assert error.reason == reason
    assert says in str(error.user_message)
    assert not any(c.split(" ")[0] in ("USER", "PASS") for c in server.commands)


@pytest.mark.parametrize("kind", ["self_signed", "expired", "wrong_host"])
def test_accept_self_signed_accepts_any_certificate(
    fault_pop3_factory: FaultPop3Factory, kind: str
) -> None:
    server = fault_pop3_factory(cert_kind=kind, implicit_tls=True)
    server.add_message(message(1))
    with connect(server, security="ssl", accept_self_signed=True) as session:
        assert session.retrieve(1) == message(1)
        assert len(session.peer_certificate_sha256 or "") == 64


def test_tls_to_a_plain_port_is_a_tls_error(filled: FaultPop3Server) -> None:
    with raises_code("tls") as check:
        connect(filled, security="ssl")
    assert "995" in str(check.error.user_message)


def test_plain_to_a_tls_port_times_out(fault_pop3_factory: FaultPop3Factory) -> None:
    server = fault_pop3_factory(cert_kind="valid", implicit_tls=True)
    with raises_code("timeout"):
        connect(server, security="none")


# -- connecting ------------------------------------------------------------------------------


def test_refused_port(settings: Any) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    with raises_code("refused"):
        open_pop3_session(
            host="127.0.0.1",
            port=port,
            security="ssl",
            username="alice",
            password="secret",
            timeout=TIMEOUT,
        )


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Answer lookups of made-up names as a resolver would, without any DNS traffic.

    /etc/resolv.conf here points at a network resolver, so a real lookup could leave the
    machine: "nonexistent.…" does not exist, "slow-dns.…" times out. (Reserved names such as
    *.invalid never reach the resolver at all: mailboxes.hostcheck answers them itself.)
    """
    looked_up: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        if str(host).startswith("nonexistent."):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if str(host).startswith("slow-dns."):
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield looked_up


def test_unknown_host(no_dns: list[str]) -> None:
    with raises_code("host_not_found") as check:
        open_pop3_session(
            host="nonexistent.recruitmail-test.com",
            port=995,
            security="ssl",
            username="alice",
            password="secret",
            timeout=TIMEOUT,
        )
    assert no_dns == ["nonexistent.recruitmail-test.com"]
    assert "could not be found" in str(check.error.user_message)


def test_dns_not_answering_is_told_apart(no_dns: list[str]) -> None:
    with raises_code("host_not_found") as check:
        open_pop3_session(
            host="slow-dns.recruitmail-test.com",
            port=995,
            security="ssl",
            username="a",
            password="b",
        )
    assert "just now" in str(check.error.user_message)


def test_disallowed_host_makes_no_connection(filled: FaultPop3Server, settings: Any) -> None:
    settings.MAIL_HOSTS_ALLOW_LOOPBACK = False
    for host in ("127.0.0.1", "localhost", "2130706433", "::ffff:127.0.0.1"):
        with raises_code("disallowed_host") as check:
            connect(filled, host=host)
        assert "127.0.0.1" not in str(check.error.user_message)
    assert filled.connections == 0


def test_invalid_host(filled: FaultPop3Server) -> None:
    with raises_code("invalid_host"):
        connect(filled, host="pop3://127.0.0.1")
    assert filled.connections == 0


# -- the "Test connection" button ----------------------------------------------------------


def test_connection_test_counts_and_touches_nothing(filled: FaultPop3Server) -> None:
    result = pop3.test_pop3_connection(
        host="127.0.0.1",
        port=filled.port,
        security="none",
        username="alice",
        password="secret",
        timeout=TIMEOUT,
    )
    assert result.ok
    assert result.message_count == 3
    assert "3 messages" in result.message
    verbs = [c.split(" ")[0] for c in filled.commands]
    assert verbs == ["CAPA", "USER", "PASS", "STAT", "QUIT"]
    assert len(filled.messages) == 3


def test_connection_test_reports_failure_in_plain_words(filled: FaultPop3Server) -> None:
    result = pop3.test_pop3_connection(
        host="127.0.0.1",
        port=filled.port,
        security="none",
        username="alice",
        password="wrong",
        timeout=TIMEOUT,
    )
    assert not result.ok
    assert result.code == "auth_failed"
    assert result.message_count is None
    assert "rejected the user name or password" in result.message
    assert "wrong" not in result.message


def test_default_timeout_comes_from_settings(filled: FaultPop3Server, settings: Any) -> None:
    settings.POP3_TIMEOUT_SECONDS = 1
    filled.faults.stall_at = "PASS"
    filled.faults.stall_seconds = 10
    with raises_code("timeout", within=2.5):
        connect(filled, timeout=None)


# -- against the real Dovecot (tests/peers/dovecot.py) ----------------------------------------

DOVECOT_TIMEOUT = 5.0


def dovecot_session(account: Any, **overrides: Any) -> Pop3Session:
    options: dict[str, Any] = {
        "host": account.host,
        "port": account.pop3s_port,
        "security": "ssl",
        "username": account.user,
        "password": account.password,
        "timeout": DOVECOT_TIMEOUT,
    }
    options.update(overrides)
    return open_pop3_session(**options)


@pytest.fixture
def trusted_ca(settings: Any, dovecot: Any) -> None:
    settings.MAIL_CA_FILE = str(dovecot.ca_file)


@pytest.mark.peers
@pytest.mark.usefixtures("trusted_ca")
@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_dovecot_reads_and_deletes_only_at_quit(pop3_account: Any, security: str) -> None:
    pop3_account.deliver(DOTTY)
    pop3_account.deliver(long_line_message(100_000))
    port = pop3_account.pop3s_port if security == "ssl" else pop3_account.pop3_port
    with dovecot_session(pop3_account, port=port, security=security) as session:
        if security == "starttls":
            assert "STLS" not in session.capabilities()  # asked again after the upgrade
        uids = session.uidl()
        assert uids is not None and len(set(uids.values())) == 2
        assert session.sizes() == {1: len(DOTTY), 2: len(long_line_message(100_000))}
        assert session.retrieve(1) == DOTTY
        assert session.retrieve(2) == long_line_message(100_000)
        session.delete(1)
    assert len(pop3_account.messages()) == 2  # left without QUIT: nothing deleted
    with dovecot_session(pop3_account, port=port, security=security) as session:
        session.delete(1)
        session.quit()
    assert pop3_account.messages() == [long_line_message(100_000)]


@pytest.mark.peers
@pytest.mark.usefixtures("trusted_ca")
def test_dovecot_by_host_name(pop3_account: Any) -> None:
    result = pop3.test_pop3_connection(
        host="localhost",
        port=pop3_account.pop3s_port,
        security="ssl",
        username=pop3_account.user,
        password=pop3_account.password,
        timeout=DOVECOT_TIMEOUT,
    )
    assert result.ok, result
    assert result.message_count == 0


@pytest.mark.peers
@pytest.mark.usefixtures("trusted_ca")
@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_dovecot_wrong_password(pop3_account: Any, security: str) -> None:
    port = pop3_account.pop3s_port if security == "ssl" else pop3_account.pop3_port
    with raises_code("auth_failed", within=DOVECOT_TIMEOUT):
        dovecot_session(pop3_account, port=port, security=security, password="wrong")


@pytest.mark.peers
@pytest.mark.usefixtures("trusted_ca")
def test_dovecot_wrong_user(pop3_account: Any) -> None:
    with raises_code("auth_failed", within=DOVECOT_TIMEOUT):
        dovecot_session(pop3_account, username="nobody-here")


@pytest.mark.peers
def test_dovecot_untrusted_without_the_test_ca(pop3_account: Any) -> None:
    with raises_code("certificate") as check:
        dovecot_session(pop3_account)
    assert check.error.reason == "untrusted"  # type: ignore[attr-defined]


@pytest.mark.peers
@pytest.mark.parametrize(
    ("kind", "reason"),
    [("expired", "expired"), ("wrong_host", "wrong_host"), ("self_signed", "self_signed")],
)
def test_dovecot_certificate_problems(
    dovecot_factory: Any, settings: Any, kind: str, reason: str
) -> None:
    server = dovecot_factory(cert=kind)
    settings.MAIL_CA_FILE = str(server.ca_file)
    account = make_pop3_account(server)
    messages = set()
    for security, port in (("ssl", server.pop3s_port), ("starttls", server.pop3_port)):
        with raises_code("certificate", within=DOVECOT_TIMEOUT) as check:
            dovecot_session(account, port=port, security=security)
        assert check.error.reason == reason  # type: ignore[attr-defined]
        messages.add(str(check.error.user_message))
    assert len(messages) == 1  # the same words whichever way TLS started
    if kind == "self_signed":
        with dovecot_session(account, accept_self_signed=True) as session:
            assert session.stat() == (0, 0)


@pytest.mark.peers
def test_dovecot_certificate_messages_differ(dovecot_factory: Any, settings: Any) -> None:
    texts = set()
    for kind in ("expired", "wrong_host", "self_signed"):
        server = dovecot_factory(cert=kind)
        settings.MAIL_CA_FILE = str(server.ca_file)
        with raises_code("certificate", within=DOVECOT_TIMEOUT) as check:
            dovecot_session(make_pop3_account(server))
        texts.add(str(check.error.user_message))
    assert len(texts) == 3


@pytest.mark.peers
def test_dovecot_without_stls(dovecot_factory: Any, settings: Any) -> None:
    server = dovecot_factory(plain_pop3_stls=False)
    settings.MAIL_CA_FILE = str(server.ca_file)
    account = make_pop3_account(server)
    with raises_code("stls_not_offered", within=DOVECOT_TIMEOUT):
        dovecot_session(account, port=server.pop3_port, security="starttls")
    # Dovecot logs every disconnect; this one must say that no login was attempted.
    deadline = time.monotonic() + DOVECOT_TIMEOUT
    while "no auth attempts" not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "no auth attempts" in server.log_text()
    assert f"user=<{account.user}>" not in server.log_text()
