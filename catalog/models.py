"""The catalogue: model cards and everything a visitor browses.

A card's public id is ``<organisation slug>/<card slug>`` (``facebook/detr-resnet-50``):
the organisation's slug is its Hugging Face namespace, its name is what people call it
("Meta"). The id is derived, never stored twice.
"""

from __future__ import annotations

import re
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.dispatch import Signal
from django.utils import timezone

from catalog.money import validate_exact
from catalog.pricing import format_usd

# Sent (``card=``) once a save changed what a card's own route runs (its repository,
# revision or local folder): jobs already queued will run the new checkpoint, so what
# was remembered of them under the old one must go (playground's result cache).
checkpoint_changed = Signal()
CHECKPOINT_FIELDS = ("checkpoint_repo", "checkpoint_revision", "checkpoint_local_dir")

# Prices hold $0.0000075 exactly and up to $99,999,999.
PRICE_MAX_DIGITS = 18
PRICE_DECIMAL_PLACES = 10

REPLACEMENT_STILL_NAMED = (
    "This model is the replacement named by {models}: point {it} at another beta or live "
    "model first, or callers are sent to one they cannot call."
)


class Organisation(models.Model):
    name = models.CharField(max_length=120)
    slug = models.SlugField(
        max_length=64,
        unique=True,
        help_text="Namespace in model ids and URLs, e.g. 'facebook' for Meta's models.",
    )
    url = models.URLField(blank=True)
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # PekingU beside pekingu: every model id and page of one had a twin differing in
            # case only (as modelcard_unique_id_any_case refuses for a card's own name).
            models.UniqueConstraint(
                Lower("slug"),
                name="organisation_unique_slug_any_case",
                violation_error_message="An organisation with this slug in another case exists.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        loaded = getattr(self, "_loaded_slug", None)
        with transaction.atomic():
            super().save(*args, **kwargs)
            if loaded is not None and loaded != self.slug:
                for card in self.cards.all():
                    card.organisation = self
                    ModelIdAlias.remember(card=card, former=f"{loaded}/{card.slug}")
        self._loaded_slug = self.slug

    @classmethod
    def from_db(cls, db, field_names, values):
        organisation = super().from_db(db, field_names, values)
        if "slug" in field_names:  # as read: a save that renames it keeps the old ids working
            organisation._loaded_slug = values[field_names.index("slug")]
        return organisation


class Task(models.Model):
    """A task such as object detection. Its API schemas live in TaskSchema."""

    slug = models.SlugField(max_length=64, unique=True, help_text="e.g. object-detection")
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True, help_text="Markdown.")
    modality_in = models.CharField(max_length=32, default="image")
    modality_out = models.CharField(max_length=32, default="json")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


SCHEMA_NOT_OBJECT = 'A JSON Schema is a JSON object: {"type": "object", ...}.'
HEADERS_SHAPE = (
    'A JSON list of headers, each an object: {"name": "...", "type": "...", "default": ..., '
    '"description": "..."}, with a name and, where given, a type and a description that '
    "are text."
)


def _header_ok(header) -> bool:
    return (
        isinstance(header, dict)
        and isinstance(header.get("name"), str)
        and bool(header["name"].strip())
        and all(isinstance(header.get(key) or "", str) for key in ("type", "description"))
    )


class TaskSchema(models.Model):
    """The input and output JSON Schema of one API flavour of a task.

    ``vitrine`` is this site's own API; other flavours document a provider's API
    (Hugging Face Inference, Cloudflare Workers AI) for routes that call it.
    """

    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="schemas")
    flavour = models.SlugField(max_length=64, help_text="vitrine, hf-inference, cloudflare...")
    title = models.CharField(max_length=120)
    description = models.TextField(blank=True, help_text="Markdown.")
    input_schema = models.JSONField(default=dict)
    output_schema = models.JSONField(default=dict)
    headers = models.JSONField(
        default=list,
        blank=True,
        help_text='Request headers: [{"name", "type", "default", "description"}].',
    )
    source_url = models.URLField(blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["task", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["task", "flavour"], name="taskschema_unique_flavour")
        ]

    def __str__(self) -> str:
        return f"{self.task.slug} / {self.flavour}"

    def clean(self) -> None:
        """The shapes the pages read (catalog/views.py ``schema_items``, the headers table
        of every model page of the task and of the task's page): typed by hand as JSON, a
        header whose description was a number or a list saved, and every one of those
        pages answered 500 (Markdown is rendered from text only)."""
        errors: dict[str, str] = {}
        for field in ("input_schema", "output_schema"):
            if not isinstance(getattr(self, field), dict):
                errors[field] = SCHEMA_NOT_OBJECT
        headers = self.headers
        if not isinstance(headers, list) or not all(_header_ok(h) for h in headers):
            errors["headers"] = HEADERS_SHAPE
        if errors:
            raise ValidationError(errors)


