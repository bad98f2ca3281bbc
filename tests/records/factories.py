from __future__ import annotations

import factory

from records.models import (
    Candidate,
    Client,
    Contact,
    Membership,
    Organization,
    RecordAddress,
    Role,
    User,
)

TEST_PASSWORD = "correct horse battery staple"


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Agency {n}")


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@agency.example")
    full_name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", TEST_PASSWORD)

    @factory.post_generation
    def save_password(self, create: bool, extracted: object, **kwargs: object) -> None:
        if create:
            self.save()


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    organization = factory.SubFactory(OrganizationFactory)
    user = factory.SubFactory(UserFactory)
    role = Role.RECRUITER


class _RecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        abstract = True
        skip_postgeneration_save = True

    organization = factory.SubFactory(OrganizationFactory)
    owner = factory.LazyAttribute(lambda o: MembershipFactory(organization=o.organization).user)

    @factory.post_generation
    def addresses(self, create: bool, extracted: list[str] | None, **kwargs: object) -> None:
        for address in extracted or []:
            RecordAddress.objects.create(
                organization=self.organization, record=self, kind=self.kind, address=address
            )


class ClientFactory(_RecordFactory):
    class Meta:
        model = Client
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Client {n} KK")


class ContactFactory(_RecordFactory):
    class Meta:
        model = Contact
        skip_postgeneration_save = True

    first_name = "Hana"
    last_name = factory.Sequence(lambda n: f"Suzuki{n}")


class CandidateFactory(_RecordFactory):
    class Meta:
        model = Candidate
        skip_postgeneration_save = True

    first_name = "Taro"
    last_name = factory.Sequence(lambda n: f"Yamada{n}")
