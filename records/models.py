"""The recruiting database: organisations, people who sign in, and the records mail is linked to.

Records use multi-table inheritance: ``Record`` holds what every record shares (organisation,
owner, the ``share_emails`` flag used by the Custom permission) so that mail links, addresses and
the visibility rule point at one table; ``Client``, ``Contact`` and ``Candidate`` add their fields.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Organization(models.Model):
    name = models.CharField(_("name"), max_length=200)
    poll_interval_seconds = models.PositiveIntegerField(
        _("poll interval (seconds)"), default=settings.MAIL_POLL_INTERVAL_SECONDS
    )
    # None keeps mail for ever; otherwise mailboxes.retention deletes mail older than this
    # many days every night (its ServerMessage rows stay, so nothing is imported again).
    mail_retention_days = models.PositiveIntegerField(
        _("keep mail for (days)"), null=True, blank=True
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("organisation")

    def __str__(self) -> str:
        return self.name


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """Someone who signs in with an email address and a password."""

    email = models.EmailField(_("email address"), unique=True)
    full_name = models.CharField(_("name"), max_length=200)
    language = models.CharField(
        _("language"),
        max_length=8,
        blank=True,
        choices=settings.LANGUAGES,
        help_text=_("Leave empty to follow the browser."),
    )
    time_zone = models.CharField(_("time zone"), max_length=64, default="UTC")
    is_active = models.BooleanField(_("active"), default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS = ["full_name"]

    class Meta:
        verbose_name = _("user")

    def __str__(self) -> str:
        return self.full_name or self.email

    def get_full_name(self) -> str:
        return self.full_name

    def get_short_name(self) -> str:
        return self.full_name.split(" ")[0] if self.full_name else self.email


class Role(models.TextChoices):
    ADMIN = "admin", _("Admin")
    RECRUITER = "recruiter", _("Recruiter")


class Membership(models.Model):
    """A user's place in one organisation, with a role. A user belongs to one organisation."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership"
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.RECRUITER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["organization", "role"])]

    def __str__(self) -> str:
        return f"{self.user} ({self.role})"

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


class RecordKind(models.TextChoices):
    CLIENT = "client", _("Client")
    CONTACT = "contact", _("Contact")
    CANDIDATE = "candidate", _("Candidate")


class RecordQuerySet(models.QuerySet["Record"]):
    def in_organization(self, organization: Organization) -> RecordQuerySet:
        return self.filter(organization=organization)

    def visible_to(self, user: User) -> RecordQuerySet:
        """Records ``user`` may see: for now every record of the user's organisation.

        Deny by default: a user without a membership (or inactive) sees nothing.
        """
        membership = getattr(user, "membership", None)
        if membership is None or not user.is_active:
            return self.none()
        return self.filter(organization_id=membership.organization_id)

    def search(self, text: str) -> RecordQuerySet:
        """Records whose name or any address (current or past) contains ``text``."""
        text = text.strip()
        if not text:
            return self
        matching = RecordAddress.objects.filter(address__icontains=text.lower()).values("record_id")
        return self.filter(Q(display_name__icontains=text) | Q(pk__in=matching))


class Record(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="records")
    kind = models.CharField(max_length=16, choices=RecordKind.choices, editable=False)
    display_name = models.CharField(_("name"), max_length=300, editable=False, db_index=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="owned_records",
        verbose_name=_("owner"),
    )
    share_emails = models.BooleanField(
        _("share emails"),
        default=False,
        help_text=_(
            "Colleagues see this record's mail from mailboxes that use the Custom permission."
        ),
    )
    notes = models.TextField(_("notes"), blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RecordQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["organization", "kind", "display_name"])]

    def __str__(self) -> str:
        return self.display_name

    KIND: str = ""

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.display_name = self.compute_display_name()
        if self.KIND:
            self.kind = self.KIND
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse(f"records:{self.kind}_detail", args=[self.pk])

    def specific(self) -> Client | Contact | Candidate:
        """This record as its Client, Contact or Candidate."""
        return {
            RecordKind.CLIENT: lambda: self.client,
            RecordKind.CONTACT: lambda: self.contact,
            RecordKind.CANDIDATE: lambda: self.candidate,
        }[RecordKind(self.kind)]()

    def compute_display_name(self) -> str:
        return self.display_name


class Client(Record):
    """A company the agency recruits for."""

    name = models.CharField(_("company name"), max_length=300)
    website = models.URLField(_("website"), blank=True)

    KIND = RecordKind.CLIENT

    class Meta:
        verbose_name = _("client")

    def compute_display_name(self) -> str:
        return self.name


def _writes_family_name_first(text: str) -> bool:
    """Names written in Japanese, Chinese or Korean scripts put the family name first."""
    return any(
        "\u3040" <= char <= "\u30ff" or "\u3400" <= char <= "\u9fff" or "\uac00" <= char <= "\ud7af"
        for char in text
    )


class Person(models.Model):
    """Fields every person record has (mixed into Contact and Candidate)."""

    first_name = models.CharField(_("first name"), max_length=150, blank=True)
    last_name = models.CharField(_("last name"), max_length=150)
    phone = models.CharField(_("phone"), max_length=50, blank=True)

    class Meta:
        abstract = True

    def compute_display_name(self) -> str:
        parts = (self.first_name, self.last_name)
        if any(_writes_family_name_first(part) for part in parts):
            parts = (self.last_name, self.first_name)  # 山田 太郎: family name first
        return " ".join(part for part in parts if part)


class Contact(Person, Record):
    """A person at a client."""

    # Named "company" because Record already has the reverse accessor "client" (its Client row).
    company = models.ForeignKey(
        Client,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="contacts",
        verbose_name=_("client"),
    )
    job_title = models.CharField(_("job title"), max_length=200, blank=True)

    KIND = RecordKind.CONTACT

    class Meta:
        verbose_name = _("contact")


class Candidate(Person, Record):
    """A person the agency may place."""

    headline = models.CharField(_("headline"), max_length=300, blank=True)

    KIND = RecordKind.CANDIDATE

    class Meta:
        verbose_name = _("candidate")


class RecordAddressQuerySet(models.QuerySet["RecordAddress"]):
    def current(self) -> RecordAddressQuerySet:
        return self.filter(removed_at__isnull=True)


class RecordAddress(models.Model):
    """An email address of a record, stored normalised.

    Removing an address from a record keeps the row with ``removed_at`` set, so mail already
    linked through it stays linked and later mail from it still finds the record's history.
    A current address is unique per organisation and record kind (a database constraint).
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    record = models.ForeignKey(Record, on_delete=models.CASCADE, related_name="addresses")
    kind = models.CharField(max_length=16, choices=RecordKind.choices)
    address = models.CharField(_("email address"), max_length=254)
    added_at = models.DateTimeField(default=timezone.now)
    removed_at = models.DateTimeField(null=True, blank=True)

    objects = RecordAddressQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "kind", "address"],
                condition=Q(removed_at__isnull=True),
                name="record_address_unique_current_per_kind",
            ),
        ]
        indexes = [models.Index(fields=["organization", "address"])]

    def __str__(self) -> str:
        return self.address
