"""The mail host check: private, loopback and link-local targets are refused at connect time.

Only address literals, "localhost" (from /etc/hosts) and a patched resolver are used, so no
DNS query leaves the machine.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.urls import reverse

from mailboxes.hostcheck import (
    DisallowedHost,
    check_mail_host,
    open_checked_socket,
    resolve_mail_host,
    validate_host_syntax,
)
from mailboxes.models import Mailbox, SystemSender
from mailboxes.pop3 import ConnectionTestResult, test_pop3_connection
from mailboxes.smtp import SmtpAccount, test_smtp_connection
from tests.conftest import Team
from tests.mailboxes.factories import MailboxFactory


@pytest.fixture(autouse=True)
def _strict_hosts(settings: Any) -> None:
    settings.MAIL_HOSTS_ALLOW_LOOPBACK = False
    settings.MAIL_HOSTS_ALLOW_PRIVATE = False


LOOPBACK = ["127.0.0.1", "127.1", "::1", "[::1]", "::ffff:127.0.0.1", "localhost"]
LOOPBACK_NUMERIC = ["2130706433", "0x7f000001", "0177.0.0.1", "0x7f.1"]
PRIVATE = ["10.0.0.1", "172.16.5.4", "192.168.1.1", "100.64.0.1", "fc00::1", "::ffff:10.0.0.1"]
FORBIDDEN = [
    "169.254.169.254",  # cloud metadata, link-local
    "fe80::1",
    "0.0.0.0",  # noqa: S104 - the point is that it is refused
    "::",
    "224.0.0.1",
    "ff02::1",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",  # documentation
    "2001:db8::1",  # documentation
    "::7f00:1",  # IPv4-compatible loopback
    "2002:7f00:1::",  # 6to4 wrapping loopback
    "64:ff9b::7f00:1",  # NAT64 wrapping loopback
    "fd00:ec2::254",  # AWS metadata over IPv6 (in the ULA range)
    "100.100.100.200",  # Alibaba metadata (in the shared range)
    "::ffff:169.254.169.254",
]
PUBLIC = ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34"]


@pytest.mark.parametrize("host", LOOPBACK + LOOPBACK_NUMERIC + PRIVATE + FORBIDDEN)
def test_refused_by_default(host: str) -> None:
    with pytest.raises(DisallowedHost) as caught:
        resolve_mail_host(host, 995)
    message = str(caught.value)
    assert "private, loopback or link-local" in message
    # The same sentence for every range, naming no address: it tells a user nothing more.
    assert caught.value.address not in message


@pytest.mark.parametrize("host", LOOPBACK + LOOPBACK_NUMERIC)
def test_loopback_allowed_by_its_setting(settings: Any, host: str) -> None:
    settings.MAIL_HOSTS_ALLOW_LOOPBACK = True
    addresses = resolve_mail_host(host, 110)
    assert addresses
    assert all(info[4][1] == 110 for info in addresses)


@pytest.mark.parametrize("host", PRIVATE + FORBIDDEN)
def test_allowing_loopback_allows_nothing_else(settings: Any, host: str) -> None:
    settings.MAIL_HOSTS_ALLOW_LOOPBACK = True
    with pytest.raises(DisallowedHost):
        resolve_mail_host(host, 995)


@pytest.mark.parametrize("host", PRIVATE)
def test_private_allowed_by_its_setting(settings: Any, host: str) -> None:
    settings.MAIL_HOSTS_ALLOW_PRIVATE = True
    assert resolve_mail_host(host, 995)


@pytest.mark.parametrize("host", LOOPBACK + FORBIDDEN)
def test_allowing_private_allows_neither_loopback_nor_link_local(settings: Any, host: str) -> None:
    settings.MAIL_HOSTS_ALLOW_PRIVATE = True
    with pytest.raises(DisallowedHost):
        resolve_mail_host(host, 995)


def test_everything_allowed_still_refuses_metadata_and_link_local(settings: Any) -> None:
    settings.MAIL_HOSTS_ALLOW_LOOPBACK = True
    settings.MAIL_HOSTS_ALLOW_PRIVATE = True
    for host in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "fe80::1"):
        with pytest.raises(DisallowedHost):
            resolve_mail_host(host, 995)


@pytest.mark.parametrize("host", PUBLIC)
def test_public_literals_allowed(host: str) -> None:
    # Only the check: nothing connects.
    assert resolve_mail_host(host, 995)


def test_legacy_numeric_public_address_resolves_to_its_dotted_form() -> None:
    checked = check_mail_host("1572395042", 995)  # 93.184.216.34 as one number
    assert checked.name == "93.184.216.34"
    assert [info[4][0] for info in checked.addresses] == ["93.184.216.34"]


def _fake_resolver(
    monkeypatch: pytest.MonkeyPatch, answers: list[list[str]]
) -> list[tuple[Any, ...]]:
    """Make socket.getaddrinfo answer each call with the next list of addresses."""
    calls: list[tuple[Any, ...]] = []

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        calls.append((host, port))
        if not answers:
            raise AssertionError("resolved a second time")
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port))
            for ip in answers.pop(0)
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


def test_one_private_address_among_public_ones_refuses_the_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_resolver(monkeypatch, [["93.184.216.34", "10.1.2.3"]])
    with pytest.raises(DisallowedHost):
        resolve_mail_host("mail.example.com", 995)


def test_connects_to_the_checked_address_without_resolving_again(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a second lookup could answer differently; there is none."""
    settings.MAIL_HOSTS_ALLOW_LOOPBACK = True
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    # The first answer is checked; a rebinding server would answer the second with 10.0.0.1.
    calls = _fake_resolver(monkeypatch, [["127.0.0.1"], ["10.0.0.1"]])
    try:
        checked = check_mail_host("pop.example.com", port)
        assert checked.name == "pop.example.com"  # what TLS verifies against
        with open_checked_socket(checked.addresses, timeout=2) as sock:
            assert sock.getpeername() == ("127.0.0.1", port)
            assert sock.gettimeout() == 2
    finally:
        listener.close()
    assert calls == [("pop.example.com", port)]


