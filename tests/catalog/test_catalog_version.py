"""The page cache's catalogue version is shared by every process through Redis when the
pages themselves are cached in a process's memory (``make run``'s default): a page was
served from the web process's memory for up to 10 minutes after ``seed_catalog --update``
ran in a shell (the API already charged the seed's price), because that command bumped
the version in its own memory (catalog/cache.py)."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command
from django.db import connection

from catalog.models import ModelCard
from tests.catalog.test_redis_cache import _healthy, own_redis  # noqa: F401  (fixtures)
from tests.conftest import database_url

pytestmark = pytest.mark.django_db(transaction=True)

DETR = "/models/facebook/detr-resnet-50"
EDITED = "Edited behind the back of the catalogue"


@pytest.fixture
def shared_version(settings, own_redis, _healthy):  # noqa: F811
    call_command("seed_catalog", stdout=io.StringIO())
    url = "unix://" + str(own_redis.socket_path)
    settings.VITRINE_CATALOG_VERSION_URL = url
    return url


def edit_without_signals():
    """A change no signal of this process sees (a queryset update)."""
    ModelCard.objects.filter(slug="detr-resnet-50").update(summary=EDITED)


def test_a_save_in_another_process_reaches_this_processs_cached_pages(client, shared_version):
    edit_without_signals()
    first = client.get(DETR)
    assert first["X-Cache"] == "miss" and EDITED in first.content.decode()
    assert client.get(DETR)["X-Cache"] == "hit"

    # Another process, as a shell's command runs: its own memory, the same Redis.
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"CACHE_URL", "VITRINE_REDIS_URL", "CELERY_BROKER_URL"}
    }
    env |= {
        "DATABASE_URL": database_url(connection.settings_dict),
        "VITRINE_REDIS_URL": shared_version,
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    subprocess.run(
        [sys.executable, "manage.py", "seed_catalog", "--update"],
        cwd=django_settings.BASE_DIR, env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip

    again = client.get(DETR)
    assert again["X-Cache"] == "miss"
    assert EDITED not in again.content.decode()  # the seed's summary, put back


def test_a_redis_that_restarted_empty_never_serves_a_page_stored_before(
    client,
    shared_version,
    own_redis,  # noqa: F811
):
    assert client.get(DETR)["X-Cache"] == "miss"
    assert client.get(DETR)["X-Cache"] == "hit"
    edit_without_signals()
    own_redis.stop()
    own_redis.start()  # empty: it keeps nothing on disk here
    # A first version of 1 again would have found the page stored under 1 before.
    page = client.get(DETR)
    assert page["X-Cache"] == "miss" and EDITED in page.content.decode()


def test_without_its_redis_pages_are_rendered_and_not_stored(client, shared_version, own_redis):  # noqa: F811
    own_redis.stop()
    for _ in range(2):
        page = client.get(DETR)
        assert page.status_code == 200 and page["X-Cache"] == "miss"
    own_redis.start()