class ModelCardQuerySet(models.QuerySet):
    def published(self, at=None):
        """Cards a visitor may see at ``at`` (default now): coming soon and retired included."""
        at = at or timezone.now()
        return self.filter(is_published=True).filter(
            Q(published_at__isnull=True) | Q(published_at__lte=at)
        )

    def by_model_id(self, model_id: str):
        org, _, name = model_id.partition("/")
        return self.filter(organisation__slug=org, slug=name)


class Status(models.TextChoices):
    COMING_SOON = "coming_soon", "Coming soon"
    BETA = "beta", "Beta"
    LIVE = "live", "Live"
    DEPRECATED = "deprecated", "Deprecated"
    RETIRED = "retired", "Retired"


class Unit(models.TextChoices):
    IMAGE = "image", "per image"
    REQUEST = "request", "per request"


class ModelCard(models.Model):
    Status = Status

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="cards")
    slug = models.SlugField(
        max_length=96,
        help_text="Name part of the model id, e.g. 'detr-resnet-50'. Renamed, the old id "
        "keeps working (its pages redirect, its API calls run this card) until another card "
        "takes it or it is deleted under 'former ids'.",
    )
    display_name = models.CharField(max_length=120)
    family = models.CharField(max_length=64, blank=True, help_text="e.g. DETR")
    task = models.ForeignKey(Task, on_delete=models.PROTECT, related_name="cards")
    modalities = models.JSONField(default=list, blank=True, help_text="e.g. image")
    summary = models.CharField(max_length=300, help_text="One line, shown in lists.")
    description = models.TextField(blank=True, help_text="Markdown, sanitised when rendered.")

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.COMING_SOON)
    launch_date = models.DateField(null=True, blank=True)
    deprecation_date = models.DateField(
        null=True,
        blank=True,
        help_text="Left empty, it is set to the day the status becomes deprecated or retired "
        "(never after the sunset), and kept.",
    )
    sunset_date = models.DateField(null=True, blank=True)
    replacement = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replaces"
    )
    coming_soon_note = models.TextField(
        blank=True, help_text="Shown on coming-soon pages (what we are doing, how to be told)."
    )

    license = models.CharField(max_length=64, blank=True, help_text="SPDX id, e.g. Apache-2.0")
    open_weight = models.BooleanField(default=False)
    parameters = models.PositiveBigIntegerField(null=True, blank=True, help_text="Count.")
    gflops = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, validators=[MinValueValidator(0)]
    )
    architecture = models.CharField(max_length=300, blank=True)
    backbone = models.CharField(max_length=120, blank=True)
    training_data = models.CharField(max_length=300, blank=True)
    paper_url = models.URLField(blank=True)
    source_url = models.URLField(blank=True, help_text="The model's home, e.g. its Hub page.")
    published_on = models.DateField(null=True, blank=True, help_text="Weights first published.")
    updated_on = models.DateField(null=True, blank=True)
    date_precision = models.CharField(
        max_length=5,
        choices=[("day", "Day"), ("month", "Month")],
        default="day",
        help_text="Show published/updated dates to the day or to the month.",
    )
    downloads_per_month = models.PositiveBigIntegerField(null=True, blank=True)
    strengths = models.JSONField(default=list, blank=True)
    use_cases = models.JSONField(default=list, blank=True, help_text='"Best for" items.')
    related = models.ManyToManyField("self", symmetrical=False, blank=True)

    # Where the worker loads weights from: a Hub repo at a pinned revision, or a directory.
    checkpoint_repo = models.CharField(max_length=200, blank=True)
    checkpoint_revision = models.CharField(max_length=100, blank=True)
    checkpoint_local_dir = models.CharField(max_length=500, blank=True)
    # A heavy model can be given a tighter limit than the site-wide ones (catalog/ratelimit.py).
    rate_limit_per_minute = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="API calls per minute one account may make to this model. "
        "Empty: only the per-key and per-account limits apply.",
    )

    is_published = models.BooleanField(default=True)
    published_at = models.DateTimeField(null=True, blank=True, help_text="Hidden before this.")
    position = models.IntegerField(default=0, help_text="Display order; lower first.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ModelCardQuerySet.as_manager()

    class Meta:
        ordering = ["position", "display_name"]
        constraints = [
            models.UniqueConstraint(fields=["organisation", "slug"], name="modelcard_unique_id"),
            # acme/ACME-DETR beside acme/acme-detr: two live pages, "Acme DETR vs Acme DETR".
            models.UniqueConstraint(
                "organisation",
                Lower("slug"),
                name="modelcard_unique_id_any_case",
                violation_error_message="A model with this id in another case exists.",
            ),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in Status]), name="modelcard_valid_status"
            ),
            models.CheckConstraint(
                condition=Q(checkpoint_repo="") | ~Q(checkpoint_revision=""),
                name="modelcard_checkpoint_revision_pinned",
            ),
            models.CheckConstraint(
                condition=Q(replacement__isnull=True) | ~Q(replacement=models.F("id")),
                name="modelcard_not_own_replacement",
            ),
            models.CheckConstraint(
                condition=Q(gflops__isnull=True) | Q(gflops__gte=0), name="modelcard_gflops_gte_0"
            ),
        ]

    def __str__(self) -> str:
        return self.model_id

    def save(self, *args, **kwargs) -> None:
        if self._date_deprecation() and kwargs.get("update_fields") is not None:
            kwargs["update_fields"] = {*kwargs["update_fields"], "deprecation_date"}
        loaded = getattr(self, "_loaded", {})
        with transaction.atomic():
            super().save(*args, **kwargs)
            ModelIdAlias.card_saved(
                card=self, slug=loaded.get("slug"), organisation_id=loaded.get("organisation_id")
            )
            if any(
                name in loaded and loaded[name] != getattr(self, name) for name in CHECKPOINT_FIELDS
            ):
                checkpoint_changed.send(sender=ModelCard, card=self)
        # As saved: a later save of this same instance renames from here.
        self._loaded = {
            **loaded,
            "slug": self.slug,
            "organisation_id": self.organisation_id,
            **{name: getattr(self, name) for name in CHECKPOINT_FIELDS},
        }

    @classmethod
    def from_db(cls, db, field_names, values):
        card = super().from_db(db, field_names, values)
        # As read: a save that deprecates the card again can tell an earlier deprecation's
        # day, left on the card, from a day the operator typed (_date_deprecation).
        card._loaded = {
            name: value
            for name, value in zip(field_names, values, strict=True)
            # slug and organisation: a save that renames the card keeps its old id working;
            # the checkpoint: a save that changes it says so (checkpoint_changed)
            if name in ("status", "deprecation_date", "slug", "organisation_id", *CHECKPOINT_FIELDS)
        }
        return card

    @property
    def model_id(self) -> str:
        return f"{self.organisation.slug}/{self.slug}"

    @property
    def revision_is_commit(self) -> bool:
        """True when the checkpoint is pinned by a 40-hex commit; a branch or tag name
        (``main``, ``no_timm``) is a fallback that can move under the same card."""
        return bool(re.match(r"^[0-9a-f]{40}$", self.checkpoint_revision))

    @property
    def is_coming_soon(self) -> bool:
        return self.status == self.Status.COMING_SOON

    SUNSETTING = (Status.DEPRECATED, Status.RETIRED)

    @property
    def is_sunsetting(self) -> bool:
        return self.status in self.SUNSETTING

    @property
    def is_past_sunset(self) -> bool:
        """Retired, or deprecated with its sunset date come: calls stop on that day, as
        the page and the Sunset header said they would, without waiting for an operator
        to set the status."""
        return self.status == self.Status.RETIRED or (
            self.status == self.Status.DEPRECATED
            and self.sunset_date is not None
            and self.sunset_date <= timezone.localdate()
        )

    def _date_deprecation(self) -> bool:
        """Record the day the card became deprecated (or retired) once, on the save that
        made it so: the Deprecation header and /v1/models repeat it, and a later save (a
        typo fixed) must not move it. Never after the sunset. True when it was set.

        A card deprecated again after it went back to beta or live is dated anew: the day
        its first deprecation left on it is not this one's (unless the operator typed a
        day in this same save)."""
        loaded = getattr(self, "_loaded", {})
        if (
            self.is_sunsetting
            and loaded.get("status", self.status) not in self.SUNSETTING
            and self.deprecation_date == loaded.get("deprecation_date")
        ):
            self.deprecation_date = None
        if self.deprecation_date is not None or not self.is_sunsetting:
            return False
        day = timezone.localdate()
        self.deprecation_date = min(day, self.sunset_date) if self.sunset_date else day
        return True

    def clean(self) -> None:
        if self.checkpoint_repo and not self.checkpoint_revision:
            raise ValidationError(
                {"checkpoint_revision": "Pin a revision (commit, tag or branch) for a Hub repo."}
            )
        if self.replacement_id and self.replacement_id == self.pk:
            raise ValidationError({"replacement": "A model cannot replace itself."})
        self._lifecycle_check()
        for field in ("modalities", "strengths", "use_cases"):
            value = getattr(self, field)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValidationError({field: "Must be a list of strings."})

    def _lifecycle_check(self) -> None:
        """Dates in their order and a replacement callers can move to: the page and the
        API's Sunset, Deprecation and Link headers repeat them."""
        errors: dict[str, str] = {}
        launch, deprecated, sunset = self.launch_date, self.deprecation_date, self.sunset_date
        if deprecated and sunset and sunset < deprecated:
            errors["sunset_date"] = "The sunset comes on or after the deprecation date."
        if launch and deprecated and deprecated < launch:
            errors["deprecation_date"] = "A model is deprecated on or after its launch date."
        if self.status == Status.RETIRED and sunset and sunset > timezone.localdate():
            errors["sunset_date"] = (
                "A retired model's sunset date is the day it stopped answering, not a day "
                "to come: keep it deprecated until then (calls stop at its sunset)."
            )
        replacement = self.replacement if self.replacement_id else None
        if replacement is not None:
            if replacement.status not in (Status.BETA, Status.LIVE):
                errors["replacement"] = (
                    f"The replacement must be a model callers can move to now (beta or "
                    f"live); {replacement} is {replacement.get_status_display().lower()}."
                )
            elif not replacement.is_shown:
                errors["replacement"] = (
                    f"{replacement} is not published: the page and the API would send "
                    f"callers to a model that is not there."
                )
            else:
                seen, step = {self.pk}, replacement
                while step is not None and step.replacement_id:
                    if step.replacement_id in seen:
                        errors["replacement"] = (
                            f"{replacement} is replaced, in turn, by this model: a loop."
                        )
                        break
                    seen.add(step.pk)
                    step = step.replacement
        self._successor_check(errors)
        if errors:
            raise ValidationError(errors)

    @property
    def is_shown(self) -> bool:
        """Published now, as ``ModelCard.objects.published()`` reads it: its page exists."""
        return self.is_published and (
            self.published_at is None or self.published_at <= timezone.now()
        )

    def _successor_check(self, errors: dict[str, str]) -> None:
        """The rule above seen from the replacement's side: a model that other cards name
        as their replacement stays one callers can move to. Moving it out of beta/live, or
        hiding it, while they still name it sent their callers (the page, the API's
        ``replacement`` and ``Link`` header, the 410's message) to a model they could not
        call, or to a 404; the operator repoints those cards first."""
        if self.pk is None:
            return
        if self.status in (Status.BETA, Status.LIVE) and self.is_shown:
            return
        named_by = [
            card.model_id
            for card in ModelCard.objects.filter(replacement_id=self.pk)
            .exclude(pk=self.pk)
            .select_related("organisation")
            .order_by("organisation__slug", "slug")
        ]
        if not named_by:
            return
        field = "status" if self.status not in (Status.BETA, Status.LIVE) else "is_published"
        if field == "is_published" and self.is_published:
            field = "published_at"
        errors.setdefault(
            field,
            REPLACEMENT_STILL_NAMED.format(
                models=", ".join(named_by), it="it" if len(named_by) == 1 else "them"
            ),
        )


