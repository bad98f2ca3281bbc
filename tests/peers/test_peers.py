"""The test peers really behave like the servers they stand for, seen through the stdlib.

These pin what the importer and sender tests build on: TLS verification against the test CA,
STLS, RFC 1939's UPDATE state, CRLF on RETR, stable UIDLs, SMTP AUTH and refusals.
"""

from __future__ import annotations

import contextlib
import poplib
import re
import smtplib
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.peers.dovecot import DovecotServer
from tests.peers.fixtures import Pop3Account, Pop3AccountFactory
from tests.peers.smtp import SmtpServer

pytestmark = pytest.mark.peers

TIMEOUT = 10


def verifying_context(ca_file: Path) -> ssl.SSLContext:
    """What a careful client uses: the system's defaults, trusting only the test CA."""
    return ssl.create_default_context(cafile=str(ca_file))


def to_crlf(raw: bytes) -> bytes:
    """``raw`` with every line ending in CRLF, as POP3 RETR sends it."""
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def retr_bytes(client: poplib.POP3, number: int) -> bytes:
    """The message as RETR sent it, dot-unstuffed, without the terminating ``.`` line."""
    _response, lines, _octets = client.retr(number)
    return b"\r\n".join(lines) + b"\r\n"


def pop3s_login(account: Pop3Account) -> poplib.POP3_SSL:
    client = poplib.POP3_SSL(
        account.host,
        account.pop3s_port,
        context=verifying_context(account.ca_file),
        timeout=TIMEOUT,
    )
    client.user(account.user)
    client.pass_(account.password)
    return client


# -- Dovecot: connecting -----------------------------------------------------------------------


def test_pop3s_login_verifies_the_certificate_for_ip_and_name(pop3_account: Pop3Account) -> None:
    client = pop3s_login(pop3_account)
    assert client.stat() == (0, 0)
    client.quit()

    by_name = poplib.POP3_SSL(
        "localhost",
        pop3_account.pop3s_port,
        context=verifying_context(pop3_account.ca_file),
        timeout=TIMEOUT,
    )
    assert by_name.getwelcome().startswith(b"+OK")
    by_name.quit()


def test_stls_upgrades_the_plain_port(pop3_account: Pop3Account) -> None:
    client = poplib.POP3(pop3_account.host, pop3_account.pop3_port, timeout=TIMEOUT)
    assert "STLS" in client.capa()
    client.stls(verifying_context(pop3_account.ca_file))
    client.user(pop3_account.user)
    client.pass_(pop3_account.password)
    assert client.stat() == (0, 0)
    client.quit()


def test_plain_port_can_be_started_without_stls(
    dovecot_factory: Callable[..., DovecotServer],
) -> None:
    server = dovecot_factory(plain_pop3_stls=False)
    server.add_user("plain-only", "secret")

    client = poplib.POP3(server.host, server.pop3_port, timeout=TIMEOUT)
    assert "STLS" not in client.capa()
    client.user("plain-only")
    client.pass_("secret")
    client.quit()
    tls_client = poplib.POP3_SSL(
        server.host, server.pop3s_port, context=verifying_context(server.ca_file), timeout=TIMEOUT
    )
    tls_client.user("plain-only")
    tls_client.pass_("secret")
    tls_client.quit()


def test_wrong_password_and_unknown_user_are_rejected(pop3_account: Pop3Account) -> None:
    for user, password in [(pop3_account.user, "wrong"), ("no-such-user", "whatever")]:
        client = poplib.POP3(pop3_account.host, pop3_account.pop3_port, timeout=TIMEOUT)
        client.user(user)
        with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\]"):
            client.pass_(password)
        client.close()


def test_a_new_password_counts_at_the_next_login(pop3_account: Pop3Account) -> None:
    pop3s_login(pop3_account).quit()
    pop3_account.server.add_user(pop3_account.user, "changed")

    client = poplib.POP3(pop3_account.host, pop3_account.pop3_port, timeout=TIMEOUT)
    client.user(pop3_account.user)
    client.pass_("changed")
    client.quit()


