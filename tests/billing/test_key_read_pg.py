"""On PostgreSQL an API call's key is read with its user in one prepared statement, the same
as the ORM's joined read: every field of the key and of its user, a revoked key alike (the
caller refuses it), and None for a prefix no key has."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.services import keys
from billing.services.keys import api_key_create, api_key_revoke
from tests import factories

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the prepared key read is PostgreSQL's"
    ),
]


def fields(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def seen(key) -> dict:
    with CaptureQueriesContext(connection) as queries:
        view = {"key": fields(key), "user": fields(key.user)}
    assert len(queries) == 0, "the user came with the key"
    return view


def test_both_reads_give_the_same_key_and_user():
    user = factories.user(first_name="Ada", is_staff=True)
    live, _ = api_key_create(user=user, name="laptop")
    revoked, _ = api_key_create(user=factories.user(), name="old")
    api_key_revoke(key=revoked)
    for key in (live, revoked):
        sql, orm = keys._key_by_prefix(key.prefix), keys._key_by_prefix_orm(key.prefix)
        assert seen(sql) == seen(orm)
    assert keys._key_by_prefix(revoked.prefix).revoked_at is not None
    assert keys._key_by_prefix("nosuchprefix") is None
    assert keys._key_by_prefix_orm("nosuchprefix") is None