class ModelIdAlias(models.Model):
    """An id a card answered to before an operator renamed it (its own slug or its
    organisation's), as Hugging Face keeps a renamed repository's old id working: the old
    page redirects to the new one and API calls naming the old id run the renamed card.
    Recorded by the saves themselves (admin, seed loader or shell alike); given up when a
    card takes that id again (it is then that card's), or deleted by an operator."""

    model_id = models.CharField(max_length=161, help_text="The former id, <org>/<name>.")
    card = models.ForeignKey(ModelCard, on_delete=models.CASCADE, related_name="former_ids")
    created_at = models.DateTimeField(default=timezone.now, help_text="When it was renamed.")

    class Meta:
        verbose_name = "former model id"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(Lower("model_id"), name="modelidalias_unique_any_case"),
        ]

    def __str__(self) -> str:
        return f"{self.model_id} -> {self.card_id}"

    @classmethod
    def remember(cls, *, card: ModelCard, former: str) -> None:
        """``former`` now leads to ``card`` (the latest rename wins an id two cards had)."""
        # A card that has (or takes) an id leads there itself: no alias may shadow it.
        cls.objects.filter(model_id__iexact=card.model_id).delete()
        if former.lower() == card.model_id.lower():
            return  # a change of case only: the id (any case) is still the card's own
        cls.objects.filter(model_id__iexact=former).delete()
        cls.objects.create(model_id=former, card=card)

    @classmethod
    def card_saved(cls, *, card: ModelCard, slug: str | None, organisation_id: int | None):
        if slug is None or (slug, organisation_id) == (card.slug, card.organisation_id):
            cls.objects.filter(model_id__iexact=card.model_id).delete()
            return
        org = Organisation.objects.filter(pk=organisation_id).values_list("slug", flat=True)
        cls.remember(card=card, former=f"{org.first() or card.organisation.slug}/{slug}")


