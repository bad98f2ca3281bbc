from __future__ import annotations

import pytest
from django.urls import reverse

from records.models import Candidate, RecordAddress, RecordKind
from tests.conftest import Team
from tests.records.factories import CandidateFactory, ClientFactory, ContactFactory

pytestmark = pytest.mark.django_db

KINDS = [RecordKind.CANDIDATE, RecordKind.CONTACT, RecordKind.CLIENT]
FACTORIES = {
    RecordKind.CANDIDATE: CandidateFactory,
    RecordKind.CONTACT: ContactFactory,
    RecordKind.CLIENT: ClientFactory,
}


def test_create_candidate_normalises_and_stores_addresses(team: Team) -> None:
    client = team.client_for(team.owner)
    response = client.post(
        reverse("records:candidate_create"),
        {
            "first_name": "太郎",
            "last_name": "山田",
            "owner": team.owner.pk,
            "addresses": "Taro.Yamada@Example.JP\ntaro@例え.jp, taro.yamada@example.jp",
        },
    )
    candidate = Candidate.objects.get(organization=team.organization)
    assert response.status_code == 302
    assert response["Location"] == candidate.get_absolute_url()
    assert candidate.display_name == "山田 太郎"
    assert sorted(candidate.addresses.values_list("address", flat=True)) == [
        "taro.yamada@example.jp",
        "taro@xn--r8jz45g.jp",
    ]
    page = client.get(candidate.get_absolute_url())
    assert "taro.yamada@example.jp" in page.content.decode()


@pytest.mark.parametrize(
    ("post", "field", "message"),
    [
        ({"addresses": "not-an-address"}, "addresses", "is not an email address"),
        ({"addresses": "taro@@x.example"}, "addresses", "is not an email address"),
        ({"last_name": ""}, "last_name", "This field is required"),
    ],
)
def test_candidate_form_errors_keep_typing(
    team: Team, post: dict, field: str, message: str
) -> None:
    data = {
        "first_name": "Keep",
        "last_name": "Me",
        "owner": team.owner.pk,
        "addresses": "",
        **post,
    }
    response = team.client_for(team.owner).post(reverse("records:candidate_create"), data)
    assert response.status_code == 200
    form = response.context["form"]
    assert message in " ".join(form.errors[field])
    assert 'value="Keep"' in response.content.decode()
    assert not Candidate.objects.filter(organization=team.organization).exists()


def test_duplicate_address_on_another_record_is_a_form_error(team: Team) -> None:
    taken = CandidateFactory(
        organization=team.organization, owner=team.owner, addresses=["dup@example.com"]
    )
    response = team.client_for(team.owner).post(
        reverse("records:candidate_create"),
        {
            "first_name": "New",
            "last_name": "Person",
            "owner": team.owner.pk,
            "addresses": "DUP@example.com",
        },
    )
    assert response.status_code == 200
    assert f"dup@example.com already belongs to {taken.display_name}" in response.content.decode()
    # The same address on a record of another kind, or in another organisation, is fine.
    ContactFactory(organization=team.organization, owner=team.owner, addresses=["dup@example.com"])
    CandidateFactory(
        organization=team.other_organization, owner=team.outsider, addresses=["dup@example.com"]
    )


def test_removed_address_stays_in_history(team: Team) -> None:
    candidate = CandidateFactory(
        organization=team.organization, owner=team.owner, addresses=["old@example.com"]
    )
    client = team.client_for(team.owner)
    response = client.post(
        reverse("records:candidate_edit", args=[candidate.pk]),
        {
            "first_name": candidate.first_name,
            "last_name": candidate.last_name,
            "owner": team.owner.pk,
            "addresses": "new@example.com",
        },
    )
    assert response.status_code == 302
    rows = {row.address: row.removed_at for row in RecordAddress.objects.filter(record=candidate)}
    assert rows["old@example.com"] is not None and rows["new@example.com"] is None
    assert "removed" in client.get(candidate.get_absolute_url()).content.decode()
    # A removed address is free for another record, and re-adding it makes it current again.
    other = CandidateFactory(
        organization=team.organization, owner=team.owner, addresses=["old@example.com"]
    )
    assert RecordAddress.objects.current().get(address="old@example.com").record_id == other.pk


