"""Email address normalisation, shared by records (stored addresses) and mail (correspondents).

Addresses are matched exactly on their normalised form: the whole address lower-cased and the
domain converted to its IDNA ASCII form (punycode), so that ``Taro@Example.JP``,
``taro@example.jp`` and ``taro@例え.jp`` written either way each match one stored value.
"""

from __future__ import annotations

import re

import idna
from django.utils.translation import gettext as _

# A pragmatic check for what a recruiter types: one "@", no spaces or control characters,
# a dotted domain. RFC 5322 allows far more (quoted local parts, comments), which no
# recruiting address uses and which would only let typing mistakes through.
_LOCAL_PART = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\-\u0080-\uffff]+$")
MAX_ADDRESS_LENGTH = 254


class InvalidAddress(ValueError):
    """The text is not an email address we can store or match."""


def normalize_domain(domain: str) -> str:
    """Return ``domain`` lower-cased in its IDNA ASCII form; raise InvalidAddress if it is not one."""
    domain = domain.strip().rstrip(".")
    if not domain or "." not in domain:
        raise InvalidAddress(_("The domain needs a dot, as in example.com."))
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise InvalidAddress(
            _("“%(value)s” is not a valid domain name.") % {"value": domain}
        ) from exc
    labels = ascii_domain.split(".")
    if any(not label or len(label) > 63 for label in labels):
        raise InvalidAddress(_("“%(value)s” is not a valid domain name.") % {"value": domain})
    return ascii_domain.lower()


def normalize_address(address: str) -> str:
    """Return the normalised form of ``address``; raise InvalidAddress if it is not an address."""
    address = address.strip()
    if address.count("@") != 1:
        raise InvalidAddress(_("An email address has exactly one @, as in taro@example.com."))
    local, domain = address.split("@")
    if not local or not _LOCAL_PART.match(local) or local.startswith(".") or ".." in local:
        raise InvalidAddress(_("“%(value)s” is not an email address.") % {"value": address})
    normalised = f"{local.lower()}@{normalize_domain(domain)}"
    if len(normalised) > MAX_ADDRESS_LENGTH:
        raise InvalidAddress(_("That email address is too long."))
    return normalised


def try_normalize_address(address: str) -> str | None:
    """Like normalize_address, but None for text that is not an address (for parsed mail)."""
    try:
        return normalize_address(address)
    except InvalidAddress:
        return None


def domain_of(normalised_address: str) -> str:
    return normalised_address.rpartition("@")[2]
