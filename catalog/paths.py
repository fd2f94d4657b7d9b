"""Site-relative paths of the catalogue's public pages.

Plain strings rather than ``reverse()``: the machine-readable views (API links, sitemap,
llms.txt) must not depend on how the HTML views are wired, and these paths are part of the
public contract (bookmarks, search engines), so they do not move when the views do.
"""

from __future__ import annotations

from catalog.models import Collection, ModelCard, Organisation, Task

MODELS_PATH = "/models"
PRICING_PATH = "/pricing"


def card_path(card: ModelCard) -> str:
    """``/models/<org>/<name>``; reads ``card.organisation``, so select_related it."""
    return f"{MODELS_PATH}/{card.organisation.slug}/{card.slug}"


def collection_path(collection: Collection) -> str:
    return f"/collections/{collection.slug}"


def organisation_path(organisation: Organisation) -> str:
    return f"/orgs/{organisation.slug}"


def task_path(task: Task) -> str:
    return f"/tasks/{task.slug}"