class SpecRow(models.Model):
    card = models.ForeignKey(ModelCard, on_delete=models.CASCADE, related_name="specs")
    label = models.CharField(max_length=120)
    value = models.CharField(max_length=500)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.label}: {self.value}"


class BenchmarkTable(models.Model):
    card = models.ForeignKey(ModelCard, on_delete=models.CASCADE, related_name="benchmarks")
    title = models.CharField(max_length=200)
    dataset = models.CharField(max_length=120, help_text="e.g. COCO val2017")
    columns = models.JSONField(
        default=list, help_text='Metric names in order, e.g. ["Epochs", "AP", "AP50"].'
    )
    caption = models.TextField(blank=True, help_text="Markdown, shown under the table.")
    source = models.CharField(max_length=300, help_text="Citation, e.g. the paper's table.")
    source_url = models.URLField(blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return f"{self.card} · {self.title}"

    def clean(self) -> None:
        if not isinstance(self.columns, list) or not all(isinstance(c, str) for c in self.columns):
            raise ValidationError({"columns": "Must be a list of column names."})


class BenchmarkRow(models.Model):
    table = models.ForeignKey(BenchmarkTable, on_delete=models.CASCADE, related_name="rows")
    label = models.CharField(max_length=120)
    # Strings, as published ("41.0" stays "41.0"); numeric readers parse them with Decimal.
    values = models.JSONField(default=list)
    model = models.ForeignKey(
        ModelCard,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="benchmark_mentions",
        help_text="The catalogue card this row measures, if we list it.",
    )
    is_this_model = models.BooleanField(default=False)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.label

    def clean(self) -> None:
        if not isinstance(self.values, list):
            raise ValidationError({"values": "Must be a list."})
        self.values = [str(v) for v in self.values]
        if self.table_id and len(self.values) != len(self.table.columns):
            raise ValidationError(
                {"values": f"Needs {len(self.table.columns)} values, one per column."}
            )


class PriceRoute(models.Model):
    """One way to run a model at a price: our own workers, or a provider's API."""

    Unit = Unit

    card = models.ForeignKey(ModelCard, on_delete=models.CASCADE, related_name="routes")
    slug = models.SlugField(max_length=64, help_text="e.g. vitrine, cloudflare")
    provider = models.CharField(max_length=120, help_text="e.g. Vitrine, Cloudflare Workers AI")
    provider_url = models.URLField(blank=True)
    provider_model_id = models.CharField(
        max_length=200, blank=True, help_text="The provider's own id, e.g. @cf/facebook/..."
    )
    is_own = models.BooleanField(default=False, help_text="Served by this site's workers.")
    unit = models.CharField(max_length=16, choices=Unit.choices, default=Unit.IMAGE)
    price = models.DecimalField(
        max_digits=PRICE_MAX_DIGITS,
        decimal_places=PRICE_DECIMAL_PLACES,
        validators=[MinValueValidator(0), validate_exact],
        help_text="USD per unit, exact (e.g. 0.0000075).",
    )
    is_estimate = models.BooleanField(default=False, help_text="Estimated, set at launch.")
    is_beta = models.BooleanField(default=False)
    byok_available = models.BooleanField(default=False, help_text="Users may bring their own key.")
    schema_flavour = models.SlugField(
        max_length=64, blank=True, help_text="TaskSchema flavour this provider's API speaks."
    )
    is_active = models.BooleanField(default=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "price", "id"]
        constraints = [
            models.UniqueConstraint(fields=["card", "slug"], name="priceroute_unique_slug"),
            models.CheckConstraint(condition=Q(price__gte=0), name="priceroute_price_gte_0"),
            models.CheckConstraint(
                condition=Q(unit__in=[u.value for u in Unit]), name="priceroute_valid_unit"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.card} via {self.provider}"

    @property
    def price_per_1k(self) -> Decimal:
        return self.price * 1000


class PriceChange(models.Model):
    """Append-only history of a route's price. The newest row is the route's current price."""

    route = models.ForeignKey(PriceRoute, on_delete=models.CASCADE, related_name="history")
    price = models.DecimalField(max_digits=PRICE_MAX_DIGITS, decimal_places=PRICE_DECIMAL_PLACES)
    unit = models.CharField(max_length=16, choices=Unit.choices)
    is_estimate = models.BooleanField(default=False)
    effective_at = models.DateTimeField(default=timezone.now)
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True
    )
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-effective_at", "-id"]
        get_latest_by = ["effective_at", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gte=0), name="pricechange_price_gte_0"),
        ]

    def __str__(self) -> str:
        # The site's money format: "$5E-10" was the admin's label for a price of $0.0000000005.
        return f"{self.route}: {format_usd(Decimal(self.price))} from {self.effective_at:%Y-%m-%d}"