def test_open_checked_socket_tries_the_next_address(settings: Any) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    stream, tcp = socket.SOCK_STREAM, socket.IPPROTO_TCP
    addresses = [
        (socket.AF_INET, stream, tcp, "", ("127.0.0.1", dead_port)),
        (socket.AF_INET, stream, tcp, "", ("127.0.0.1", port)),
    ]
    try:
        with open_checked_socket(addresses, timeout=2) as sock:
            assert sock.getpeername()[1] == port
        with pytest.raises(ConnectionRefusedError):
            open_checked_socket(addresses[:1], timeout=2)
    finally:
        listener.close()


def test_dns_failure_propagates_as_gaierror(monkeypatch: pytest.MonkeyPatch) -> None:
    def getaddrinfo(*args: Any, **kwargs: Any) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    with pytest.raises(socket.gaierror):
        resolve_mail_host("nonexistent.invalid", 995)


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("POP.Example.COM", "pop.example.com"),
        ("  pop.example.com  ", "pop.example.com"),
        ("pop.example.com.", "pop.example.com"),
        ("Bücher.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("mail", "mail"),
        ("192.0.2.10", "192.0.2.10"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ("2001:db8:0:0::1", "2001:db8::1"),
    ],
)
def test_validate_host_syntax_normalises(typed: str, stored: str) -> None:
    assert validate_host_syntax(typed) == stored


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("", "Enter the mail server"),
        ("   ", "Enter the mail server"),
        ("pop example.com", "spaces"),
        ("pop.example.com\n", None),  # stripped like surrounding spaces
        ("pop.exa\tmple.com", "spaces"),
        ("pop3://pop.example.com", "prefix"),
        ("https://pop.example.com/", "prefix"),
        ("pop.example.com/inbox", "path"),
        ("alice@pop.example.com", "user name"),
        ("pop.example.com:995", "port field"),
        ("[::1]:995", "port field"),
        ("pop3:pop.example.com", "prefix"),
        ("a_b.example.com", "not a valid server name"),
        ("-bad.example.com", "not a valid server name"),
        ("2130706433", "dotted form"),
        ("0x7f000001", "dotted form"),
        ("0177.0.0.1", "dotted form"),
        ("1.2.3.4.5", "not a valid IP address"),
        ("300.1.1.1", "not a valid IP address"),
        ("x" * 64 + ".example.com", "not a valid server name"),
    ],
)
def test_validate_host_syntax_rejects(typed: str, says: str | None) -> None:
    check: Callable[[], str] = lambda: validate_host_syntax(typed)  # noqa: E731
    if says is None:
        assert check() == "pop.example.com"
        return
    with pytest.raises(ValueError, match=says):
        check()


