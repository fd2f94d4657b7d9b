"""The operators' catalogue editor.

Prices change only through ``price_route_save``, so every edit made here, on the card's
inline or on the route's own page, appends a PriceChange with the operator and the time.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal

from django import forms
from django.contrib import admin
from django.db import models
from django.db.models import Count
from django.utils import timezone
from django.utils.html import format_html

from catalog.markdown import render_markdown
from catalog.models import (
    BenchmarkRow,
    BenchmarkTable,
    Collection,
    CollectionEntry,
    DemandVote,
    EvaluationResult,
    FaqEntry,
    ModelCard,
    ModelIdAlias,
    ModelStats,
    Organisation,
    PriceChange,
    PriceRoute,
    SpecRow,
    Task,
    TaskSchema,
)
from catalog.paths import card_path
from catalog.selectors import card_prices_filled
from catalog.services import price_route_save


class LinesField(forms.CharField):
    """A list of strings edited as a textarea, one item per line."""

    widget = forms.Textarea(attrs={"rows": 4, "cols": 60})

    def prepare_value(self, value):
        if isinstance(value, list):
            return "\n".join(value)
        return value

    def to_python(self, value):
        if isinstance(value, list):
            return value
        return [line.strip() for line in (value or "").splitlines() if line.strip()]

    def has_changed(self, initial, data) -> bool:
        # As lists: CharField's compares the initial's "" (none: a blank extra row) with
        # the [] an empty box reads as, so an untouched extra benchmark row was "changed",
        # validated, and refused the save of a table nobody had edited.
        return self.to_python(initial or []) != self.to_python(data)


class CellsField(LinesField):
    """Benchmark columns/values: one line each, or one line separated by ``|``."""

    widget = forms.TextInput(attrs={"size": 80})

    def prepare_value(self, value):
        if isinstance(value, list):
            return " | ".join(value)
        return value

    def to_python(self, value):
        if isinstance(value, list):
            return value
        return [cell.strip() for cell in (value or "").split("|") if cell.strip()]


def markdown_preview(text: str):
    if not text:
        return "—"
    return format_html('<div class="markdown-preview">{}</div>', render_markdown(text))


STALE_FORM = (
    "Someone else saved this {what} after you opened this form (its last save: {when}). "
    "Nothing was saved: reload the page to see their change, then make yours again."
)
UNCHECKED_FORM = (
    "This form came without its edit check (opened before the site was updated?). Nothing "
    "was saved: reload the page and make your change again."
)


def _digest(state) -> str:
    return hashlib.sha256(repr(state).encode()).hexdigest()[:32]


def card_edit_token(card: ModelCard) -> str:
    """What a card's change form was opened on: its last save and its routes (a price can
    change without a save of the card, through ``price_route_save``)."""
    routes = list(PriceRoute.objects.filter(card=card).order_by("pk").values_list())
    return _digest((card.updated_at.isoformat() if card.updated_at else "", routes))


def route_edit_token(route: PriceRoute) -> str:
    """What a route's change form was opened on: the route's row as saved."""
    return _digest(list(PriceRoute.objects.filter(pk=route.pk).values_list()))


class EditCheckedForm(forms.ModelForm):
    """A change form refused whole when its object was saved since it was opened. Two
    operators on one card, the second one's stale form put the first one's price and
    status back, silently, and the price history recorded it as a new edit (session 47's
    operator probe); the route's own page did the same to a price set on the card's."""

    edit_token = forms.CharField(widget=forms.HiddenInput, required=False)
    edit_what = "object"

    def edit_state(self, obj) -> str:
        raise NotImplementedError

    def edit_when(self, obj) -> str:
        return "unknown"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and "edit_token" in self.fields:
            self.fields["edit_token"].initial = self.edit_state(self.instance)

    def clean(self):
        cleaned = super().clean()
        if self.instance.pk and "edit_token" in self.fields:
            # Read again under a lock (the admin saves in one transaction): of two forms
            # opened on the same object and posted at once, the second sees the first's save.
            model = type(self.instance)
            current = model.objects.select_for_update().filter(pk=self.instance.pk).first()
            given = cleaned.get("edit_token")
            if current is not None and not given:
                raise forms.ValidationError(UNCHECKED_FORM, code="unchecked")
            if current is not None and given != self.edit_state(current):
                raise forms.ValidationError(
                    STALE_FORM.format(what=self.edit_what, when=self.edit_when(current)),
                    code="stale",
                )
        return cleaned


def _when(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z") if moment else "unknown"


class ModelCardForm(EditCheckedForm):
    modalities = LinesField(required=False, help_text="One per line, e.g. image.")
    strengths = LinesField(required=False, help_text="One per line.")
    use_cases = LinesField(required=False, help_text='"Best for" items, one per line.')
    edit_what = "model"

    class Meta:
        model = ModelCard
        fields = "__all__"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A card is not its own related model: offered in the list and picked, its page
        # linked to itself and its Compare button named it twice, a 400 for the whole
        # comparison ("the same model twice").
        if self.instance.pk and "related" in self.fields:
            related = self.fields["related"]
            related.queryset = related.queryset.exclude(pk=self.instance.pk)

    def edit_state(self, obj) -> str:
        return card_edit_token(obj)

    def edit_when(self, obj) -> str:
        return _when(obj.updated_at)


class PriceRouteForm(EditCheckedForm):
    edit_what = "price route"

    class Meta:
        model = PriceRoute
        fields = "__all__"

    def edit_state(self, obj) -> str:
        return route_edit_token(obj)

    def edit_when(self, obj) -> str:
        latest = obj.history.order_by("-effective_at").values_list("effective_at", flat=True)
        return _when(latest.first())


class SpecRowInline(admin.TabularInline):
    model = SpecRow
    extra = 0


ROUTE_NOT_DELETED = (
    "The route “{route}” keeps its price history (the model page shows it, charges name "
    "it): a route is never deleted. Untick “Is active” to take it off the model page and "
    "the API."
)


class PlainDecimalInput(forms.NumberInput):
    """A price in its box as it is written, never in exponent form: Django's NumberInput
    shows ``str(Decimal)``, and a saved price of $0.0000000005 came back in the route's
    box as "5E-10" (0.0000001 as "1.000E-7"; session 43's outside probe)."""

    def format_value(self, value):
        if isinstance(value, Decimal) and value.is_finite():
            return f"{value.normalize():f}"
        return super().format_value(value)


PLAIN_DECIMALS = {models.DecimalField: {"widget": PlainDecimalInput}}


class PriceRouteInlineFormSet(forms.BaseInlineFormSet):
    """A saved route's Delete box is refused with a form error. Deleting it here took its
    append-only price history with it, silently, while the route's own delete page and the
    card's refuse (nobody may delete a PriceChange); errors on a form marked for deletion
    are not checked, so the refusal is the formset's own."""

    def clean(self) -> None:
        super().clean()
        for form in self.initial_forms:
            if self._should_delete_form(form):
                raise forms.ValidationError(ROUTE_NOT_DELETED.format(route=form.instance.slug))


class PriceRouteInline(admin.StackedInline):
    # Stacked, four short rows: as a table its twelve columns made the card's page 2,296 px
    # wide.
    model = PriceRoute
    formset = PriceRouteInlineFormSet
    formfield_overrides = PLAIN_DECIMALS
    extra = 0
    fields = [
        ("slug", "provider", "provider_model_id"),
        ("unit", "price", "is_estimate"),
        ("is_own", "is_beta", "byok_available", "is_active"),
        ("schema_flavour", "position"),
    ]
    show_change_link = True


class BenchmarkTableInlineForm(forms.ModelForm):
    columns = CellsField(help_text="Metric names separated by |")

    class Meta:
        model = BenchmarkTable
        fields = "__all__"


class BenchmarkTableOnCardForm(BenchmarkTableInlineForm):
    """On the card's page the rows are not in the form: columns that no longer match
    them are refused (a table of 2 headers and rows of 3 cells was saved and shown)."""

    def clean_columns(self):
        columns = self.cleaned_data["columns"]
        if self.instance.pk:
            for row in self.instance.rows.all():
                if len(row.values) != len(columns):
                    raise forms.ValidationError(
                        f"Row “{row.label}” has {len(row.values)} values for "
                        f"{len(columns)} columns: change columns and rows together on the "
                        f"table's own page."
                    )
        return columns


class BenchmarkTableInline(admin.StackedInline):
    model = BenchmarkTable
    form = BenchmarkTableOnCardForm
    extra = 0
    show_change_link = True  # rows are edited on the table's own page


class FaqEntryInline(admin.StackedInline):
    model = FaqEntry
    extra = 0


class FormerIdInline(admin.TabularInline):
    """Ids the card answered to before a rename (recorded by the save): each still leads
    here (pages redirect, API calls run this card). Deleting one frees it: it is 404 then,
    until a card takes it."""

    model = ModelIdAlias
    extra = 0
    fields = readonly_fields = ["model_id", "created_at"]
    verbose_name_plural = "former ids (still lead here)"

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ModelCard)
class ModelCardAdmin(admin.ModelAdmin):
    form = ModelCardForm
    list_display = [
        "display_name", "model_id", "organisation", "status", "task", "license", "open_weight",
        "demand", "position", "checkpoint_pin", "is_published",
    ]  # fmt: skip
    list_filter = ["status", "task", "organisation", "license", "open_weight", "is_published"]
    search_fields = ["display_name", "slug", "organisation__name", "organisation__slug", "summary"]

    def get_search_results(self, request, queryset, search_term):
        # A whole model id ("facebook/detr-resnet-50", as the API and the logs name it)
        # finds its card; the fields above hold its two halves apart.
        org, slash, name = search_term.strip().partition("/")
        if slash and org and name and " " not in search_term.strip():
            found = queryset.filter(organisation__slug__iexact=org, slug__iexact=name)
            if found.exists():
                return found, False
            found = queryset.filter(former_ids__model_id__iexact=search_term.strip())
            if found.exists():  # a renamed model's former id, as old logs name it
                return found, False
        return super().get_search_results(request, queryset, search_term)

    list_select_related = ["organisation", "task"]
    prepopulated_fields = {"slug": ["display_name"]}
    autocomplete_fields = ["replacement"]
    filter_horizontal = ["related"]
    readonly_fields = ["description_preview", "checkpoint_pin", "created_at", "updated_at"]
    inlines = [
        SpecRowInline, PriceRouteInline, BenchmarkTableInline, FaqEntryInline, FormerIdInline,
    ]  # fmt: skip
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "organisation",
                    "slug",
                    "display_name",
                    "family",
                    "task",
                    "modalities",
                    "edit_token",
                ]
            },
        ),
        ("Text", {"fields": ["summary", "description", "description_preview"]}),
        (
            "Lifecycle",
            {
                "fields": [
                    "status",
                    "launch_date",
                    "deprecation_date",
                    "sunset_date",
                    "replacement",
                    "coming_soon_note",
                    "is_published",
                    "published_at",
                    "position",
                ]
            },
        ),
        (
            "Specs",
            {
                "fields": [
                    "license",
                    "open_weight",
                    "parameters",
                    "gflops",
                    "architecture",
                    "backbone",
                    "training_data",
                    "paper_url",
                    "source_url",
                    "published_on",
                    "updated_on",
                    "date_precision",
                    "downloads_per_month",
                    "strengths",
                    "use_cases",
                    "related",
                ]
            },
        ),
        (
            "Runtime checkpoint",
            {
                "fields": [
                    "checkpoint_repo",
                    "checkpoint_revision",
                    "checkpoint_pin",
                    "checkpoint_local_dir",
                ],
                "description": "Pin a Hub checkpoint by its 40-hex commit: a branch or tag "
                "name can move to other weights under the same card.",
            },
        ),
        ("API limits", {"fields": ["rate_limit_per_minute"]}),
        ("Timestamps", {"fields": ["created_at", "updated_at"], "classes": ["collapse"]}),
    ]

    def view_on_site(self, obj):
        # The card's public page ("View on site"), to check an edit as visitors see it.
        return card_path(obj)

    @admin.display(description="Checkpoint pin")
    def checkpoint_pin(self, obj):
        if obj is None or not obj.checkpoint_repo:
            return "local folder" if obj and obj.checkpoint_local_dir else "-"
        if obj.revision_is_commit:
            return "commit"
        return format_html(
            '<strong class="errornote">branch {} (moving)</strong>', obj.checkpoint_revision
        )

    @admin.display(description="Rendered description")
    def description_preview(self, obj):
        # As the page shows it: {price} and {price:<route>} filled from the saved routes.
        return markdown_preview(card_prices_filled(obj.description, obj) if obj else "")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(demand_count=Count("demand_votes"))

    @admin.display(description="Wanted by", ordering="demand_count")
    def demand(self, obj):
        return obj.demand_count

    def save_formset(self, request, form, formset, change):
        if formset.model is not PriceRoute:
            return super().save_formset(request, form, formset, change)
        routes = formset.save(commit=False)
        for route in formset.deleted_objects:
            route.delete()
        for route in routes:
            price_route_save(route=route, changed_by=request.user, note="admin edit")
        formset.save_m2m()


