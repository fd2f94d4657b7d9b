from __future__ import annotations

import pytest

from tests import factories


@pytest.fixture
def owner(db):
    """The account holder whose dashboard the tests drive."""
    return factories.user(username="owner")


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client
