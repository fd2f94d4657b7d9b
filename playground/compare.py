"""Compare on your own image: one upload, 2-3 live models, their boxes side by side.

``/compare/run?models=a,b`` shows the models picked on the catalogue's compare page and an
image picker; posting it creates one free-try job per model through the try page's job
machinery (``services.job_create``; each model run counts as one try in the same per-IP
and per-user limit) and goes to ``/compare/run/<job id>,<job id>``, which polls one JSON
resource: every job's status, boxes, latency (queue wait and model time) and cost, and,
once they are all done, which boxes the models agree on (playground/matching.py).
Only the jobs' owner (the signed-in user, or the anonymous visitor's session) sees them.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Prefetch
from django.http import Http404, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_http_methods, require_safe

from catalog import ratelimit
from catalog.errors import ApplicationError, model_not_found
from catalog.lifecycle import card_callable_check
from catalog.models import ModelCard, PriceRoute
from catalog.pricing import format_usd
from catalog.selectors import card_renamed
from playground import limits, services
from playground.api import RETRY_AFTER_SECONDS
from playground.demo import EXAMPLES, try_buckets
from playground.failures import QUEUE_UNAVAILABLE, SERVICE_UNAVAILABLE, public_error
from playground.latency import model_seconds, queue_seconds, to_ms
from playground.matching import IOU_MIN, match_detections
from playground.models import Job, JobStatus
from playground.pipeline import upload_refused
from playground.runtime import ImageError
from playground.serializers import money, public_detections
from playground.storage import StorageUnavailable, upload_discard
from playground.views import MORE_TRIES, NO_IMAGE, _visitor, too_large

RUN_MIN, RUN_MAX = 2, 3
DEFAULT_THRESHOLD = 0.5
PICK_MODELS = f"Pick {RUN_MIN} to {RUN_MAX} different models to run on your image."
# The same model picked twice (its id twice, or its id and its id before a rename), named.
CHOSEN_TWICE = (
    f"{{name}} is chosen twice; pick {RUN_MIN} {'or' if RUN_MAX == RUN_MIN + 1 else 'to'} "
    f"{RUN_MAX} different models."
)
NO_OWN_ROUTE = "{name} has no route on Vitrine's workers to run it on."
NOT_ENOUGH_TRIES = (
    "Comparing {models} models uses {models} free tries; you have {remaining} left this hour "
    "(try again in {minutes} min, or {more})."
)
BAD_THRESHOLD = "threshold must be a number from {floor} to 1."


def _error(exc: ApplicationError) -> JsonResponse:
    """The API's one error shape, so a script reads this page's errors like the API's."""
    return JsonResponse(exc.as_dict(), status=exc.status, headers=exc.headers)


def _chosen(raw: list[str]) -> list[str]:
    """The model ids asked for, in order, a repeated one as often as it is given."""
    return [part.strip() for value in raw for part in value.split(",") if part.strip()]


def _chosen_twice(chosen: list[str], found: dict[str, ModelCard]) -> ModelCard | None:
    """The first model ``chosen`` names twice: by the same id, or by two ids of one card (a
    renamed model's former id beside its id). An id no card has is said on its own (404)."""
    seen = set()
    for model_id in chosen:
        card = found.get(model_id)
        if card is None:
            continue
        if card.pk in seen:
            return card
        seen.add(card.pk)
    return None


def _cards(model_ids: list[str]) -> dict[str, ModelCard]:
    """Published cards by model id, with their active own routes, in two queries."""
    if not model_ids:
        return {}
    q = ModelCard.objects.none()
    for model_id in model_ids:
        q |= ModelCard.objects.published().by_model_id(model_id)
    own = PriceRoute.objects.filter(is_own=True, is_active=True)
    cards = q.select_related("organisation", "replacement__organisation").prefetch_related(
        Prefetch("routes", queryset=own, to_attr="own_routes")
    )
    found = {card.model_id: card for card in cards}
    # A renamed model's former id (a comparison shared before the rename) is the card it
    # names now; a query only when an id was not found.
    renamed = {m: card_renamed(model_id=m) for m in model_ids if m not in found}
    renamed = {old: new for old, new in renamed.items() if new}
    if renamed:
        found |= _cards([new for new in renamed.values() if new not in found])
        found |= {old: found[new] for old, new in renamed.items() if new in found}
    return found


