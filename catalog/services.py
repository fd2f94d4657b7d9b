"""Writes to the catalogue. Prices change only through ``price_route_save``."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from catalog.models import PriceChange, PriceRoute


@transaction.atomic
def price_route_save(*, route: PriceRoute, changed_by=None, note: str = "") -> PriceRoute:
    """Save a price route and append a history entry when its price terms changed.

    A price is never overwritten silently: a new route, or a change of price, unit or
    estimate flag, writes a PriceChange with the operator and the time. Saving a route
    whose price terms did not change writes nothing to the history.
    """
    previous = None
    if route.pk:
        previous = route.history.order_by("-effective_at", "-id").first()
    route.save()
    terms_changed = previous is None or (
        previous.price != route.price
        or previous.unit != route.unit
        or previous.is_estimate != route.is_estimate
    )
    if terms_changed:
        PriceChange.objects.create(
            route=route,
            price=route.price,
            unit=route.unit,
            is_estimate=route.is_estimate,
            effective_at=timezone.now(),
            changed_by=changed_by,
            note=note,
        )
    return route


CARD_FIELDS = (
    "display_name", "family", "modalities", "summary", "description", "status", "launch_date",
    "deprecation_date", "sunset_date", "coming_soon_note", "license", "open_weight",
    "parameters", "gflops", "architecture", "backbone", "training_data", "paper_url",
    "source_url", "published_on", "updated_on", "date_precision", "downloads_per_month",
    "strengths", "use_cases", "checkpoint_repo", "checkpoint_revision", "position",
)  # fmt: skip
ROUTE_FIELDS = (
    "provider", "provider_url", "provider_model_id", "is_own", "unit", "price", "is_estimate",
    "is_beta", "byok_available", "schema_flavour",
)  # fmt: skip


@transaction.atomic
def catalog_load_seed(*, seed: dict, update: bool = False) -> dict:
    """Load the seed catalogue; idempotent.

    Missing rows are created. Existing cards are left as operators edited them unless
    ``update`` is true, which rewrites them from the seed (prices through
    ``price_route_save``, so a changed seed price is recorded in the history).
    Returns counts of what was created, and under ``rewritten`` the model ids of the
    existing cards ``update`` put back to the seed.
    """
    from catalog.models import (
        BenchmarkRow,
        Collection,
        CollectionEntry,
        ModelCard,
        Organisation,
        Task,
        TaskSchema,
    )

    created = {"organisations": 0, "tasks": 0, "schemas": 0, "cards": 0, "collections": 0}
    rewritten: list[str] = []  # existing cards --update put back to the seed

    def upsert(model, lookup: dict, values: dict, counter: str):
        obj, was_created = model.objects.get_or_create(**lookup, defaults=values)
        if was_created:
            created[counter] += 1
        elif update:
            for name, value in values.items():
                setattr(obj, name, value)
            obj.save()
        return obj

    # An organisation or card an operator renamed is the seed's still (catalog.ModelIdAlias):
    # loading the seed again must not bring back a twin under the old name.
    from catalog.selectors import card_renamed, organisation_renamed

    orgs = {}
    for item in seed["organisations"]:
        values = {k: item[k] for k in ("name", "url", "description")}
        slug = item["slug"]
        if not Organisation.objects.filter(slug=slug).exists():
            slug = organisation_renamed(slug=slug) or slug
        orgs[item["slug"]] = upsert(Organisation, {"slug": slug}, values, "organisations")

    tasks = {}
    for item in seed["tasks"]:
        values = {k: item[k] for k in ("name", "description", "modality_in", "modality_out")}
        task = upsert(Task, {"slug": item["slug"]}, values, "tasks")
        tasks[item["slug"]] = task
        for schema in item["schemas"]:
            values = {k: v for k, v in schema.items() if k != "flavour"}
            upsert(TaskSchema, {"task": task, "flavour": schema["flavour"]}, values, "schemas")

    def card_for(model_id: str) -> ModelCard:
        card = ModelCard.objects.by_model_id(model_id).first()
        renamed = None if card is not None else card_renamed(model_id=model_id, published=False)
        return card or ModelCard.objects.by_model_id(renamed or model_id).get()

    # Pass 1: the cards themselves. Pass 2: what points at other cards.
    to_fill = []
    for item in seed["cards"]:
        lookup = {"organisation": orgs[item["org"]], "slug": item["slug"]}
        card = ModelCard.objects.filter(**lookup).first()
        if card is None and (
            renamed := card_renamed(model_id=f"{item['org']}/{item['slug']}", published=False)
        ):
            card = ModelCard.objects.by_model_id(renamed).first()
        if card is not None and not update:
            continue
        if card is None:
            card = ModelCard(**lookup)
            created["cards"] += 1
        else:
            rewritten.append(f"{item['org']}/{item['slug']}")
        for name in CARD_FIELDS:
            setattr(card, name, item[name])
        card.task = tasks[item["task"]]
        card.full_clean(exclude=["replacement"])
        card.save()
        to_fill.append((card, item))

    for card, item in to_fill:
        card.replacement = card_for(item["replacement"]) if item["replacement"] else None
        card.save(update_fields=["replacement"])
        card.related.set([card_for(model_id) for model_id in item["related"]])

        card.specs.all().delete()
        card.specs.bulk_create(
            card.specs.model(card=card, label=label, value=value, position=i)
            for i, (label, value) in enumerate(item["specs"])
        )
        card.faq.all().delete()
        card.faq.bulk_create(
            card.faq.model(card=card, question=q, answer=a, position=i)
            for i, (q, a) in enumerate(item["faq"])
        )
        card.benchmarks.all().delete()
        for i, table_item in enumerate(item["benchmarks"]):
            table = card.benchmarks.create(
                position=i, **{k: v for k, v in table_item.items() if k != "rows"}
            )
            for j, row in enumerate(table_item["rows"]):
                bench_row = BenchmarkRow(
                    table=table,
                    label=row["label"],
                    values=row["values"],
                    model=card_for(row["model"]) if row["model"] else None,
                    is_this_model=row["is_this_model"],
                    position=j,
                )
                bench_row.full_clean()
                bench_row.save()

        for i, route_item in enumerate(item["routes"]):
            route = card.routes.filter(slug=route_item["slug"]).first() or PriceRoute(
                card=card, slug=route_item["slug"]
            )
            for name in ROUTE_FIELDS:
                setattr(route, name, route_item[name])
            route.position = i
            price_route_save(route=route, note="seed catalogue")

    for i, item in enumerate(seed["collections"]):
        values = {"name": item["name"], "description": item["description"], "position": i}
        collection = upsert(Collection, {"slug": item["slug"]}, values, "collections")
        for j, model_id in enumerate(item["cards"]):
            CollectionEntry.objects.get_or_create(
                collection=collection, card=card_for(model_id), defaults={"position": j}
            )
    return {**created, "rewritten": rewritten}