class FaqEntry(models.Model):
    card = models.ForeignKey(ModelCard, on_delete=models.CASCADE, related_name="faq")
    question = models.CharField(max_length=300)
    answer = models.TextField(help_text="Markdown.")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        verbose_name = "FAQ entry"
        verbose_name_plural = "FAQ entries"

    def __str__(self) -> str:
        return self.question


class Collection(models.Model):
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    position = models.PositiveIntegerField(default=0)
    cards = models.ManyToManyField(ModelCard, through="CollectionEntry", related_name="collections")

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class CollectionEntry(models.Model):
    collection = models.ForeignKey(Collection, on_delete=models.CASCADE, related_name="entries")
    card = models.ForeignKey(ModelCard, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        verbose_name_plural = "collection entries"
        constraints = [
            models.UniqueConstraint(fields=["collection", "card"], name="collection_entry_unique")
        ]

    def __str__(self) -> str:
        return f"{self.collection} · {self.card_id}"


class DemandVote(models.Model):
    """'Notify me / I want this' on a coming-soon model: one vote per user or per email."""

    card = models.ForeignKey(ModelCard, on_delete=models.CASCADE, related_name="demand_votes")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True
    )
    email = models.EmailField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["card", "user"], condition=Q(user__isnull=False), name="vote_once_per_user"
            ),
            models.UniqueConstraint(
                fields=["card", "email"], condition=~Q(email=""), name="vote_once_per_email"
            ),
            models.CheckConstraint(
                condition=Q(user__isnull=False) | ~Q(email=""), name="vote_has_a_voter"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.card_id}: {self.user_id or self.email}"