def _checked_cards(chosen: list[str]) -> list[tuple[ModelCard, PriceRoute]]:
    """The cards to run, each with the route it runs on; raises the one error otherwise.
    ``chosen``: the ids as asked, a repeated one as often as it was given."""
    model_ids = list(dict.fromkeys(chosen))
    if not chosen or len(model_ids) > RUN_MAX:  # too many is said before any query
        raise ApplicationError(PICK_MODELS, code="invalid_models", status=400, param="models")
    found = _cards(model_ids)
    twice = _chosen_twice(chosen, found)
    if twice is not None:
        message = CHOSEN_TWICE.format(name=twice.display_name)
        raise ApplicationError(message, code="invalid_models", status=400, param="models")
    if len(model_ids) < RUN_MIN:
        raise ApplicationError(PICK_MODELS, code="invalid_models", status=400, param="models")
    picked = []
    for model_id in model_ids:
        card = found.get(model_id)
        if card is None:
            raise model_not_found(model_id)
        card_callable_check(card)  # coming soon 409, retired 410, as on the try page
        if not card.own_routes:
            raise ApplicationError(
                NO_OWN_ROUTE.format(name=card.display_name), code="model_unavailable", status=409
            )
        picked.append((card, card.own_routes[0]))
    return picked


def _render_pick(request, chosen: list[str], *, error: str = "", status: int = 200):
    model_ids = list(dict.fromkeys(chosen))
    found = _cards(model_ids)
    choices = []
    shown = set()
    for model_id in model_ids:
        card = found.get(model_id)
        if card is None or card.pk in shown:  # one checkbox a model, however it is named
            continue
        shown.add(card.pk)
        try:
            card_callable_check(card)
            runnable = bool(card.own_routes)
        except ApplicationError:
            runnable = False
        choices.append({"card": card, "runnable": runnable})
    runnable = [c for c in choices if c["runnable"]]
    for number, choice in enumerate(runnable):
        choice["checked"] = number < RUN_MAX
    twice = _chosen_twice(chosen, found)
    if not error and twice is not None and len(runnable) < RUN_MIN:
        # A link naming one model twice: the page cannot run it, and says which model.
        error = CHOSEN_TWICE.format(name=twice.display_name)
    return render(
        request,
        "playground/compare_run.html",
        {
            "choices": choices,
            "runnable": len(runnable),
            "error": error,
            "selected": model_ids,
            "limit": settings.VITRINE_PLAYGROUND_PER_HOUR,
            "max_bytes": settings.VITRINE_MAX_UPLOAD_BYTES,
            "run_min": RUN_MIN,
            "run_max": RUN_MAX,
            "examples": EXAMPLES,  # the demo's own example images
        },
        status=status,
    )


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


@require_http_methods(["GET", "HEAD", "POST"])
def compare_run(request):
    """GET: pick the models and the image. POST: one job per model, then the result page
    (JSON callers get ``202`` with its ``url``)."""
    if request.method in ("GET", "HEAD"):
        return _render_pick(request, _chosen(request.GET.getlist("models")))
    model_ids = _chosen(request.POST.getlist("models"))
    try:
        jobs = _start(request, model_ids)
    except ApplicationError as exc:
        if _wants_json(request):
            return _error(exc)
        response = _render_pick(request, model_ids, error=exc.message, status=exc.status)
        for name, value in (exc.headers or {}).items():
            response[name] = value
        return response
    url = reverse("playground:compare_result", args=[",".join(str(j.pk) for j in jobs)])
    if _wants_json(request):
        body = {"url": url, "jobs": [str(j.pk) for j in jobs]}
        return JsonResponse(body, status=202, headers={"Location": url})
    return redirect(url)


