"""What a shared cache (a CDN, a caching proxy) may do with the catalogue's pages (session
47's probe behind nginx's proxy_cache): keep a visitor's copy, but ask again before each
use. With ``public, max-age=60`` a catalogue save reached visitors up to a minute late (a
price five times below the one charged, a newly published model a 404, a redirect loop
after a rename undone); now the copy is revalidated each time and answered 304 from this
site's own cache while unchanged."""

from __future__ import annotations

import pytest
from django.test import Client

from catalog.models import ModelCard
from tests.catalog.test_pages import seeded  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("url", ["/models", "/pricing", "/orgs/facebook"])
def test_a_visitors_copy_is_revalidated_and_answered_304_until_a_save(client, seeded, url):  # noqa: F811
    first = client.get(url)
    assert first.status_code == 200
    assert first["Cache-Control"] == "public, no-cache"
    etag = first["ETag"]

    unchanged = client.get(url, headers={"If-None-Match": etag})
    assert unchanged.status_code == 304
    assert unchanged["ETag"] == etag and unchanged.content == b""

    card = ModelCard.objects.get(slug="detr-resnet-50")
    card.display_name = "DETR ResNet-50 (renamed for the test)"
    card.save()
    changed = client.get(url, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert "renamed for the test" in changed.content.decode()
    assert changed["ETag"] != etag


def test_a_404_is_not_kept_as_fresh(client, seeded):  # noqa: F811
    missing = client.get("/models/facebook/not-yet-published")
    assert missing.status_code == 404
    assert "max-age" not in missing["Cache-Control"]
    assert "no-cache" in missing["Cache-Control"]


def test_a_page_that_sets_a_cookie_is_no_shared_copy(client, seeded):  # noqa: F811
    """A visitor whose session ended elsewhere gets its cookie deleted: that answer is
    theirs, not one a shared cache may hand to the next visitor."""
    client.cookies["sessionid"] = "a-session-that-does-not-exist"
    response = client.get("/pricing")
    assert response.status_code == 200
    assert response.cookies["sessionid"].value == ""  # deleted
    assert response["Cache-Control"] == "private, max-age=0"
    assert Client().get("/pricing")["Cache-Control"] == "public, no-cache"


def test_head_of_a_catalogue_page_carries_gets_caching_headers(client, seeded):  # noqa: F811
    got, head = client.get("/pricing"), client.head("/pricing")
    assert head.status_code == 200 and head.content == b""
    assert (head["Cache-Control"], head["ETag"]) == (got["Cache-Control"], got["ETag"])


@pytest.mark.parametrize("url", ["/accounts/signup/", "/playground"])
def test_an_anonymous_form_page_is_no_shared_copy(client, seeded, url):  # noqa: F811
    response = client.get(url)
    assert response.status_code == 200
    assert "private" in response["Cache-Control"] or "no-store" in response["Cache-Control"]
