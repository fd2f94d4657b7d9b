"""The pages visitors browse. Thin: parse the request, one read, render."""

from __future__ import annotations

import difflib
import html
import json
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import IntegrityError, transaction
from django.db.models import Case, F, IntegerField, Min, Prefetch, Q, Value, When
from django.http import Http404, HttpResponsePermanentRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.utils.html import strip_tags
from django.views.decorators.http import require_POST
from django.views.defaults import page_not_found

from catalog import charts, lifecycle, pricing, ratelimit, selectors
from catalog.cache import cached_page
from catalog.evaluations import shown_evaluation, trained_evaluations_prefetch
from catalog.markdown import render_markdown
from catalog.models import (
    BenchmarkRow,
    BenchmarkTable,
    Collection,
    DemandVote,
    ModelCard,
    Organisation,
    PriceChange,
    PriceRoute,
    Status,
    Task,
)
from catalog.selectors import card_prices_filled
from catalog.site import site_url
from catalog.snippets import detection_snippets

PAGE_SIZE = 24
# "Featured": the operators' order, except that models on their way out (deprecated, then
# retired) come after every model one can still start using.
LIFECYCLE_RANK = Case(
    When(status=Status.DEPRECATED, then=Value(1)),
    When(status=Status.RETIRED, then=Value(2)),
    default=Value(0),
    output_field=IntegerField(),
)
FEATURED = (F("lifecycle_rank").asc(), F("position").asc(), "display_name")
# Missing values sort last on every backend (PostgreSQL puts NULLs first in DESC order).
SORTS = {
    "": FEATURED,
    "price": (F("image_price").asc(nulls_last=True), "display_name"),
    "-price": (F("image_price").desc(nulls_last=True), "display_name"),
    "newest": (
        F("published_on").desc(nulls_last=True),
        F("launch_date").desc(nulls_last=True),
        "display_name",
    ),
    "downloads": (F("downloads_per_month").desc(nulls_last=True), "display_name"),
}
# Collections that hold their entries only while each is in one lifecycle status (by the
# seed's slug): a model switched to live leaves "Coming soon" at once, on its page too, and
# comes back if it is switched back, with no operator editing the collection.
STATUS_COLLECTIONS = {"coming-soon": Status.COMING_SOON}
COMPARE_MIN, COMPARE_MAX = 2, 4
COMPARE_PICK = f"Pick {COMPARE_MIN} to {COMPARE_MAX} models to compare."
COMPARE_TWICE = f"{{name}} is chosen twice; pick {COMPARE_MIN} to {COMPARE_MAX} different models."
# "Compare on your image" (playground/compare.py) runs 2 to 3 of the compared models.
RUN_MAX = 3
CALLABLE = (Status.LIVE, Status.BETA, Status.DEPRECATED)
VOTE_THANKS = "Thanks: we will tell you when it is live."
VOTE_ALREADY = "You already asked for this model; we will tell you when it is live."
VOTE_NEEDS_EMAIL = "Enter an email address, or sign in, to be told when it is live."
VOTE_LIMITED = (
    "Too many addresses were sent from your network: try again in {minutes} min, or sign in."
)


def listed_cards():
    """Published cards with what a card tile shows, in a fixed number of queries."""
    return (
        ModelCard.objects.published()
        .select_related("organisation", "task", "replacement__organisation")
        .prefetch_related(Prefetch("routes", queryset=PriceRoute.objects.filter(is_active=True)))
        .annotate(
            image_price=Min(
                "routes__price", filter=Q(routes__is_active=True, routes__unit="image")
            ),
            lifecycle_rank=LIFECYCLE_RANK,
        )
    )


class CardFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=100)
    task = forms.SlugField(required=False)
    status = forms.MultipleChoiceField(required=False, choices=Status.choices)
    org = forms.SlugField(required=False)
    license = forms.CharField(required=False, max_length=64)
    open_weight = forms.BooleanField(required=False)
    price_min = forms.DecimalField(required=False, min_value=0, decimal_places=10)
    price_max = forms.DecimalField(required=False, min_value=0, decimal_places=10)
    sort = forms.ChoiceField(
        required=False,
        choices=[
            ("", "Featured"),
            ("price", "Price: low to high"),
            ("-price", "Price: high to low"),
            ("newest", "Newest"),
            ("downloads", "Most downloaded"),
        ],
    )

    def apply(self, cards):
        data = self.cleaned_data
        if q := data.get("q"):
            cards = cards.filter(
                Q(display_name__icontains=q)
                | Q(slug__icontains=q)
                | Q(organisation__name__icontains=q)
                | Q(organisation__slug__icontains=q)
                | Q(summary__icontains=q)
                | Q(family__icontains=q)
                | Q(task__name__icontains=q)
                | Q(task__slug__icontains=q)
            )
        if data.get("task"):
            cards = cards.filter(task__slug=data["task"])
        if data.get("status"):
            cards = cards.filter(status__in=data["status"])
        if data.get("org"):
            cards = cards.filter(organisation__slug=data["org"])
        if data.get("license"):
            cards = cards.filter(license__iexact=data["license"])
        if data.get("open_weight"):
            cards = cards.filter(open_weight=True)
        # Prices in the form are per 1k images, as shown on the cards.
        if data.get("price_min") is not None:
            cards = cards.filter(image_price__gte=data["price_min"] / 1000)
        if data.get("price_max") is not None:
            cards = cards.filter(image_price__lte=data["price_max"] / 1000)
        return cards.order_by(*SORTS[data.get("sort") or ""])


