from __future__ import annotations

import factory

from mailboxes.models import Mailbox
from sharing.models import MailboxSharing

MAILBOX_PASSWORD = "pop-secret-Zq8!xv"


class MailboxFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Mailbox
        skip_postgeneration_save = True

    owner = None  # required: pass owner=<User with a membership>
    organization = factory.LazyAttribute(lambda o: o.owner.membership.organization)
    name = "Work"
    email_address = factory.LazyAttribute(lambda o: o.owner.email)
    pop3_host = "127.0.0.1"
    pop3_port = 995
    pop3_username = factory.LazyAttribute(lambda o: o.owner.email)
    smtp_host = "127.0.0.1"
    smtp_port = 465
    is_active = True

    @factory.post_generation
    def password(self, create: bool, extracted: str | None, **kwargs: object) -> None:
        self.set_pop3_password(extracted or MAILBOX_PASSWORD)
        if create:
            self.save()
            MailboxSharing.objects.get_or_create(mailbox=self)
