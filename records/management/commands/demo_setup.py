"""manage.py demo_setup: a demo organisation for `make run`, printed sign-in included. Idempotent."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from records.models import Candidate, Client, Contact, Organization, Role, User
from records.services import member_add, organization_create, record_save

DEMO_ORGANIZATION = "Demo Recruiting"
ADMIN_EMAIL = "admin@demo.recruitmail.test"
RECRUITER_EMAIL = "recruiter@demo.recruitmail.test"
DEMO_PASSWORD = "recruitmail-demo"  # noqa: S105 - printed on purpose: a local demo sign-in


class Command(BaseCommand):
    help = "Create a demo organisation with an admin, a recruiter and a few records (once)."

    def handle(self, *args: Any, **options: Any) -> None:
        admin = User.objects.filter(email=ADMIN_EMAIL).first()
        if admin is None:
            with transaction.atomic():
                membership = organization_create(
                    name=DEMO_ORGANIZATION,
                    admin_email=ADMIN_EMAIL,
                    admin_name="Aiko Admin",
                    admin_password=DEMO_PASSWORD,
                )
                organization = membership.organization
                recruiter = member_add(
                    organization=organization,
                    email=RECRUITER_EMAIL,
                    full_name="Ren Recruiter",
                    role=Role.RECRUITER,
                    password=DEMO_PASSWORD,
                ).user
                self._records(organization, membership.user, recruiter)
        self.stdout.write(
            "\n  RecruitMail demo sign-in\n"
            f"    admin:     {ADMIN_EMAIL}  /  {DEMO_PASSWORD}\n"
            f"    recruiter: {RECRUITER_EMAIL}  /  {DEMO_PASSWORD}\n"
        )

    def _records(self, organization: Organization, admin: User, recruiter: User) -> None:
        acme = record_save(
            record=Client(name="Acme Corporation", website="https://acme.example", owner=admin),
            addresses=["jobs@acme.example"],
            organization=organization,
        )
        record_save(
            record=Client(name="株式会社サンプル", owner=recruiter),
            addresses=["saiyo@sample.example.jp"],
            organization=organization,
        )
        record_save(
            record=Contact(
                first_name="Hana",
                last_name="Suzuki",
                company=acme,
                job_title="HR Manager",
                owner=admin,
            ),
            addresses=["hana.suzuki@acme.example"],
            organization=organization,
        )
        record_save(
            record=Candidate(
                first_name="太郎", last_name="山田", headline="Backend engineer", owner=recruiter
            ),
            addresses=["taro.yamada@example.jp"],
            organization=organization,
        )
        record_save(
            record=Candidate(
                first_name="Emily",
                last_name="Clark",
                headline="Product designer",
                owner=admin,
                share_emails=True,
            ),
            addresses=["emily.clark@example.com", "emily@clark.example"],
            organization=organization,
        )
