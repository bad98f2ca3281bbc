"""Checking a user-supplied mail server host before the hub connects to it.

A recruiter types the POP3 and SMTP host of their mailbox, and a fetch worker connects to it
from inside the operator's network. Without a check, "127.0.0.1", "10.0.0.5" or the cloud
metadata address "169.254.169.254" would let any user probe or talk to internal services
(server-side request forgery). So the host is resolved **at connect time** and refused when any
of its addresses is not a public one, unless an operator setting allows it:

=====================  =======================================  ===============================
category               addresses                                allowed when
=====================  =======================================  ===============================
loopback               127.0.0.0/8, ::1, ::ffff:127.0.0.0/104   ``MAIL_HOSTS_ALLOW_LOOPBACK``
private                10/8, 172.16/12, 192.168/16,             ``MAIL_HOSTS_ALLOW_PRIVATE``
                       100.64/10 (RFC 6598), fc00::/7 (ULA)
forbidden              link-local (169.254/16, fe80::/10),      never
                       unspecified, multicast, reserved,
                       documentation and every other range
                       that is not globally routable, and the
                       cloud metadata endpoints
public                 everything else                          always
=====================  =======================================  ===============================

IPv6 addresses that carry an IPv4 address are judged by the IPv4 address inside: an
IPv4-mapped one (``::ffff:a.b.c.d``) falls in that address's category; an IPv4-compatible
(``::a.b.c.d``), 6to4 (``2002::/16``) or NAT64 (``64:ff9b::/96``) one is public when the
address inside is public and forbidden otherwise. Legacy numeric spellings that ``inet_aton`` accepts (``2130706433``, ``0x7f000001``,
``0177.0.0.1``, ``127.1``) are decoded and judged like the dotted address they mean.

DNS rebinding: the caller must connect to the addresses returned here (``open_checked_socket``)
and never resolve the name again, or a hostile DNS server could answer with a public address
for the check and a private one for the connection. TLS still verifies the certificate against
the host *name* (``CheckedHost.name``), which is what the certificate was issued for.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import idna
from django.conf import settings
from django.utils.translation import gettext

# One getaddrinfo() result: (family, type, proto, canonname, sockaddr).
AddressInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(net)
    for net in (
        "10.0.0.0/8",  # RFC 1918
        "172.16.0.0/12",  # RFC 1918
        "192.168.0.0/16",  # RFC 1918
        "100.64.0.0/10",  # RFC 6598 shared address space (carrier NAT, Tailscale)
        "fc00::/7",  # RFC 4193 unique local addresses
    )
)
# Cloud instance metadata endpoints that sit inside ranges an operator may allow
# (AWS IMDS over IPv6 is a ULA address, Alibaba's is in 100.64/10). They hand out
# credentials, so no setting makes them reachable.
_METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(addr) for addr in ("fd00:ec2::254", "100.100.100.200")
)
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052
_LEGACY_NUMERIC = re.compile(r"[0-9a-fx.]+", re.IGNORECASE)
_WHITESPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f]")
_ALL_DIGITS = re.compile(r"[0-9]+")


class DisallowedHost(Exception):
    """The mail host resolves to an address this installation refuses to connect to.

    Not Django's ``django.core.exceptions.DisallowedHost`` (which is about the Host header).
    ``str(exc)`` and ``user_message`` are the same plain-language sentence, identical for every
    refused range so that a user learns nothing about the internal network beyond it;
    ``address`` is the offending address, for operator logs only.
    """

    def __init__(self, address: str) -> None:
        self.address = address
        self.user_message = gettext(
            "The mail server name points to a private, loopback or link-local network "
            "address, which this installation does not allow. Use the server's public name."
        )
        super().__init__(self.user_message)


@dataclass(frozen=True)
class CheckedHost:
    """A host that passed the check: connect to ``addresses``, verify TLS against ``name``."""

    name: str
    addresses: tuple[AddressInfo, ...]


def validate_host_syntax(host: str) -> str:
    """Return ``host`` normalised (lower-case IDNA A-label, or canonical IP) for storing.

    Accepts a host name (internationalised names too) or an IPv4/IPv6 literal, optionally in
    brackets. Raises ValueError with a sentence a user can act on for anything else: empty,
    spaces, a scheme, a path, a user name, a port, or an IPv4 address in a legacy numeric
    spelling such as ``2130706433`` (ambiguous to readers, so we ask for dotted form).
    This is syntax only: it does not resolve the name or judge the address.
    """
    text = host.strip()
    if not text:
        raise ValueError(gettext("Enter the mail server's name, for example pop.example.com."))
    if _WHITESPACE_OR_CONTROL.search(text):
        raise ValueError(gettext("A server name cannot contain spaces."))
    if "://" in text:
        raise ValueError(gettext("Enter only the server name, without a prefix such as pop3://."))
    if any(char in text for char in "/?#@\\"):
        raise ValueError(
            gettext("Enter only the server name, without a path, user name or other parts.")
        )
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        pass
    if ":" in text:
        # Not an IPv6 literal, so either "name:port" or "scheme:something".
        if _ALL_DIGITS.fullmatch(text.rsplit(":", 1)[1]):
            raise ValueError(
                gettext("Enter the port in the port field, not after the server name.")
            )
        raise ValueError(gettext("Enter only the server name, without a prefix such as pop3:."))
    if _legacy_numeric_ipv4(text) is not None:
        raise ValueError(gettext("Write the IP address in dotted form, for example 192.0.2.10."))
    text = text.removesuffix(".")
    try:
        name = idna.encode(text, uts46=True, std3_rules=True).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(gettext("This is not a valid server name.")) from exc
    # RFC 3696 §2: a top-level label is never all-numeric, so "1.2.3.4.5" or "300.1.1.1" is a
    # mistyped address, not a name.
    if _ALL_DIGITS.fullmatch(name.rsplit(".", 1)[-1]):
        raise ValueError(gettext("This is not a valid IP address or server name."))
    return name


RESERVED_TOP_LEVEL_NAMES = frozenset({"test", "invalid", "example"})


def check_mail_host(host: str, port: int) -> CheckedHost:
    """Resolve ``host`` once and return it with every address it resolved to, all checked.

    Raises DisallowedHost when ANY address is refused (a name with one public and one private
    address is refused: the connection could land on either), ValueError when ``host`` is not
    a valid name (see validate_host_syntax), and ``socket.gaierror`` when it does not resolve.
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    legacy = _legacy_numeric_ipv4(text)
    # The resolver would turn "2130706433" into 127.0.0.1 too; decoding it here makes the check
    # independent of the C library, and the connection then uses the canonical address.
    name = str(legacy) if legacy is not None else validate_host_syntax(text)
    if name.rsplit(".", 1)[-1] in RESERVED_TOP_LEVEL_NAMES:
        # RFC 2606 / RFC 6761: these never resolve; asking a resolver would only send a query
        # off the machine (the demo mailbox lives under .test).
        raise socket.gaierror(socket.EAI_NONAME, "reserved top-level domain")
    infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    addresses: list[AddressInfo] = []
    for info in infos:
        address = _sockaddr_ip(info[4])
        if not _is_allowed(address):
            raise DisallowedHost(str(address))
        if info not in addresses:
            addresses.append(info)
    return CheckedHost(name=name, addresses=tuple(addresses))