class PriceChangeInline(admin.TabularInline):
    model = PriceChange
    extra = 0
    can_delete = False
    fields = readonly_fields = [
        "effective_at",
        "price",
        "unit",
        "is_estimate",
        "changed_by",
        "note",
    ]

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(PriceRoute)
class PriceRouteAdmin(admin.ModelAdmin):
    form = PriceRouteForm
    formfield_overrides = PLAIN_DECIMALS
    # Active shown and filtered: a route is taken off the pages by unticking it, never
    # deleted, so an inactive one must not look like the live price.
    list_display = [
        "card", "provider", "unit", "price", "is_estimate", "byok_available", "is_active",
    ]  # fmt: skip
    list_filter = ["is_active", "provider", "unit", "is_estimate", "byok_available", "is_own"]
    search_fields = ["card__display_name", "card__slug", "provider", "provider_model_id"]
    list_select_related = ["card__organisation"]
    autocomplete_fields = ["card"]
    inlines = [PriceChangeInline]

    def get_readonly_fields(self, request, obj=None):
        # A saved route stays on its card: moved to another, its price history (and the
        # charges that name it) went along and read as the other model's, and the card it
        # left lost its price without a word.
        if obj is not None:
            return [*super().get_readonly_fields(request, obj), "card"]
        return super().get_readonly_fields(request, obj)

    def save_model(self, request, obj, form, change):
        price_route_save(route=obj, changed_by=request.user, note="admin edit")