class EvaluationResult(models.Model):
    """Accuracy measured on our own workers: one ``manage.py evaluate`` run of a card's
    checkpoint over a COCO-format dataset (playground/runtime/coco.py).

    Kept per checkpoint revision: ``checkpoint_revision`` is what the card pinned when it
    ran, ``resolved_revision`` the commit or folder digest actually loaded. Untrained
    (random-weight) runs are stored for the record but never shown as the model's accuracy.
    """

    card = models.ForeignKey(ModelCard, on_delete=models.CASCADE, related_name="evaluations")
    checkpoint_revision = models.CharField(max_length=100, blank=True)
    resolved_revision = models.CharField(
        max_length=80, blank=True, help_text="Hub commit, or sha256: of the loaded files."
    )
    dataset = models.CharField(max_length=120, help_text="e.g. COCO val2017")
    images = models.PositiveIntegerField()
    annotations = models.PositiveIntegerField(default=0)
    # COCO bbox AP in [0, 1] (-1 where the subset has no object of that size), not money.
    ap = models.FloatField()
    ap50 = models.FloatField()
    ap75 = models.FloatField()
    ap_small = models.FloatField()
    ap_medium = models.FloatField()
    ap_large = models.FloatField()
    device = models.CharField(max_length=120, blank=True)
    runtime = models.JSONField(
        default=dict, blank=True, help_text="Backend, precision, threshold, batch size."
    )
    untrained = models.BooleanField(default=False, help_text="Random weights: not shown.")
    seconds = models.FloatField(default=0)
    report = models.JSONField(default=dict, blank=True, help_text="The command's JSON report.")
    evaluated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-evaluated_at"]
        indexes = [models.Index(fields=["card", "-evaluated_at"], name="evaluation_card_recent")]

    def __str__(self) -> str:
        return f"{self.card_id} {self.dataset} AP {self.ap:.3f} ({self.evaluated_at:%Y-%m-%d})"


