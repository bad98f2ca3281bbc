"""Excluded domains as an admin or recruiter types them."""

from __future__ import annotations

import re

from django.utils.translation import gettext as _

from records.addresses import InvalidAddress, normalize_domain
from sharing.models import MAX_EXCLUDED_DOMAINS


def parse_excluded_domains(text: str) -> list[str]:
    """Domains, one per line or separated by commas/spaces, normalised (lower case, punycode).

    Raises ValueError with a message for the person when one is not a bare domain name
    (a scheme, a path, an ``@``, a port) or when there are more than MAX_EXCLUDED_DOMAINS.
    """
    items = [item for item in re.split(r"[\s,;]+", text or "") if item]
    errors: list[str] = []
    domains: list[str] = []
    for item in items:
        if "://" in item or "/" in item:
            errors.append(
                _(
                    "“%(value)s”: enter only the domain, like example.com, without http:// or a path."
                )
                % {"value": item}
            )
        elif "@" in item:
            errors.append(
                _("“%(value)s”: enter the domain only, without the part before @.")
                % {"value": item}
            )
        elif ":" in item:
            errors.append(_("“%(value)s”: a domain has no port.") % {"value": item})
        else:
            try:
                domains.append(normalize_domain(item.lstrip("*.")))
            except InvalidAddress:
                errors.append(_("“%(value)s” is not a valid domain name.") % {"value": item})
    domains = list(dict.fromkeys(domains))
    if len(domains) > MAX_EXCLUDED_DOMAINS:
        errors.append(_("You can exclude at most %(max)d domains.") % {"max": MAX_EXCLUDED_DOMAINS})
    if errors:
        raise ValueError(" ".join(errors))
    return domains
