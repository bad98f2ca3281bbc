"""The data of ``bench/load.py``: the organisation, its recruiters with their mailboxes on the
private Dovecot (shared Public), the records of ``bench.corpus``'s address pool, and the mail
waiting on the server."""

from __future__ import annotations

from typing import Any

PASSWORD = "load-bench-recruiter-password"  # noqa: S105 -- throwaway accounts in a scratch database
POP3_PASSWORD = "load-bench-pop3-password"  # noqa: S105


def seed_load(*, server: Any, recruiters: int, candidates: int) -> tuple[list[str], list[str]]:
    """The organisation, its recruiters and mailboxes, and the records; return the recruiters'
    emails and the record pages' paths."""
    from bench.corpus import address_pool
    from bench.database import bench_mailbox_create
    from records.models import Candidate, Client, Contact, Organization, Role, User
    from records.services import member_add, organization_create, record_save

    membership = organization_create(
        name="Load Bench Agency",
        admin_email="admin@agency.example",
        admin_name="Ada Admin",
        admin_password=PASSWORD,
    )
    organization = membership.organization
    Organization.objects.filter(pk=organization.pk).update(poll_interval_seconds=60)
    emails = []
    for number in range(recruiters):
        user = f"load{number:03d}"
        server.add_user(user, POP3_PASSWORD)
        owner = member_add(
            organization=organization,
            email=f"{user}@agency.example",
            full_name=f"Recruiter {number}",
            role=Role.RECRUITER,
        ).user
        bench_mailbox_create(
            owner=owner,
            user=user,
            host=server.host,
            port=server.pop3s_port,
            email_address=f"{user}@agency.example",
            password=POP3_PASSWORD,
            sharing_permission="public",
        )
        emails.append(owner.email)
    # One real hash (the production hasher), copied: hashing 50 times would only slow the seed.
    User.objects.filter(email__in=emails).update(password=membership.user.password)
    owner = membership.user
    pool = address_pool(candidates=candidates)
    paths = []
    for number, address in enumerate(pool.candidates):
        record = record_save(
            record=Candidate(first_name="Candidate", last_name=str(number), owner=owner),
            addresses=[address],
            organization=organization,
        )
        paths.append(f"/candidates/{record.pk}/")
    for client_name, addresses in pool.contacts.items():
        client = record_save(
            record=Client(name=client_name, owner=owner), addresses=[], organization=organization
        )
        paths.append(f"/clients/{client.pk}/")
        for number, address in enumerate(addresses):
            contact = record_save(
                record=Contact(last_name=f"HR {number}", company=client, owner=owner),
                addresses=[address],
                organization=organization,
            )
            paths.append(f"/contacts/{contact.pk}/")
    return emails, paths


def deliver_load(server: Any, recruiters: int, count: int, seed: int) -> None:
    from bench.corpus import address_pool, corpus_messages

    messages = corpus_messages(count=count, pool=address_pool(), seed=seed)
    for index, raw in enumerate(messages):
        server.deliver(f"load{index % recruiters:03d}", raw)
