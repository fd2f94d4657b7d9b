# ruff: noqa: F811  (the fixtures imported from test_flavour_errors are parameters here)
"""Session 40's probe of the admin as a staff member who is not a superuser.

Django offers an admin action to everyone who may see the list unless the action names the
permission it needs; the keys and jobs admins are read-only otherwise, so a staff member
given "view" only (support, say) could revoke every customer's API keys and cancel their
queued jobs from the action menu.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from billing.services.keys import api_key_create
from playground.models import Job, JobStatus
from tests import factories
from tests.playground.test_flavour_errors import (  # noqa: F401  (fixtures)
    account,
    card,
    funded,
    jpeg,
    post,
    storage,
)

pytestmark = pytest.mark.django_db

KEYS = reverse("admin:billing_apikey_changelist")
JOBS = reverse("admin:playground_job_changelist")


def staff_with(client, *codenames: str, username: str = "support"):
    user = factories.user(username=username, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return client


def actions_offered(page) -> list[str]:
    form = page.context["action_form"]  # None: no action offered at all
    return [name for name, _ in form.fields["action"].choices if name] if form else []


def test_a_staff_member_who_may_only_view_keys_cannot_revoke_them(client, other_user):
    key, _ = api_key_create(user=other_user, name="production")
    support = staff_with(client, "view_apikey")
    page = support.get(KEYS)
    assert page.status_code == 200
    assert "revoke_selected" not in actions_offered(page)

    response = support.post(KEYS, {"action": "revoke_selected", "_selected_action": [key.pk]})

    assert response.status_code == 200  # the list again, "No action selected"
    key.refresh_from_db()
    assert key.revoked_at is None


def test_a_staff_member_who_may_change_keys_revokes_them(client, other_user):
    key, _ = api_key_create(user=other_user, name="leaked")
    support = staff_with(client, "view_apikey", "change_apikey")
    assert "revoke_selected" in actions_offered(support.get(KEYS))

    response = support.post(KEYS, {"action": "revoke_selected", "_selected_action": [key.pk]})

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_a_staff_member_who_may_only_view_jobs_cannot_cancel_them(client, card, funded, storage):
    response = post(client, "vitrine", card.model_id, funded, jpeg(), Prefer="respond-async")
    assert response.status_code == 202
    job_id = response.json()["id"]
    support = staff_with(client, "view_job")
    page = support.get(JOBS)
    assert page.status_code == 200
    assert "cancel_queued" not in actions_offered(page)

    support.post(JOBS, {"action": "cancel_queued", "_selected_action": [job_id]})

    assert Job.objects.get(pk=job_id).status == JobStatus.QUEUED
    lead = staff_with(client, "view_job", "change_job", username="lead")
    assert "cancel_queued" in actions_offered(lead.get(JOBS))
    lead.post(JOBS, {"action": "cancel_queued", "_selected_action": [job_id]})
    assert Job.objects.get(pk=job_id).status == JobStatus.CANCELLED