def _start(request, model_ids: list[str]) -> list[Job]:
    """Check everything, count the tries, create the jobs in one transaction (all or none),
    enqueue them on commit. Raises ApplicationError with the status to answer."""
    picked = _checked_cards(model_ids)
    upload = request.FILES.get("image")
    if upload is None:
        raise ApplicationError(NO_IMAGE, code="missing_image", status=400, param="image")
    if upload.size > settings.VITRINE_MAX_UPLOAD_BYTES:
        message = too_large(upload.size, settings.VITRINE_MAX_UPLOAD_BYTES)
        raise ApplicationError(message, code="image_too_large", status=413, param="image")
    buckets = try_buckets(request)
    # Each model run is one free try, counted only for jobs made: out of tries is said
    # before the upload is read, and a refused image costs none. The count goes in the jobs'
    # transaction: a concurrent request of the same visitor that took the last tries since
    # the peek rolls these jobs back (their uploads deleted), so the limit holds.
    if ratelimit.peek(*buckets).remaining < len(picked):
        raise _not_enough_tries(buckets, len(picked), signed_in=request.user.is_authenticated)
    visitor = _visitor(request)
    image = upload.read()
    try:
        with transaction.atomic():  # one model refusing the image stores no job at all
            # Held to the free tries' queued bound as the try page is (one job per model).
            limits.free_tries_queued_check(
                queue=settings.VITRINE_INFERENCE_QUEUE, adding=len(picked)
            )
            jobs = [
                services.job_create(
                    card=card,
                    route=route,
                    image_bytes=image,
                    owner=visitor["owner"],
                    session_key=visitor.get("session_key", ""),
                )
                for card, route in picked
            ]
            counted = all([ratelimit.hit(*buckets).allowed for _ in picked])
            if not counted:
                transaction.set_rollback(True)
    except (ImageError, StorageUnavailable) as exc:
        error = upload_refused(exc)  # the API's 4xx for the image, its 503 for the storage
        if isinstance(exc, ImageError):
            error.param = "image"  # the form names its field
        raise error from None
    if not counted:
        for name in {job.image_name for job in jobs}:
            upload_discard(name)
        raise _not_enough_tries(buckets, len(picked), signed_in=request.user.is_authenticated)
    unqueued = [j for j in jobs if j.enqueued_at is None and services.job_abandon_unqueued(job=j)]
    if unqueued:
        for job in jobs:  # the others would run for a page that shows an error
            services.job_cancel(job=job)
        raise ApplicationError(
            QUEUE_UNAVAILABLE,
            code="queue_unavailable",
            status=503,
            type=SERVICE_UNAVAILABLE,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )
    return jobs