@pytest.mark.parametrize(
    "host", ["pop.demo.recruitmail.test", "mail.nonexistent.invalid", "pop.example"]
)
def test_reserved_top_level_names_never_reach_a_resolver(
    host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket as socket_module

    from mailboxes.hostcheck import check_mail_host

    def no_lookup(*args: object, **kwargs: object) -> None:
        raise AssertionError("a reserved name was sent to the resolver")

    monkeypatch.setattr(socket_module, "getaddrinfo", no_lookup)
    with pytest.raises(socket_module.gaierror):
        check_mail_host(host, 995)


# --- Names that resolve to internal addresses, and the connections made after the check -----

INTERNAL_ANSWERS = {
    "127.0.0.1": "loopback",
    "10.0.0.1": "private",
    "169.254.169.254": "metadata",
    "::1": "loopback",
    "::ffff:127.0.0.1": "loopback",
}


def _answering(monkeypatch: pytest.MonkeyPatch, *answers: str) -> list[str]:
    """socket.getaddrinfo answers the n-th lookup with ``answers[n]`` (IPv4 or IPv6); a lookup
    beyond them fails the test. Returns the names looked up. No query leaves the machine."""
    looked_up: list[str] = []

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        looked_up.append(host)
        if len(looked_up) > len(answers):
            raise AssertionError(f"{host} resolved a second time (DNS rebinding window)")
        ip = answers[len(looked_up) - 1]
        if ":" in ip:
            return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port, 0, 0))]
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return looked_up


