"""Known providers' server settings, used to pre-fill the mailbox form (always editable)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class Provider:
    key: str
    label: str
    domains: tuple[str, ...]
    pop3_host: str
    pop3_port: int
    pop3_security: str
    smtp_host: str
    smtp_port: int
    smtp_security: str
    note: str = ""

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["note"] = str(self.note)
        data["label"] = str(self.label)
        return data


GMAIL_NOTE = _(
    "Gmail: turn on POP in Gmail's settings and use an app password if two-step sign-in is on. "
    "If several mail programs fetch this account over POP, write the user name as "
    "recent:you@gmail.com so that each gets the last 30 days of mail; RecruitMail never imports "
    "a message twice."
)
APP_PASSWORD_NOTE = _(
    "If two-step sign-in is on for this account, create an app password and use it here."
)

PROVIDERS: tuple[Provider, ...] = (
    Provider(
        "gmail",
        "Gmail",
        ("gmail.com", "googlemail.com"),
        "pop.gmail.com",
        995,
        "ssl",
        "smtp.gmail.com",
        465,
        "ssl",
        GMAIL_NOTE,
    ),
    Provider(
        "zoho",
        "Zoho Mail",
        ("zoho.com", "zohomail.com"),
        "pop.zoho.com",
        995,
        "ssl",
        "smtp.zoho.com",
        465,
        "ssl",
        APP_PASSWORD_NOTE,
    ),
    Provider(
        "outlook",
        "Outlook.com / Microsoft 365",
        ("outlook.com", "hotmail.com", "live.com", "msn.com"),
        "outlook.office365.com",
        995,
        "ssl",
        "smtp.office365.com",
        587,
        "starttls",
        APP_PASSWORD_NOTE,
    ),
    Provider(
        "yahoo",
        "Yahoo Mail",
        ("yahoo.com",),
        "pop.mail.yahoo.com",
        995,
        "ssl",
        "smtp.mail.yahoo.com",
        465,
        "ssl",
        APP_PASSWORD_NOTE,
    ),
    Provider(
        "yahoo_japan",
        "Yahoo! JAPAN",
        ("yahoo.co.jp", "ymail.ne.jp"),
        "pop.mail.yahoo.co.jp",
        995,
        "ssl",
        "smtp.mail.yahoo.co.jp",
        465,
        "ssl",
        APP_PASSWORD_NOTE,
    ),
)


def provider_for_address(address: str) -> Provider | None:
    domain = address.rpartition("@")[2].lower()
    for provider in PROVIDERS:
        if domain in provider.domains:
            return provider
    return None


def provider_for_host(host: str) -> Provider | None:
    host = host.lower()
    return next((p for p in PROVIDERS if p.pop3_host == host), None)
