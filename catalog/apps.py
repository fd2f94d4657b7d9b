from __future__ import annotations

from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Catalogue"

    def ready(self) -> None:
        from catalog import checks, signals  # noqa: F401 -- checks registers itself

        signals.connect(self)
        # Django logs each 4xx and 5xx answer through str.encode("unicode_escape"), whose
        # codec Python imports from disk on first use: a web process whose first refusals
        # came while it had no file descriptor free (a burst past `ulimit -n`) failed that
        # import and turned each 503 into a 500 (session 44). Looked up once, at start-up.
        "".encode("unicode_escape")