@cached_page
def model_list(request):
    form = CardFilterForm(request.GET)
    cards = listed_cards()
    cards = form.apply(cards) if form.is_valid() else cards.none()
    page = Paginator(cards, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    facets = {
        "tasks": Task.objects.filter(cards__in=ModelCard.objects.published()).distinct(),
        "orgs": Organisation.objects.filter(cards__in=ModelCard.objects.published()).distinct(),
        "licenses": sorted(
            set(ModelCard.objects.published().exclude(license="").values_list("license", flat=True))
        ),
    }
    return render(
        request,
        "catalog/model_list.html",
        {"form": form, "page": page, "query": query.urlencode(), "facets": facets},
    )


def _card_or_404(request, org: str, name: str):
    card = (
        ModelCard.objects.published()
        # stats: the measured latency row (catalog.ModelStats), joined, not a query more.
        .select_related("organisation", "task", "replacement__organisation", "stats")
        .prefetch_related(
            "specs",
            "faq",
            "task__schemas",
            Prefetch("routes", queryset=PriceRoute.objects.filter(is_active=True)),
            Prefetch(
                "routes__history",
                queryset=PriceChange.objects.select_related("changed_by"),
            ),
            Prefetch(
                "benchmarks",
                queryset=BenchmarkTable.objects.prefetch_related(
                    # The row's model with its organisation: its link is /models/<org>/<name>
                    # (one query more per linked row before).
                    Prefetch(
                        "rows", queryset=BenchmarkRow.objects.select_related("model__organisation")
                    )
                ),
            ),
            # Published ones only: a related model taken down was still linked (a 404) and
            # put in the Compare button's ids (a 400 for the whole comparison).
            Prefetch(
                "related", queryset=ModelCard.objects.published().select_related("organisation")
            ),
            "collections",
            trained_evaluations_prefetch(),
        )
        .filter(organisation__slug=org, slug=name)
        .first()
    )
    if card is None:
        return None, renamed_redirect(request, f"{org}/{name}") or _model_not_found(
            request, f"{org}/{name}"
        )
    return card, None


def renamed_redirect(request, model_id: str, url_name: str = "catalog:model_detail"):
    """A 301 to the page of the card renamed from ``model_id`` (the query kept), or None:
    links and bookmarks to a renamed model's pages keep working, as Hugging Face's do."""
    renamed = selectors.card_renamed(model_id=model_id)
    if renamed is None or renamed == model_id:
        return None
    org, _, name = renamed.partition("/")
    query = request.META.get("QUERY_STRING", "")
    url = reverse(url_name, kwargs={"org": org, "name": name})
    return HttpResponsePermanentRedirect(f"{url}?{query}" if query else url)


def _model_not_found(request, wanted: str):
    cards = list(ModelCard.objects.published().select_related("organisation"))
    by_id = {card.model_id.lower(): card for card in cards}
    by_name = {card.slug.lower(): card for card in cards}
    close = difflib.get_close_matches(wanted.lower(), by_id, n=3, cutoff=0.4)
    close += difflib.get_close_matches(wanted.split("/")[-1].lower(), by_name, n=3, cutoff=0.4)
    suggestions = []
    for key in close:
        card = by_id.get(key) or by_name.get(key)
        if card not in suggestions:
            suggestions.append(card)
    return render(
        request,
        "catalog/model_not_found.html",
        {"wanted": wanted, "suggestions": suggestions[:3]},
        status=404,
    )


def spec_table(card: ModelCard) -> list[tuple[str, str]]:
    """The operator's spec rows, then card fields whose label no spec row already covers."""
    from catalog.templatetags.catalog_tags import compact

    rows = [(spec.label, spec.value) for spec in card.specs.all()]
    seen = {label.lower() for label, _ in rows}
    fields = [
        ("Task", card.task.name),  # a card without a "Task" spec row showed "—" on /compare
        ("Parameters", compact(card.parameters) if card.parameters else ""),
        ("GFLOPs", f"{card.gflops.normalize():f}" if card.gflops is not None else ""),
        ("Backbone", card.backbone),
        ("License", card.license),
        ("Training data", card.training_data),
    ]
    rows += [(label, value) for label, value in fields if value and label.lower() not in seen]
    return rows


def pricing_box(card: ModelCard) -> dict:
    routes = list(card.routes.all())
    image_routes = [r for r in routes if r.unit == PriceRoute.Unit.IMAGE]
    own = next((r for r in routes if r.is_own), None)
    # "Cheapest" only among prices of one unit: a provider's price per request beside ours
    # per image is not the same offer (it runs on the caller's own key, paid to them).
    cheapest = {
        min(same, key=lambda r: r.price).pk
        for unit in {r.unit for r in routes}
        if len(same := [r for r in routes if r.unit == unit]) > 1
    }
    rows = []
    for route in routes:
        per_top_up = pricing.units_per_credit(credit=pricing.EXAMPLE_TOP_UP, unit_price=route.price)
        rows.append(
            {
                "route": route,
                "price": pricing.format_usd(route.price),
                "per_1k": pricing.format_usd(pricing.per_thousand(route.price)),
                "with_fee": pricing.format_usd(pricing.price_with_fee(route.price)),
                "per_top_up": per_top_up,
                "is_cheapest": route.pk in cheapest,
            }
        )
    return {
        "rows": rows,
        "own": own,
        "has_image_route": bool(image_routes),
        "fee_percent": int(pricing.TOP_UP_FEE_RATE * 100),
        "example_top_up": pricing.format_usd(pricing.EXAMPLE_TOP_UP),
        "example_top_up_total": pricing.format_usd(pricing.top_up_total(pricing.EXAMPLE_TOP_UP)),
        "byok_routes": [r for r in routes if r.byok_available],
        "providers": len([r for r in routes if not r.is_own]),
    }


def faq_schema(card: ModelCard) -> str:
    data = {
        "@context": "https://schema.org",
        "@type": "FAQPage",
        "mainEntity": [
            {
                "@type": "Question",
                "name": entry.question,
                "acceptedAnswer": {
                    "@type": "Answer",
                    # Plain text, as schema.org reads it: no tags, no HTML entities.
                    "text": html.unescape(
                        strip_tags(render_markdown(card_prices_filled(entry.answer, card)))
                    ).strip(),
                },
            }
            for entry in card.faq.all()
        ],
    }
    # Escape '<' so an answer cannot close the <script> element that holds this JSON.
    return json.dumps(data).replace("<", "\\u003c")


# The API flavours every card of a task answers: Vitrine's own and the Hugging Face shape it
# mirrors. A provider route's flavour (Cloudflare's) is shown on its own cards' pages.
OWN_FLAVOURS = ("vitrine", "hf-inference")


def schema_items(schemas) -> list[dict]:
    """Each TaskSchema with its input and output JSON Schema as indented JSON text."""
    return [
        {
            "schema": s,
            "input": json.dumps(s.input_schema, indent=2),
            "output": json.dumps(s.output_schema, indent=2),
        }
        for s in schemas
    ]


@cached_page
def model_detail(request, org: str, name: str):
    card, not_found = _card_or_404(request, org, name)
    if not_found:
        return not_found
    cloudflare = next(
        (r for r in card.routes.all() if r.provider_model_id.startswith("@cf/")), None
    )
    # Our own API and the Hugging Face shape it mirrors, plus the API of each provider route.
    flavours = set(OWN_FLAVOURS) | {r.schema_flavour for r in card.routes.all()}
    schemas = [s for s in card.task.schemas.all() if s.flavour in flavours]
    base_url = site_url(request)
    # A retired model has no buy path: no price, no snippets, no try button (the template
    # shows its replacement first instead).
    retired = card.is_past_sunset  # retired, or deprecated and its sunset date come
    return render(
        request,
        "catalog/model_detail.html",
        {
            "card": card,
            "pricing": pricing_box(card),
            "retired": retired,
            "callable": card.status in CALLABLE and not retired,
            "stats": getattr(card, "stats", None),
            "stats_min_runs": settings.VITRINE_STATS_MIN_RUNS,
            "snippets": []
            if retired
            else detection_snippets(
                site_url=base_url,
                model_id=card.model_id,
                cloudflare_model_id=cloudflare.provider_model_id if cloudflare else "",
                local_repo=card.checkpoint_repo if card.open_weight else "",
                local_revision=card.checkpoint_revision,
            ),
            "inference_url": f"{base_url}/v1/inference/{card.model_id}",
            # Its price is Cloudflare's own; Vitrine's Cloudflare-compatible route charges
            # Vitrine's (catalog/_cloudflare_price.html says both).
            "cloudflare_route": cloudflare,
            "collections": card_collections(card),
            "schemas": schema_items(schemas),
            "price_history": sorted(
                (h for r in card.routes.all() for h in r.history.all()),
                key=lambda h: h.effective_at,
                reverse=True,
            ),
            "measured": (measured := shown_evaluation(card)),
            "measured_values": _percentages(measured),
            "faq_schema": faq_schema(card),
            "specs": spec_table(card),
            "canonical": f"{base_url}{request.path}",
        },
    )


def card_collections(card: ModelCard) -> list[Collection]:
    """The collections a card's page links to: a status collection only while the card is
    in that status (``STATUS_COLLECTIONS``), as the collection's own page lists it."""
    status = lifecycle.card_status(card)
    return [c for c in card.collections.all() if STATUS_COLLECTIONS.get(c.slug, status) == status]


def _percentages(evaluation) -> list[str]:
    """AP figures as the papers print them (42.0); "-" where the set has no such object."""
    if evaluation is None:
        return []
    values = [evaluation.ap, evaluation.ap50, evaluation.ap75]
    values += [evaluation.ap_small, evaluation.ap_medium, evaluation.ap_large]
    return [f"{v * 100:.1f}" if v >= 0 else "-" for v in values]


class VoteForm(forms.Form):
    email = forms.EmailField(required=False)


@require_POST
def _notify_admit(request) -> ratelimit.Decision:
    bucket = ratelimit.Bucket(
        "notify-ip",
        ratelimit.client_network(request),
        settings.VITRINE_NOTIFY_PER_IP_PER_HOUR,
        3600,
    )
    return ratelimit.hit(bucket)


def model_notify(request, org: str, name: str):
    card = get_object_or_404(
        ModelCard.objects.published().select_related("organisation"),
        organisation__slug=org,
        slug=name,
    )
    form = VoteForm(request.POST)
    user = request.user if request.user.is_authenticated else None
    email = form.cleaned_data["email"].strip().lower() if form.is_valid() else ""
    if user is None and not email:
        messages.error(request, VOTE_NEEDS_EMAIL)
    elif user is None and not (decision := _notify_admit(request)).allowed:
        # Anyone can type addresses: without an account, a vote an address and a few an
        # hour per network, else the demand count is whoever scripted the most.
        messages.error(
            request, VOTE_LIMITED.format(minutes=ratelimit.minutes(decision.retry_after))
        )
    else:
        try:
            with transaction.atomic():
                if user is not None:
                    _, created = DemandVote.objects.get_or_create(card=card, user=user)
                else:
                    _, created = DemandVote.objects.get_or_create(card=card, email=email)
        except IntegrityError:  # a concurrent double-click lost the race: already counted
            created = False
        messages.success(request, VOTE_THANKS if created else VOTE_ALREADY)
    return redirect(reverse("catalog:model_detail", args=[org, name]) + "#notify")


@cached_page
def compare(request):
    # The same model twice is one model: a comparison needs COMPARE_MIN different ones, and
    # a model named twice is said by its name (as /compare/run says it).
    # ?models=a,b (a shared link) or ?models=a&models=b (the picker's checkboxes), or both.
    asked = [
        m.strip() for value in request.GET.getlist("models") for m in value.split(",") if m.strip()
    ]
    wanted = list(dict.fromkeys(asked))
    error = ""
    cards: list[ModelCard] = []
    if not wanted and "models" not in request.GET:
        pass  # a first visit: the picker, with nothing said wrong yet
    elif not wanted or len(wanted) > COMPARE_MAX:
        error = COMPARE_PICK
    else:
        q = Q()
        for model_id in wanted:
            org, _, name = model_id.partition("/")
            q |= Q(organisation__slug=org, slug=name)
        found = {
            c.model_id: c
            for c in listed_cards()
            .filter(q)
            .prefetch_related(
                "specs",
                Prefetch(
                    "benchmarks",
                    queryset=BenchmarkTable.objects.prefetch_related(
                        Prefetch("rows", queryset=BenchmarkRow.objects.select_related("model"))
                    ),
                ),
            )
        }
        missing = [m for m in wanted if m not in found]
        renamed = {m: selectors.card_renamed(model_id=m) for m in missing}
        if any(renamed.values()):  # a shared comparison naming a renamed model's former id
            query = request.GET.copy()
            query["models"] = ",".join(renamed.get(m) or m for m in wanted)
            url = f"{reverse('catalog:compare')}?{query.urlencode(safe='/,')}"
            return HttpResponsePermanentRedirect(url)
        twice = next((m for i, m in enumerate(asked) if m in asked[:i]), None)
        if missing:
            error = "Unknown model: " + ", ".join(missing)
        elif twice is not None:
            error = COMPARE_TWICE.format(name=found[twice].display_name)
        elif len(wanted) < COMPARE_MIN:
            error = COMPARE_PICK
        cards = [found[m] for m in wanted if m in found]
    # Every published card, with what the speed/cost plot needs, in a fixed number of queries.
    all_cards = list(
        listed_cards()
        .select_related("stats")
        .prefetch_related(
            Prefetch("benchmarks", queryset=BenchmarkTable.objects.prefetch_related("rows"))
        )
        .order_by("display_name")
    )
    cost_points = charts.cost_points(all_cards, compared=cards)
    plotted = {p.model_id for p in cost_points}
    cost = {
        "svg": charts.cost_svg(cost_points) if cost_points else "",
        "points": cost_points,
        # Priced models with neither a measured nor a published speed yet (coming soon ones
        # included: they are on the page, and their absence from the plot needs a reason).
        "unplotted": [
            c for c in all_cards if c.model_id not in plotted and c.image_price is not None
        ],
        # Where the published speeds come from, for the caption: each FPS column names its
        # GPU and runtime (DETR's V100 in PyTorch, RT-DETR's T4 with TensorRT FP16).
        "published_sources": speed_sources(
            (p.speed_source, p.label) for p in cost_points if not p.measured
        ),
    }  # fmt: skip
    # Any bad selection (an unknown id among known ones too) is the picker again with the
    # reason, never a comparison of fewer models than asked.
    if error or not wanted:
        status = 400 if any(request.GET.getlist("models")) else 200
        return render(
            request,
            "catalog/compare.html",
            {"error": error, "all_cards": all_cards, "selected": wanted, "cost": cost},
            status=status,
        )
    tables = [dict(spec_table(card)) for card in cards]
    spec_labels = list(dict.fromkeys(label for table in tables for label in table))
    spec_rows = [(label, [table.get(label, "—") for table in tables]) for label in spec_labels]
    points = charts.points_from_cards(cards)
    return render(
        request,
        "catalog/compare.html",
        {
            "error": error,
            "cards": cards,
            "all_cards": all_cards,
            "selected": wanted,
            "spec_rows": spec_rows,
            "prices": [pricing_box(c) for c in cards],
            "datasets": charts.benchmarks_by_dataset(cards),
            "scatter": charts.scatter_svg(points) if points else "",
            "points": points,
            "speed_columns": speed_sources(_fps_columns(cards)),
            "cost": cost,
            # What "compare on your image" can run: models one can call, at most 3.
            "runnable": [c for c in cards if c.status in CALLABLE][:RUN_MAX],
        },
    )


def speed_sources(pairs) -> list[str]:
    """``"<FPS column>: <models>"`` for each column that published speeds come from, from
    (column, model name) pairs: the column names the GPU and runtime the speed was measured
    on, so a chart's caption can say which figures cannot be compared with which."""
    by_column: dict[str, list[str]] = {}
    for column, name in pairs:
        names = by_column.setdefault(column, [])
        if name not in names:
            names.append(name)
    return [f"{column}: {', '.join(names)}" for column, names in sorted(by_column.items())]


def _fps_columns(cards):
    """(FPS column, model name) of each table the speed/accuracy chart plots (an FPS column
    and an AP one, as ``charts.points_from_cards`` picks them)."""
    for card in cards:
        for table in card.benchmarks.all():
            columns = list(table.columns)
            fps = next((c for c in columns if c.upper().startswith("FPS")), None)
            if fps is not None and "AP" in columns:
                yield fps, card.display_name


def markdown_intro(text: str) -> dict[str, str]:
    """A list page's intro from an operator's text, as Markdown through the sanitiser (the
    seed's organisations write `facebook` in backticks, which showed as typed): the HTML,
    its headings under the page's h1, and the plain text for the meta description."""
    return {"intro_html": render_markdown(text, top=2), "intro": strip_tags(render_markdown(text))}


@cached_page
def collection_detail(request, slug: str):
    collection = get_object_or_404(Collection, slug=slug)
    order = list(collection.entries.values_list("card_id", flat=True))
    members = listed_cards().filter(pk__in=order)
    if collection.slug in STATUS_COLLECTIONS:
        members = members.filter(lifecycle.status_filter(STATUS_COLLECTIONS[collection.slug]))
    # The collection's own order, models on their way out last (as under "Featured").
    cards = sorted(
        members,
        key=lambda c: (c.lifecycle_rank, order.index(c.pk)),
    )
    return render(
        request,
        "catalog/card_list_page.html",
        {"title": collection.name, **markdown_intro(collection.description), "cards": cards},
    )


@cached_page
def org_detail(request, slug: str):
    org = Organisation.objects.filter(slug=slug).first()
    if org is None:
        renamed = selectors.organisation_renamed(slug=slug)
        if renamed is None or renamed == slug:
            raise Http404("No such organisation.")
        return HttpResponsePermanentRedirect(reverse("catalog:org_detail", args=[renamed]))
    return render(
        request,
        "catalog/card_list_page.html",
        {
            "title": f"Models from {org.name}",
            **markdown_intro(org.description),
            "link": org.url,
            "cards": listed_cards().filter(organisation=org).order_by(*FEATURED),
        },
    )


@cached_page
def task_detail(request, slug: str):
    """A task (Hugging Face's task pages, seed 003): what its models do, in the operators'
    Markdown, then every listed model of the task."""
    task = get_object_or_404(Task, slug=slug)
    return render(
        request,
        "catalog/card_list_page.html",
        {
            "title": task.name,
            **markdown_intro(task.description),
            "cards": listed_cards().filter(task=task).order_by(*FEATURED),
            # Seed 003's "API specification": the request, headers and response every model
            # of the task takes on this site (a provider's own flavour is on its models' pages).
            "schemas": schema_items(s for s in task.schemas.all() if s.flavour in OWN_FLAVOURS),
        },
    )


def pricing_table(cards) -> tuple[list[dict], list[ModelCard]]:
    """``/pricing``'s rows: one per listed card one can still call or wait for, each with
    its active routes priced in the site's one format; and the retired cards (retired, or
    deprecated past their sunset), shown apart with no price, as their pages show none."""
    rows, retired = [], []
    for card in cards:
        if card.is_past_sunset:
            retired.append(card)
            continue
        routes = [
            {
                "route": route,
                "price": pricing.format_usd(route.price),
                "per_1k": pricing.format_usd(pricing.per_thousand(route.price)),
            }
            for route in card.routes.all()
        ]
        rows.append({"card": card, "routes": routes, "span": max(1, len(routes))})
    return rows, retired


@cached_page
def pricing_page(request):
    """Every listed model's price on every route, and how billing works, on one page: the
    cards as /models reads them (``listed_cards``: two queries whatever their number)."""
    rows, retired = pricing_table(listed_cards().order_by(*FEATURED))
    credit = pricing.EXAMPLE_TOP_UP
    return render(
        request,
        "catalog/pricing.html",
        {
            "rows": rows,
            "retired": retired,
            "fee_percent": f"{(pricing.TOP_UP_FEE_RATE * 100).normalize():f}",
            "example_credit": pricing.format_usd(credit),
            "example_total": pricing.format_usd(pricing.top_up_total(credit)),
            "example_fee": pricing.format_usd(pricing.top_up_total(credit) - credit),
            "min_top_up": pricing.format_usd(Decimal(settings.VITRINE_MIN_TOP_UP)),
            "max_top_up": pricing.format_usd(Decimal(settings.VITRINE_MAX_TOP_UP)),
        },
    )


def home(request):
    return redirect("catalog:model_list")


def not_found(request, exception):
    """Django's 404 (``handler404``): the site's page, or, to a client asking for JSON only
    (``Accept: application/json``, as the try page's and a run's scripts do), the API's
    error shape: a script reads a 404 for someone else's run like any other error."""
    accept = request.headers.get("Accept", "")
    if "application/json" in accept and "text/html" not in accept:
        from catalog.errors import NOT_FOUND, NOT_FOUND_ERROR, ApplicationError

        error = ApplicationError(NOT_FOUND, code="not_found", status=404, type=NOT_FOUND_ERROR)
        response = JsonResponse(error.as_dict(), status=404)
    else:
        response = page_not_found(request, exception)
    # One address, two answers by Accept: a cache must not give a page the script's JSON.
    patch_vary_headers(response, ["Accept"])
    return response