@admin.register(PriceChange)
class PriceChangeAdmin(admin.ModelAdmin):
    """Read-only: the history is append-only."""

    list_display = ["route", "price", "unit", "is_estimate", "effective_at", "changed_by"]
    list_filter = ["unit", "is_estimate"]
    list_select_related = ["route__card__organisation", "changed_by"]
    date_hierarchy = "effective_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class BenchmarkRowForm(forms.ModelForm):
    values = CellsField(help_text="One value per column, separated by |")

    class Meta:
        model = BenchmarkRow
        fields = "__all__"


class BenchmarkRowInline(admin.TabularInline):
    model = BenchmarkRow
    form = BenchmarkRowForm
    fk_name = "table"
    extra = 1
    autocomplete_fields = ["model"]


@admin.register(BenchmarkTable)
class BenchmarkTableAdmin(admin.ModelAdmin):
    form = BenchmarkTableInlineForm
    list_display = ["title", "card", "dataset", "source"]
    list_filter = ["dataset"]
    search_fields = ["title", "dataset", "card__display_name"]
    autocomplete_fields = ["card"]
    readonly_fields = ["caption_preview"]
    inlines = [BenchmarkRowInline]

    @admin.display(description="Rendered caption")
    def caption_preview(self, obj):
        return markdown_preview(obj.caption if obj else "")


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "url"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