@pytest.mark.parametrize(
    ("cert", "reason"),
    [
        ("expired", "certificate has expired"),
        ("wrong_host", "IP address mismatch"),
        ("self_signed", "self.signed certificate"),
    ],
)
def test_bad_certificates_fail_verification(
    dovecot_factory: Callable[..., DovecotServer], cert: str, reason: str
) -> None:
    server = dovecot_factory(cert=cert)
    context = verifying_context(server.ca_file)

    with pytest.raises(ssl.SSLCertVerificationError) as implicit:
        poplib.POP3_SSL(server.host, server.pop3s_port, context=context, timeout=TIMEOUT)
    assert re.search(reason, implicit.value.verify_message)

    client = poplib.POP3(server.host, server.pop3_port, timeout=TIMEOUT)
    with pytest.raises(ssl.SSLCertVerificationError) as upgraded:
        client.stls(context)
    assert re.search(reason, upgraded.value.verify_message)
    with contextlib.suppress(OSError):  # the failed handshake already closed the socket
        client.close()


def test_wrong_host_certificate_fails_by_name_too(
    dovecot_factory: Callable[..., DovecotServer],
) -> None:
    server = dovecot_factory(cert="wrong_host")
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        poplib.POP3_SSL(
            "localhost", server.pop3s_port, context=verifying_context(server.ca_file), timeout=5
        )


# -- Dovecot: messages -----------------------------------------------------------------------

MESSAGES = [
    b"From: a@example.com\r\nSubject: CRLF\r\n\r\nBody with CRLF.\r\n",
    b"From: b@example.com\nSubject: LF only\n\nBody with bare LFs.\nSecond line.\n",
    b"From: c@example.com\r\nSubject: dots\r\n\r\n.starts with a dot\r\n.\r\n..two\r\nend\r\n",
]


def test_retr_returns_each_message_with_crlf_line_ends(pop3_account: Pop3Account) -> None:
    names = [pop3_account.deliver(raw) for raw in MESSAGES]
    assert len(set(names)) == 3

    client = pop3s_login(pop3_account)
    assert client.stat() == (3, sum(len(to_crlf(raw)) for raw in MESSAGES))
    _response, listing, _octets = client.list()
    assert [int(line.split()[1]) for line in listing] == [len(to_crlf(raw)) for raw in MESSAGES]
    assert [retr_bytes(client, number) for number in (1, 2, 3)] == [to_crlf(r) for r in MESSAGES]
    client.quit()
    # Reading deletes nothing, and the stored bytes are the ones delivered.
    assert pop3_account.messages() == MESSAGES


def test_uidls_are_unique_and_stable_across_sessions(pop3_account: Pop3Account) -> None:
    for raw in MESSAGES:
        pop3_account.deliver(raw)

    def uidls() -> list[bytes]:
        client = pop3s_login(pop3_account)
        _response, lines, _octets = client.uidl()
        client.quit()
        return [line.split()[1] for line in lines]

    first = uidls()
    assert len(set(first)) == 3
    # %08Xu%08Xv: the UID, then UIDVALIDITY, in lowercase hex (Dovecot's %X is lowercase).
    assert all(re.fullmatch(rb"[0-9a-f]{16}", uid) for uid in first)
    assert uidls() == first
    pop3_account.deliver(b"Subject: later\r\n\r\nlater\r\n")
    second = uidls()
    assert second[:3] == first and second[3] not in first


def test_dele_takes_effect_at_quit(pop3_account: Pop3Account) -> None:
    for raw in MESSAGES[:2]:
        pop3_account.deliver(raw)

    client = pop3s_login(pop3_account)
    client.dele(1)
    assert pop3_account.messages() == MESSAGES[:2]  # RFC 1939: only marked until QUIT
    client.quit()

    assert pop3_account.messages() == MESSAGES[1:2]


def test_dele_without_quit_deletes_nothing(pop3_account: Pop3Account) -> None:
    for raw in MESSAGES[:2]:
        pop3_account.deliver(raw)
    client = pop3s_login(pop3_account)
    _response, before, _octets = client.uidl()
    client.dele(1)
    client.dele(2)
    client.close()  # the connection drops: no QUIT, so no UPDATE state

    again = pop3s_login(pop3_account)
    _response, after, _octets = again.uidl()
    again.quit()
    assert after == before
    assert pop3_account.messages() == MESSAGES[:2]


