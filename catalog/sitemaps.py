"""``/sitemap.xml``: the catalogue's public pages, for search engines.

URLs are built on the host the sitemap was fetched from (Django's RequestSite): the
sitemap protocol only accepts URLs on the sitemap's own host.
"""

from __future__ import annotations

from django.contrib.sitemaps import Sitemap

from catalog.models import Collection, ModelCard, Organisation, Task
from catalog.paths import (
    MODELS_PATH,
    PRICING_PATH,
    card_path,
    collection_path,
    organisation_path,
    task_path,
)


class StaticPagesSitemap(Sitemap):
    def items(self) -> list[str]:
        return [MODELS_PATH, PRICING_PATH]

    def location(self, item: str) -> str:
        return item


class ModelCardSitemap(Sitemap):
    def items(self):
        return ModelCard.objects.published().select_related("organisation")

    def location(self, item: ModelCard) -> str:
        return card_path(item)

    def lastmod(self, item: ModelCard):
        return item.updated_at


class CollectionSitemap(Sitemap):
    def items(self):
        return Collection.objects.all()

    def location(self, item: Collection) -> str:
        return collection_path(item)


class OrganisationSitemap(Sitemap):
    def items(self):
        # Only organisations a visitor can see a model of.
        return Organisation.objects.filter(cards__in=ModelCard.objects.published()).distinct()

    def location(self, item: Organisation) -> str:
        return organisation_path(item)


class TaskSitemap(Sitemap):
    def items(self):
        return Task.objects.filter(cards__in=ModelCard.objects.published()).distinct()

    def location(self, item: Task) -> str:
        return task_path(item)


SITEMAPS = {
    "pages": StaticPagesSitemap,
    "models": ModelCardSitemap,
    "collections": CollectionSitemap,
    "organisations": OrganisationSitemap,
    "tasks": TaskSitemap,
}