@pytest.mark.parametrize("address", list(INTERNAL_ANSWERS))
def test_a_name_resolving_to_an_internal_address_is_refused(
    monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    looked_up = _answering(monkeypatch, address)
    with pytest.raises(DisallowedHost) as caught:
        check_mail_host("mail.attacker.example.com", 995)
    assert looked_up == ["mail.attacker.example.com"]
    assert str(caught.value) == (
        "The mail server name points to a private, loopback or link-local network address, "
        "which this installation does not allow. Use the server's public name."
    )
    assert caught.value.address == str(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", list(INTERNAL_ANSWERS))
def test_allowing_loopback_lets_through_only_names_resolving_to_loopback(
    settings: Any, monkeypatch: pytest.MonkeyPatch, address: str
) -> None:
    settings.MAIL_HOSTS_ALLOW_LOOPBACK = True
    _answering(monkeypatch, address)
    if INTERNAL_ANSWERS[address] == "loopback":
        (info,) = check_mail_host("mail.local.example.com", 110).addresses
        assert info[4][:2] == (address, 110)
    else:
        with pytest.raises(DisallowedHost):
            check_mail_host("mail.local.example.com", 110)


class _Listener:
    """A loopback TCP port that counts the connections it accepts and hangs up on each."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[_Listener]:
    server = _Listener()
    yield server
    server.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pop3_test(host: str, port: int) -> ConnectionTestResult:
    return test_pop3_connection(
        host=host, port=port, security="none", username="u", password="p", timeout=2
    )


def _smtp_test(host: str, port: int) -> ConnectionTestResult:
    account = SmtpAccount(host=host, port=port, security="none", username="", password="")
    return test_smtp_connection(account, timeout=2)


CONNECTION_TESTS = {"pop3": _pop3_test, "smtp": _smtp_test}


@pytest.mark.parametrize("protocol", list(CONNECTION_TESTS))
def test_sessions_connect_to_the_checked_address_and_never_resolve_again(
    settings: Any, monkeypatch: pytest.MonkeyPatch, listener: _Listener, protocol: str
) -> None:
    """DNS rebinding against POP3, SMTP and their "test connection" buttons: the first answer
    is checked and connected to; a rebinding resolver's second answer is never asked for."""
    settings.MAIL_HOSTS_ALLOW_LOOPBACK = True
    looked_up = _answering(monkeypatch, "127.0.0.1", "10.0.0.1")
    result = CONNECTION_TESTS[protocol]("mail.rebind.example.com", listener.port)
    assert not result.ok  # the listener hangs up without a greeting
    assert looked_up == ["mail.rebind.example.com"]
    _wait_for(lambda: listener.accepted == 1)


@pytest.mark.parametrize("protocol", list(CONNECTION_TESTS))
def test_a_refused_answer_makes_no_connection(
    monkeypatch: pytest.MonkeyPatch, listener: _Listener, protocol: str
) -> None:
    looked_up = _answering(monkeypatch, "10.0.0.1")
    result = CONNECTION_TESTS[protocol]("mail.internal.example.com", listener.port)
    assert (result.ok, result.code) == (False, "disallowed_host")
    assert "private, loopback or link-local" in result.message
    assert looked_up == ["mail.internal.example.com"]
    assert listener.accepted == 0


@pytest.mark.parametrize("protocol", list(CONNECTION_TESTS))
@pytest.mark.parametrize("host", ["127.0.0.1", "2130706433", "0x7f000001", "0177.0.0.1"])
def test_the_test_button_does_not_tell_an_open_port_from_a_closed_one(
    listener: _Listener, protocol: str, host: str
) -> None:
    """Port scanning through the button: for a refused host, open and closed ports answer the
    same, and nothing is connected to."""
    open_port = CONNECTION_TESTS[protocol](host, listener.port)
    closed_port = CONNECTION_TESTS[protocol](host, _closed_port())
    assert (open_port.ok, open_port.code) == (False, "disallowed_host")
    assert (open_port.message, open_port.code) == (closed_port.message, closed_port.code)
    assert listener.accepted == 0


@pytest.mark.django_db
def test_the_buttons_answer_the_same_for_open_and_closed_ports(
    team: Team, listener: _Listener
) -> None:
    client = team.client_for(team.owner)
    admin = team.client_for(team.admin)
    flashes = []
    mailbox = MailboxFactory(owner=team.owner, pop3_host="127.0.0.1", smtp_host="127.0.0.1")
    sender = SystemSender.objects.create(
        organization=team.organization,
        name="Hub",
        address="hub@sakura.example",
        smtp_host="127.0.0.1",
        smtp_security="none",
    )
    for port in (listener.port, _closed_port()):
        Mailbox.objects.filter(pk=mailbox.pk).update(pop3_port=port, smtp_port=port)
        SystemSender.objects.filter(pk=sender.pk).update(smtp_port=port)
        for button in ("mailboxes:test_connection", "mailboxes:test_smtp"):
            page = client.post(reverse(button, args=[mailbox.pk]), follow=True)
            flashes.append([str(message) for message in page.context["messages"]])
        page = admin.post(reverse("system_sender_test"), follow=True)
        flashes.append([str(message) for message in page.context["messages"]])
    assert flashes[:3] == flashes[3:]
    assert all("private, loopback or link-local" in flash[0] for flash in flashes)
    assert listener.accepted == 0


def _wait_for(condition: Callable[[], bool]) -> None:
    for _ in range(50):
        if condition():
            return
        time.sleep(0.02)
    assert condition()
