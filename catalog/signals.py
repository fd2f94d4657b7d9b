from __future__ import annotations

from django.db.models.signals import m2m_changed, post_delete, post_save

from catalog.cache import bump_catalog_version


def _bump(sender, **kwargs) -> None:
    bump_catalog_version()


def connect(app_config) -> None:
    for model in app_config.get_models():
        if model.__name__ == "DemandVote":
            continue  # votes are not shown on list pages
        if model.__name__ == "ModelStats":
            continue  # its refresh writes many rows and bumps the version once (if changed)
        post_save.connect(_bump, sender=model, dispatch_uid=f"catalog-cache-{model.__name__}")
        post_delete.connect(_bump, sender=model, dispatch_uid=f"catalog-cache-del-{model.__name__}")
    for through in (
        app_config.get_model("ModelCard").related.through,
        app_config.get_model("Collection").cards.through,
    ):
        m2m_changed.connect(_bump, sender=through, dispatch_uid=f"catalog-cache-m2m-{through}")