def test_list_search_by_name_and_address_with_paging(
    team: Team, django_assert_max_num_queries
) -> None:
    for i in range(30):
        CandidateFactory(
            organization=team.organization,
            owner=team.owner,
            last_name=f"Tanaka{i:02d}",
            addresses=[f"tanaka{i}@example.jp"],
        )
    CandidateFactory(
        organization=team.organization,
        owner=team.owner,
        last_name="Sato",
        addresses=["sato@corp.example"],
    )
    client = team.client_for(team.teammate)
    with django_assert_max_num_queries(7):
        first = client.get(reverse("records:candidate_list"))
    assert len(first.context["page"].object_list) == 25
    assert client.get(reverse("records:candidate_list"), {"page": 2}).context["page"].number == 2
    assert client.get(reverse("records:candidate_list"), {"page": "nonsense"}).status_code == 200
    by_address = client.get(reverse("records:candidate_list"), {"q": "corp.example"})
    assert [r.last_name for r in by_address.context["page"]] == ["Sato"]
    by_name = client.get(reverse("records:candidate_list"), {"q": "tanaka07"})
    assert [r.last_name for r in by_name.context["page"]] == ["Tanaka07"]


@pytest.mark.parametrize("kind", KINDS)
def test_other_organisations_records_are_404(team: Team, kind: str) -> None:
    record = FACTORIES[kind](
        organization=team.organization, owner=team.owner, addresses=[f"{kind}@example.com"]
    )
    outsider = team.client_for(team.outsider)
    for name in ("detail", "edit"):
        assert outsider.get(reverse(f"records:{kind}_{name}", args=[record.pk])).status_code == 404
    listing = outsider.get(reverse(f"records:{kind}_list"))
    assert listing.status_code == 200
    assert record.display_name not in listing.content.decode()
    assert (
        outsider.post(
            reverse(f"records:{kind}_edit", args=[record.pk]), {"last_name": "X", "name": "X"}
        ).status_code
        == 404
    )
    record.refresh_from_db()
    assert record.display_name != "X"


def test_contact_form_offers_only_own_organisations_clients(team: Team) -> None:
    foreign = ClientFactory(organization=team.other_organization, owner=team.outsider)
    response = team.client_for(team.owner).post(
        reverse("records:contact_create"),
        {"last_name": "Suzuki", "owner": team.owner.pk, "company": foreign.pk},
    )
    assert response.status_code == 200
    assert "company" in response.context["form"].errors


def test_owner_must_be_a_member_of_the_organisation(team: Team) -> None:
    response = team.client_for(team.owner).post(
        reverse("records:candidate_create"), {"last_name": "X", "owner": team.outsider.pk}
    )
    assert response.status_code == 200
    assert "owner" in response.context["form"].errors


def test_signed_out_visitor_is_sent_to_sign_in(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get(reverse("records:candidate_list"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_japanese_names_are_shown_family_name_first(team: Team) -> None:
    japanese = CandidateFactory(
        organization=team.organization, owner=team.owner, first_name="太郎", last_name="山田"
    )
    western = CandidateFactory(
        organization=team.organization, owner=team.owner, first_name="Emily", last_name="Clark"
    )
    assert (japanese.display_name, western.display_name) == ("山田 太郎", "Emily Clark")


def test_long_record_lists_count_only_as_far_as_needed(team: Team) -> None:
    """A list of 100,000 candidates counts up to a cap, not to the end (recruitmail.pagination)."""
    from recruitmail.pagination import capped_page

    for n in range(30):
        CandidateFactory(organization=team.organization, owner=team.owner, first_name=f"C{n:02}")
    page = capped_page(Candidate.objects.order_by("pk"), per_page=10, number="1", count_cap=15)
    assert page.paginator.capped and page.paginator.count_label == "20+" and page.has_next()
    last = capped_page(Candidate.objects.order_by("pk"), per_page=10, number="3", count_cap=15)
    assert not last.paginator.capped and not last.has_next() and len(last.object_list) == 10
    assert capped_page(Candidate.objects.order_by("pk"), per_page=10, number="x").number == 1
