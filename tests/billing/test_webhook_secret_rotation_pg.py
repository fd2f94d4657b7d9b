"""Two rotations of a webhook signing secret at once, on PostgreSQL (real threads, each on
its own connection): they behave as two in a row, the second keeping the first one's new
secret as its previous. Unlocked, both kept the same old secret and the first one's new
secret, which its dashboard may have shown, was gone. SQLite serialises every writer."""

from __future__ import annotations

import threading

import pytest
from django.db import connection, connections

from billing.models import WebhookSecret
from billing.services.webhook_secrets import webhook_secret_get, webhook_secret_rotate

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="row-lock races need PostgreSQL"),
    pytest.mark.django_db(transaction=True),
]
ROUNDS = 5


def rotate_twice_at_once(user) -> list[str]:
    """Two rotations lined up on a barrier, each in its own thread: their new ciphertexts."""
    barrier = threading.Barrier(2)
    made, errors = [], []

    def rotate():
        try:
            barrier.wait(timeout=10)
            made.append(webhook_secret_rotate(user=user).ciphertext)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=rotate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors and len(made) == 2, errors
    return made


def test_two_rotations_at_once_chain_like_two_in_a_row(other_user):
    webhook_secret_get(user=other_user)
    for _ in range(ROUNDS):
        original = WebhookSecret.objects.get(user=other_user).ciphertext
        made = rotate_twice_at_once(other_user)
        row = WebhookSecret.objects.get(user=other_user)
        # The later one's new secret is current; its previous is the earlier one's new secret.
        assert {row.previous_ciphertext, row.ciphertext} == set(made)
        assert row.previous_ciphertext != original