def _not_enough_tries(buckets, wanted: int, *, signed_in: bool) -> ApplicationError:
    room = ratelimit.peek(*buckets)
    wait = max(room.reset, 1)
    return ApplicationError(
        NOT_ENOUGH_TRIES.format(
            models=wanted,
            remaining=room.remaining,
            minutes=-(-wait // 60),
            more=MORE_TRIES[signed_in],
        ),
        code="rate_limit_exceeded",
        status=429,
        headers={"Retry-After": str(wait)},
    )


def _job_ids(raw: str) -> list[uuid.UUID]:
    parts = raw.split(",")
    if not RUN_MIN <= len(parts) <= RUN_MAX:
        raise Http404("No such comparison.")
    try:
        ids = [uuid.UUID(part) for part in parts]
    except ValueError:
        raise Http404("No such comparison.") from None
    if len(set(ids)) != len(ids):
        raise Http404("No such comparison.")
    return ids


def _jobs_for_visitor(request, raw: str) -> list[Job]:
    ids = _job_ids(raw)
    visitor = _visitor(request, create=False)  # no session: no jobs, and no session row made
    if visitor is None:
        raise Http404("No such comparison for you.")
    found = {
        job.pk: job
        for job in Job.objects.select_related("card__organisation", "route").filter(
            pk__in=ids, **visitor
        )
    }
    if len(found) != len(ids):
        raise Http404("No such comparison for you.")
    return [found[pk] for pk in ids]


def _cost(job: Job) -> dict:
    """What the run cost: a free try costs nothing; the route's price is what an API call
    of the same image would cost."""
    price = job.route.price if job.route is not None else None
    free = not job.cost_ref
    amount = Decimal(0) if free or price is None else price
    return {
        "amount": money(amount),
        "text": format_usd(amount),
        "free_try": free,
        "price_per_image": money(price) if price is not None else None,
        "price_text": format_usd(price) if price is not None else "",
    }


def _latency(job: Job) -> dict:
    queue = queue_seconds(job.queued_at, job.started_at)
    model = model_seconds(job.timings) if job.status == JobStatus.SUCCEEDED else None
    return {
        "queue_ms": to_ms(queue) if queue is not None else None,
        "model_ms": to_ms(model) if model is not None else None,
    }


def compare_json(jobs: list[Job], *, threshold: float) -> dict:
    """The comparison's resource: a panel per model and, once every job is final, the
    matching of the boxes at ``threshold`` (playground/matching.py)."""
    done = all(job.is_final for job in jobs)
    shown = {
        job.card.model_id: public_detections(job.result, threshold=threshold) or []
        for job in jobs
        if job.status == JobStatus.SUCCEEDED
    }
    matching = match_detections(shown) if done and len(shown) >= 2 else None
    panels = []
    for job in jobs:
        model_id = job.card.model_id
        detections = shown.get(model_id, [])
        if matching is not None and model_id in matching["marks"]:
            detections = [
                {**d, **mark}
                for d, mark in zip(detections, matching["marks"][model_id], strict=True)
            ]
        panels.append(
            {
                "job": str(job.pk),
                "model": model_id,
                "name": job.card.display_name,
                "model_url": reverse(
                    "catalog:model_detail", args=[job.card.organisation.slug, job.card.slug]
                ),
                "status": job.status,
                "error": public_error(job.error_code, job.error_message),
                "width": job.width,
                "height": job.height,
                "image_url": reverse("playground:job_image", args=[job.pk]),
                "detections": detections,
                "only": matching["only"].get(model_id, 0) if matching else None,
                "latency": _latency(job),
                "cost": _cost(job),
                "untrained": job.weights_untrained,
            }
        )
    return {
        "status": "done" if done else "running",
        "threshold": threshold,
        "floor": settings.VITRINE_DETECTION_FLOOR,
        "iou_min": IOU_MIN,
        "panels": panels,
        "agreed": matching["agreed"] if matching else None,
        "groups": matching["groups"] if matching else [],
    }


def _threshold(request) -> float:
    raw = request.GET.get("threshold", "")
    floor = settings.VITRINE_DETECTION_FLOOR
    if not raw:
        return DEFAULT_THRESHOLD
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not floor <= value <= 1:  # also refuses nan
        raise ApplicationError(
            BAD_THRESHOLD.format(floor=floor), code="invalid_threshold", status=400,
            param="threshold",
        )  # fmt: skip
    return value


# The visitor's own jobs, page and JSON alike: a shared cache must not keep them.
@cache_control(private=True, max_age=0)
@require_safe
def compare_result(request, job_ids: str):
    """The side-by-side page, or (``Accept: application/json``) the resource it polls."""
    jobs = _jobs_for_visitor(request, job_ids)
    try:
        threshold = _threshold(request)
    except ApplicationError as exc:
        if _wants_json(request):
            return _error(exc)
        threshold = DEFAULT_THRESHOLD
    data = compare_json(jobs, threshold=threshold)
    if _wants_json(request):
        return JsonResponse(data)
    picked = ",".join(job.card.model_id for job in jobs)
    return render(
        request,
        "playground/compare_run.html",
        {"data": data, "jobs": jobs, "picked": picked, "running": data["status"] != "done"},
    )