def resolve_mail_host(host: str, port: int) -> list[AddressInfo]:
    """Return the getaddrinfo() results for ``host``:``port``, all checked; see check_mail_host."""
    return list(check_mail_host(host, port).addresses)


def open_checked_socket(
    addresses: Sequence[AddressInfo], *, timeout: float | None
) -> socket.socket:
    """Connect a TCP socket to the first reachable of ``addresses`` (from check_mail_host).

    Like ``socket.create_connection`` but without resolving again, so the connection goes to
    an address that was checked. ``timeout`` applies to each connect attempt and stays set on
    the returned socket for every later read. Raises the last OSError when none connects.
    """
    if not addresses:
        raise OSError("no address to connect to")
    last_error: OSError | None = None
    for family, kind, proto, _canonname, sockaddr in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        return sock
    assert last_error is not None
    raise last_error


def _legacy_numeric_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address that inet_aton reads in ``text``, when it is a numeric spelling."""
    if not _LEGACY_NUMERIC.fullmatch(text):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def _sockaddr_ip(sockaddr: tuple[Any, ...]) -> IPAddress:
    # An IPv6 sockaddr may carry "%scope"; the scope does not change the category.
    return ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, if it is one of the wrapping forms."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    # IPv4-compatible (RFC 4291 §2.5.5.1, deprecated): ::a.b.c.d, but not :: or ::1 themselves.
    if int(address) >> 32 == 0 and int(address) > 1:
        return ipaddress.IPv4Address(int(address))
    return None


def _category(address: IPAddress) -> str:
    """One of "public", "loopback", "private", "forbidden" (see the module docstring)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = _category(embedded)
            # A mapped address reaches the IPv4 host itself, so it is what it wraps. The other
            # forms (deprecated compatible, 6to4, NAT64) go through translation or relays; a
            # non-public address inside them is never a mail server we should reach.
            if address.ipv4_mapped is not None:
                return inner
            return inner if inner == "public" else "forbidden"
    if address in _METADATA_ADDRESSES:
        return "forbidden"
    if address.is_loopback:
        return "loopback"
    if any(address in network for network in _PRIVATE_NETWORKS):
        return "private"
    if (
        address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or address.is_private
        or not address.is_global
    ):
        return "forbidden"
    return "public"


def _is_allowed(address: IPAddress) -> bool:
    category = _category(address)
    if category == "public":
        return True
    if category == "loopback":
        return bool(settings.MAIL_HOSTS_ALLOW_LOOPBACK)
    if category == "private":
        return bool(settings.MAIL_HOSTS_ALLOW_PRIVATE)
    return False
