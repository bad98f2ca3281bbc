from __future__ import annotations

import factory

from mailboxes.mailstore import blob_store
from mailboxes.models import (
    AddressRole,
    Attachment,
    Direction,
    Mailbox,
    Message,
    MessageAddress,
    MessageLink,
    MessageOrigin,
)
from mailboxes.search_index import message_search_index
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


class MessageFactory(factory.django.DjangoModelFactory):
    """A stored message. ``addresses``: (role, address) pairs, by default From the sender and
    To the owner; ``records``: records to link it to."""

    class Meta:
        model = Message
        skip_postgeneration_save = True

    owner = None  # required: pass owner=<User with a membership>
    mailbox = None
    organization = factory.LazyAttribute(lambda o: o.owner.membership.organization)
    origin = MessageOrigin.POP3
    direction = Direction.INCOMING
    subject = factory.Sequence(lambda n: f"Interview {n}")
    from_name = "Taro Yamada"
    from_address = "taro@example.jp"
    snippet = "Hello there."
    body_text = "Hello there.\n"

    @factory.post_generation
    def addresses(
        self, create: bool, extracted: list[tuple[str, str]] | None, **kw: object
    ) -> None:
        pairs = (
            extracted
            if extracted is not None
            else [(AddressRole.FROM, self.from_address), (AddressRole.TO, self.owner.email)]
        )
        MessageAddress.objects.bulk_create(
            MessageAddress(
                message=self, role=role, address=address, domain=address.rpartition("@")[2]
            )
            for role, address in pairs
        )

    @factory.post_generation
    def records(self, create: bool, extracted: list | None, **kwargs: object) -> None:
        MessageLink.objects.bulk_create(
            MessageLink(message=self, record=record) for record in extracted or []
        )

    @factory.post_generation
    def search_entry(self, create: bool, extracted: object, **kwargs: object) -> None:
        # As the importer does, in the same breath as the message and its correspondents.
        message_search_index(message_ids=[self.pk])


def attachment_add(
    message: Message,
    *,
    filename: str,
    payload: bytes = b"%PDF-1.4 test",
    content_type: str = "application/pdf",
    content_id: str = "",
) -> Attachment:
    """Store ``payload`` (needs a MEDIA_ROOT) and attach it to ``message``."""
    attachment = Attachment.objects.create(
        message=message,
        blob=blob_store(payload=payload),
        filename=filename,
        content_type=content_type,
        size=len(payload),
        content_id=content_id,
        is_inline=bool(content_id),
    )
    Message.objects.filter(pk=message.pk).update(has_attachments=True)
    message_search_index(message_ids=[message.pk])  # the name is searchable
    return attachment