def test_accounts_are_separate_mailboxes(pop3_account_factory: Pop3AccountFactory) -> None:
    first, second = pop3_account_factory(), pop3_account_factory()
    first.deliver(MESSAGES[0])

    assert pop3s_login(second).stat() == (0, 0)
    assert second.messages() == []
    with pytest.raises(ValueError, match="no user"):
        first.server.deliver("nobody-by-that-name", MESSAGES[0])


# -- SMTP ------------------------------------------------------------------------------------

RAW_MAIL = b"From: sender@example.com\r\nTo: to@example.com\r\nSubject: hi\r\n\r\n.dot\r\nbye\r\n"


def test_starttls_auth_and_send_are_recorded(smtp_server: SmtpServer) -> None:
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=TIMEOUT) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")  # AUTH only once encrypted
        client.starttls(context=verifying_context(smtp_server.ca_file))
        client.ehlo()
        assert set(client.esmtp_features["auth"].split()) >= {"LOGIN", "PLAIN"}
        assert smtp_server.username and smtp_server.password
        client.login(smtp_server.username, smtp_server.password)
        refused = client.sendmail(smtp_server.username, ["to@example.com"], RAW_MAIL)

    assert refused == {}
    [message] = smtp_server.messages
    assert message.mail_from == smtp_server.username
    assert message.rcpt_tos == ("to@example.com",)
    assert message.raw == RAW_MAIL
    assert message.authenticated_as == smtp_server.username
    assert message.over_tls


def test_wrong_smtp_password_gets_535_and_no_auth_gets_530(smtp_server: SmtpServer) -> None:
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=TIMEOUT) as client:
        client.starttls(context=verifying_context(smtp_server.ca_file))
        with pytest.raises(smtplib.SMTPSenderRefused) as unauthenticated:
            client.sendmail("x@example.com", ["to@example.com"], RAW_MAIL)
        assert unauthenticated.value.smtp_code == 530
        with pytest.raises(smtplib.SMTPAuthenticationError) as rejected:
            client.login(smtp_server.username or "", "wrong")
        assert rejected.value.smtp_code == 535

    assert smtp_server.messages == []
    assert smtp_server.auth_attempts and not any(a.success for a in smtp_server.auth_attempts)


def test_refused_recipients_get_550(smtp_factory: Callable[..., SmtpServer]) -> None:
    server = smtp_factory(refused_recipients={"Gone@example.com"}, security="plain")
    with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
        refused = client.sendmail("a@example.com", ["to@example.com", "gone@example.com"], RAW_MAIL)
        assert refused["gone@example.com"][0] == 550
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail("a@example.com", ["gone@example.com"], RAW_MAIL)

    [message] = server.messages
    assert message.rcpt_tos == ("to@example.com",)
    assert message.authenticated_as is None and not message.over_tls


def test_implicit_tls_with_auth(smtp_factory: Callable[..., SmtpServer]) -> None:
    server = smtp_factory(security="implicit", username="me@example.com", password="pw")
    context = verifying_context(server.ca_file)
    with smtplib.SMTP_SSL(server.host, server.port, context=context, timeout=TIMEOUT) as client:
        client.login("me@example.com", "pw")
        client.sendmail("me@example.com", ["to@example.com"], RAW_MAIL)

    assert server.messages[0].over_tls
    assert server.messages[0].authenticated_as == "me@example.com"


def test_auth_over_plain_only_when_allowed(smtp_factory: Callable[..., SmtpServer]) -> None:
    server = smtp_factory(
        security="plain", username="me@example.com", password="pw", allow_auth_without_tls=True
    )
    with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
        client.login("me@example.com", "pw")
        client.sendmail("me@example.com", ["to@example.com"], RAW_MAIL)
    assert server.auth_attempts[0].success and not server.auth_attempts[0].over_tls

    strict = smtp_factory(security="plain", username="me@example.com", password="pw")
    with smtplib.SMTP(strict.host, strict.port, timeout=TIMEOUT) as client:
        with pytest.raises(smtplib.SMTPNotSupportedError):
            client.login("me@example.com", "pw")


def test_smtp_certificate_is_verified(smtp_factory: Callable[..., SmtpServer]) -> None:
    server = smtp_factory(cert="self_signed")
    with smtplib.SMTP(server.host, server.port, timeout=TIMEOUT) as client:
        with pytest.raises(ssl.SSLCertVerificationError, match="self.signed certificate"):
            client.starttls(context=verifying_context(server.ca_file))
