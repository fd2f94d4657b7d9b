"""Small data builders for tests: a valid object with overridable fields."""

from __future__ import annotations

import itertools
from decimal import Decimal

from catalog.models import ModelCard, Organisation, PriceRoute, Task
from catalog.services import price_route_save

_seq = itertools.count(1)


def organisation(**fields) -> Organisation:
    n = next(_seq)
    values = {"name": f"Org {n}", "slug": f"org-{n}"} | fields
    return Organisation.objects.create(**values)


def task(**fields) -> Task:
    values = {"slug": "object-detection", "name": "Object detection"} | fields
    obj, _ = Task.objects.get_or_create(slug=values.pop("slug"), defaults=values)
    return obj


def card(**fields) -> ModelCard:
    n = next(_seq)
    values = {
        "slug": f"model-{n}",
        "display_name": f"Model {n}",
        "summary": "A detector.",
        "status": ModelCard.Status.LIVE,
    } | fields
    values.setdefault("organisation", organisation())
    values.setdefault("task", task())
    return ModelCard.objects.create(**values)


def route(*, changed_by=None, **fields) -> PriceRoute:
    values = {"slug": "vitrine", "provider": "Vitrine", "is_own": True, "price": Decimal("0.0002")}
    values |= fields
    if "card" not in values:  # not setdefault(..., card()): that made a stray card every call
        values["card"] = card()
    return price_route_save(route=PriceRoute(**values), changed_by=changed_by)


# --- billing ---------------------------------------------------------------------------
def user(**fields):
    """A user with a known password (``pw-<username>-1``)."""
    from django.contrib.auth import get_user_model

    n = next(_seq)
    username = fields.pop("username", f"user{n}")
    email = fields.pop("email", f"{username}@example.com")
    return get_user_model().objects.create_user(
        username, email, fields.pop("password", f"pw-{username}-1"), **fields
    )


def funded(user, amount: Decimal | str = "10"):
    """Put ``amount`` in the user's wallet through the ledger (an operator grant)."""
    from billing.services.topups import credit_grant

    credit_grant(user=user, amount=Decimal(amount), reason="test funds")
    return user


def byok_route(**fields) -> PriceRoute:
    """A provider route that accepts users' own keys (slug ``cloudflare`` by default)."""
    values = {
        "slug": "cloudflare",
        "provider": "Cloudflare Workers AI",
        "is_own": False,
        "byok_available": True,
        "price": Decimal("0.0001"),
    } | fields
    return route(**values)


# --- playground ------------------------------------------------------------------------
def finished_run(*, card, image_bytes: bytes, result: list[dict], **fields):
    """A succeeded job whose upload is in the "jobs" storage, as a worker leaves one
    (no worker: for pages that show a finished run)."""
    import hashlib
    import io

    from django.utils import timezone
    from PIL import Image

    from playground.models import Job
    from playground.storage import upload_save

    width, height = Image.open(io.BytesIO(image_bytes)).size
    now = timezone.now()
    values = {
        "card": card,
        "image_name": upload_save(name=f"run-{next(_seq)}.png", content=image_bytes),
        "image_sha256": hashlib.sha256(image_bytes).hexdigest(),
        "image_bytes": len(image_bytes),
        "original_width": width,
        "original_height": height,
        "width": width,
        "height": height,
        "status": Job.Status.SUCCEEDED,
        "queue": "cpu",
        "attempts": 1,
        "started_at": now,
        "finished_at": now,
        "result": result,
        "timings": {"decode": 0.004, "preprocess": 0.01, "forward": 0.2, "postprocess": 0.003},
        "model_revision": card.checkpoint_revision,
        "weights_revision": "sha256:" + "0" * 64,
        "runtime_backend": "transformers 4, cpu, pil preprocessing",
        "runtime_precision": "fp32",
    } | fields
    return Job.objects.create(**values)
