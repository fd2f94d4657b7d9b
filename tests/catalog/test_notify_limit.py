""" "Tell me when it is live" without an account: a few addresses an hour per network, so the
demand count on a coming-soon model is not whoever scripted the most addresses."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from catalog.models import DemandVote

pytestmark = pytest.mark.django_db
NOTIFY = "/models/PekingU/rtdetr_r50vd/notify"


@pytest.fixture
def seeded():
    call_command("seed_catalog", stdout=io.StringIO())


def test_anonymous_votes_are_limited_per_network_and_members_are_not(
    client, seeded, settings, django_user_model
):
    settings.VITRINE_NOTIFY_PER_IP_PER_HOUR = 3
    for n in range(5):  # 25 were all counted
        response = client.post(NOTIFY, {"email": f"v{n}@example.net"}, follow=True)
        assert response.status_code == 200
    assert DemandVote.objects.count() == 3
    assert "Too many addresses were sent from your network" in response.content.decode()
    # Another network has its own count; a signed-in member is one vote by account.
    other = client.post(NOTIFY, {"email": "w@example.net"}, REMOTE_ADDR="198.51.100.7")
    assert other.status_code == 302 and DemandVote.objects.count() == 4
    member = django_user_model.objects.create_user("m", "m@example.com", "pw-m-long-1")
    client.force_login(member)
    client.post(NOTIFY, {})
    assert DemandVote.objects.filter(user=member).count() == 1