class ModelStats(models.Model):
    """Latency and run counts measured from a card's real jobs over the last days.

    Written only by the beat task ``playground.refresh_model_stats`` (playground/stats.py),
    so a model page reads one joined row instead of scanning jobs. Milliseconds; the
    percentiles are empty when the card had no timed run in the window.
    """

    card = models.OneToOneField(
        ModelCard, on_delete=models.CASCADE, primary_key=True, related_name="stats"
    )
    runs_7d = models.PositiveIntegerField(default=0, help_text="Succeeded runs on our workers.")
    queue_p50_ms = models.PositiveIntegerField(null=True, blank=True)
    queue_p95_ms = models.PositiveIntegerField(null=True, blank=True)
    model_p50_ms = models.PositiveIntegerField(null=True, blank=True)
    model_p95_ms = models.PositiveIntegerField(null=True, blank=True)
    arithmetic = models.CharField(
        max_length=64,
        blank=True,
        help_text="The arithmetic the sampled runs computed in (fp32; bf16 or int8 where a "
        "worker runs a fast variant): 'fp32, int8' when they mixed.",
    )
    refreshed_at = models.DateTimeField()

    class Meta:
        verbose_name = "measured latency"
        verbose_name_plural = "measured latency"

    def __str__(self) -> str:
        return f"{self.card_id}: {self.runs_7d} runs, model p50 {self.model_p50_ms} ms"

    @property
    def enough_runs(self) -> bool:
        return self.runs_7d >= settings.VITRINE_STATS_MIN_RUNS and self.model_p50_ms is not None