class TaskSchemaInline(admin.StackedInline):
    model = TaskSchema
    extra = 0


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "modality_in", "modality_out"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["description_preview"]
    inlines = [TaskSchemaInline]

    @admin.display(description="Rendered description")
    def description_preview(self, obj):
        return markdown_preview(obj.description if obj else "")


class CollectionEntryInline(admin.TabularInline):
    model = CollectionEntry
    extra = 1
    autocomplete_fields = ["card"]


@admin.register(Collection)
class CollectionAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "position"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [CollectionEntryInline]


@admin.register(FaqEntry)
class FaqEntryAdmin(admin.ModelAdmin):
    list_display = ["question", "card", "position"]
    search_fields = ["question", "answer", "card__display_name"]
    list_select_related = ["card__organisation"]
    autocomplete_fields = ["card"]
    readonly_fields = ["answer_preview"]

    @admin.display(description="Rendered answer")
    def answer_preview(self, obj):
        return markdown_preview(card_prices_filled(obj.answer, obj.card) if obj else "")


@admin.register(DemandVote)
class DemandVoteAdmin(admin.ModelAdmin):
    """Who asked to be told when a coming-soon model goes live."""

    list_display = ["card", "user", "email", "created_at"]
    list_filter = ["card"]
    search_fields = ["email", "user__username", "card__display_name"]
    list_select_related = ["card__organisation", "user"]
    readonly_fields = ["card", "user", "email", "created_at"]

    def has_add_permission(self, request):
        return False


@admin.register(EvaluationResult)
class EvaluationResultAdmin(admin.ModelAdmin):
    """Written by ``manage.py evaluate`` (minutes of model time: not run from a request)."""

    list_display = [
        "card", "dataset", "images", "ap", "ap50", "ap75", "untrained", "checkpoint_revision",
        "device", "evaluated_at",
    ]  # fmt: skip
    list_filter = ["untrained", "dataset", "device"]
    list_select_related = ["card__organisation"]
    search_fields = ["card__slug", "card__organisation__slug", "resolved_revision"]
    readonly_fields = [f.name for f in EvaluationResult._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(ModelStats)
class ModelStatsAdmin(admin.ModelAdmin):
    """Written by the beat task ``playground.refresh_model_stats``; read-only here."""

    list_display = [
        "card", "runs_7d", "queue_p50_ms", "queue_p95_ms", "model_p50_ms", "model_p95_ms",
        "refreshed_at",
    ]  # fmt: skip
    list_select_related = ["card__organisation"]
    search_fields = ["card__slug", "card__organisation__slug"]
    readonly_fields = [f.name for f in ModelStats._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
