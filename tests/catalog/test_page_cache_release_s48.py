"""A cached catalogue page after a deploy (session 48's probe): pages name their scripts by
hashed names, and a copy cached before a deploy kept every visitor of a model page on the
previous release's modules for its 10 minutes, or on a 404 where the static folder was
built afresh. The page cache's key now carries the static manifest's hash
(``catalog.cache.static_release``), which a process of the new release reads at its start."""

from __future__ import annotations

import json

import pytest

from catalog import cache as page_cache
from tests.catalog.test_pages import seeded  # noqa: F401  (fixture)
from tests.config.test_static_module_imports import collected  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db


@pytest.fixture
def release(monkeypatch):
    """Set the static release this process serves (as a new process would read it)."""

    real = page_cache.static_release

    def serve(name: str) -> None:
        monkeypatch.setattr(page_cache, "static_release", lambda: name)

    yield serve
    real.cache_clear()


def test_a_page_cached_by_one_release_is_not_served_by_the_next(client, seeded, release):  # noqa: F811
    release("aaaa")
    assert client.get("/models")["X-Cache"] == "miss"
    assert client.get("/models")["X-Cache"] == "hit"
    release("bbbb")  # a deploy: the new release's processes
    assert client.get("/models")["X-Cache"] == "miss"
    assert client.get("/models")["X-Cache"] == "hit"


def test_the_release_is_the_manifest_that_collectstatic_wrote(settings, collected):  # noqa: F811
    root, _ = collected  # collectstatic as production runs it
    written = json.loads((root / "staticfiles.json").read_text())["hash"]
    assert written
    settings.STATIC_ROOT = root
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "catalog.static_files.ManifestStaticFilesStorage"},
    }
    page_cache.static_release.cache_clear()
    try:
        assert page_cache.static_release() == written
    finally:
        page_cache.static_release.cache_clear()
    # In development (no manifest): no release, pages cached as before.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    try:
        assert page_cache.static_release() == ""
    finally:
        page_cache.static_release.cache_clear()
