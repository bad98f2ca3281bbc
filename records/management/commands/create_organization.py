"""manage.py create_organization NAME --admin-email E --admin-name N (password prompted or from --password-env)."""

from __future__ import annotations

import getpass
import os
from typing import Any

from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from records.addresses import InvalidAddress, normalize_address
from records.models import User
from records.services import organization_create


class Command(BaseCommand):
    help = "Create an organisation with its first admin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="The organisation's name.")
        parser.add_argument("--admin-email", required=True)
        parser.add_argument("--admin-name", required=True)
        parser.add_argument(
            "--password-env",
            metavar="VARIABLE",
            help="Read the admin's password from this environment variable instead of prompting.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            email = normalize_address(options["admin_email"])
        except InvalidAddress as exc:
            raise CommandError(f"--admin-email: {exc}") from exc
        if User.objects.filter(email__iexact=email).exists():
            raise CommandError(f"A user with the address {email} already exists.")
        if options["password_env"]:
            password = os.environ.get(options["password_env"], "")
            if not password:
                raise CommandError(
                    f"Environment variable {options['password_env']} is empty or not set."
                )
        else:
            password = getpass.getpass("Admin password: ")
            if password != getpass.getpass("Admin password (again): "):
                raise CommandError("The passwords differ.")
        try:
            validate_password(password)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        membership = organization_create(
            name=options["name"],
            admin_email=email,
            admin_name=options["admin_name"],
            admin_password=password,
        )
        self.stdout.write(
            self.style.SUCCESS(f"Created {membership.organization.name} with admin {email}.")
        )
