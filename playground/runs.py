"""Runs people keep and share: the permalink's record, "My runs", the public toggle and the
downloads (JSON, COCO, CSV, PNG).

A run is a ``Job``. Its permalink (``/playground/jobs/<id>``) is private to its owner (the
signed-in user, whose API-key jobs are theirs too, or the anonymous session that made a
try) unless the owner makes it public; a private run answers 404 to everyone else, for the
page, the image and every export alike. Exports honour the threshold the run used
(``parameters.threshold``, else the API's default 0.5), or a valid ``?threshold=``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.contrib import messages
from django.core.cache import cache
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header, urlencode
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_POST, require_safe
from PIL import Image

from billing.models import Charge
from catalog import ratelimit
from catalog.errors import NOT_FOUND_ERROR, ApplicationError
from catalog.pricing import format_usd
from playground import exports, services
from playground.api import parse_threshold
from playground.models import Job, JobStatus
from playground.palette import label_colour_index
from playground.runtime import ImageError, decode_image
from playground.runtime.labels import label_map
from playground.selectors import Viewer, job_for_viewer, runs_page
from playground.serializers import DEFAULT_THRESHOLD, job_data, public_detections
from playground.storage import STORAGE_DOWN, StorageUnavailable, upload_read

logger = logging.getLogger(__name__)

RUNS_PER_PAGE = 20
EXPORT_FORMATS = ("json", "coco", "csv", "png")
RUN_NOT_FOUND = "No such run, or it is private."
UNKNOWN_FORMAT = "Unknown export format '{fmt}': use json, coco, csv or png."
NOT_FINISHED = "The run is {status}: only a succeeded run has detections to export."
IMAGE_DELETED = (
    "This run's image was deleted on {date} (uploads are kept for a limited time); "
    "its JSON, COCO and CSV exports remain."
)
IMAGE_GONE = "This run's image is gone; its JSON, COCO and CSV exports remain."
# Large exports (``_large_export_refused``): a drawing of a picture over this many pixels is
# counted against the client network's VITRINE_LARGE_EXPORTS_PER_MINUTE.
LARGE_EXPORT_PIXELS = 4_000_000
LARGE_EXPORTS_LIMITED = (
    "Too many PNG exports of large pictures from your network ({limit} a minute): retry in "
    "{seconds} s. An export already drawn is served again at once."
)
# Drawn PNG exports are kept in the shared cache this long, when at most this large.
EXPORT_CACHE = "export"
EXPORT_CACHE_SECONDS = 3600
EXPORT_CACHE_MAX_BYTES = 8 * 1024 * 1024
BAD_MAX_WIDTH = "'max_width' must be a whole number of pixels from {low} to {high}."
MAX_WIDTH_RANGE = (16, 8192)
BAD_MIN_SIZE = "'min_size' must be a whole number of pixels from {low} to {high}."
MIN_SIZE_RANGE = (1, 1280)
# The permalink page shows the PNG at most this wide (a download is full size), and a
# picture whose longer side is shorter enlarged by a whole factor to at least this (square
# pixels, labels as legible as on any picture), as the try page's canvas draws it.
PAGE_IMAGE_WIDTH = 1280
PAGE_IMAGE_MIN_SIDE = 320
BAD_VISIBILITY = "Send public=1 to make the run public or public=0 to make it private."
MADE_PUBLIC = "This run is public: anyone with its link can see it and download its exports."
MADE_PRIVATE = "This run is private: only you can see it."
IMAGE_DELETED_NOW = "This run's image is deleted; its detections and exports remain."
IMAGE_IN_USE = "This run is {status}: its image can be deleted once it has finished."


def _error(message: str, *, status: int, code: str, param: str | None = None) -> JsonResponse:
    """The API's one JSON error shape (catalog/errors.py)."""
    kind = NOT_FOUND_ERROR if status == 404 else None
    error = ApplicationError(message, code=code, status=status, type=kind, param=param)
    return JsonResponse(error.as_dict(), status=status)


def run_threshold(job: Job) -> float:
    """The threshold the run was made with (the API stores it; a try uses the default)."""
    value = job.parameters.get("threshold") if isinstance(job.parameters, dict) else None
    return float(value) if isinstance(value, int | float) else DEFAULT_THRESHOLD


def max_width_param(raw: str | None) -> int | None:
    """``?max_width=`` of the PNG: None (full size) or a width in ``MAX_WIDTH_RANGE``."""
    if raw is None or raw == "":
        return None
    low, high = MAX_WIDTH_RANGE
    if not raw.isdigit() or not low <= int(raw) <= high:
        message = BAD_MAX_WIDTH.format(low=low, high=high)
        raise ApplicationError(message, code="invalid_max_width", param="max_width")
    return int(raw)


def min_size_param(raw: str | None) -> int | None:
    """``?min_size=`` of the PNG: None (as it is) or the shortest longer side, in
    ``MIN_SIZE_RANGE``, a smaller picture is enlarged to by a whole factor."""
    if raw is None or raw == "":
        return None
    low, high = MIN_SIZE_RANGE
    if not raw.isdigit() or not low <= int(raw) <= high:
        message = BAD_MIN_SIZE.format(low=low, high=high)
        raise ApplicationError(message, code="invalid_min_size", param="min_size")
    return int(raw)


def enlargement(size: tuple[int, int], min_side: int | None) -> int:
    """The whole factor that brings a picture's longer side to at least ``min_side``."""
    longer = max(size)
    if not min_side or longer <= 0 or longer >= min_side:
        return 1
    return -(-min_side // longer)


def page_image_size(job: Job) -> tuple[int, int, int]:
    """The permalink PNG's (width, height, enlargement) for the page's ``<img>``, as
    ``_png`` and ``exports.png_render`` size it."""
    factor = enlargement((job.width, job.height), PAGE_IMAGE_MIN_SIDE)
    width, height = job.width * factor, job.height * factor
    if width > PAGE_IMAGE_WIDTH:
        width, height = PAGE_IMAGE_WIDTH, max(1, round(height * PAGE_IMAGE_WIDTH / width))
    return width, height, factor


def run_record(request, job: Job, *, owner: bool, threshold: float) -> dict:
    """The JSON export: the API's job resource (model and revision, parameters' threshold
    and box format, price version, cost, weights, timings, detections) plus the permalink.
    Someone else's public run hides the owner's wallet balance and webhook."""
    record = dict(job_data(job, request=request, threshold=threshold))
    if not owner:
        record["balance"] = None
        record["webhook"] = None
    record["parameters"] = job.parameters or {}
    record["public"] = job.is_public
    record["permalink"] = request.build_absolute_uri(reverse("playground:job", args=[job.pk]))
    return record


def _box_format(job: Job) -> str:
    return "float" if (job.parameters or {}).get("box_format") == "float" else "int"


def _threshold_query(threshold: float, run: float) -> dict[str, str]:
    """The query that carries a page's threshold to its downloads (none for the run's)."""
    return {} if threshold == run else {"threshold": f"{threshold:g}"}


def permalink_context(request, job: Job, *, owner: bool) -> dict:
    """What the permalink page (templates/playground/job.html) shows."""
    run = run_threshold(job)
    threshold_error = ""
    try:
        threshold = parse_threshold(request.GET.get("threshold"), default=run)
    except ApplicationError as exc:
        threshold, threshold_error = run, exc.message
    record = run_record(request, job, owner=owner, threshold=threshold)
    shown = _threshold_query(threshold, run)
    query = f"?{urlencode(shown)}" if shown else ""
    has_size = bool(job.width and job.height)
    image_width, image_height, factor = page_image_size(job) if has_size else (0, 0, 1)
    sizing = {"max_width": PAGE_IMAGE_WIDTH}
    if factor > 1:
        sizing["min_size"] = PAGE_IMAGE_MIN_SIDE
    return {
        "job": job,
        "owner": owner,
        "record": record,
        "data": record,  # the provenance line reads data.weights
        "threshold": threshold,
        "run_threshold": run,
        "threshold_error": threshold_error,
        # The visibility form sends it back, so the page reloads at the threshold it showed.
        "threshold_param": shown.get("threshold", ""),
        # The boxes as the JSON and CSV exports give them: the API's integer pixels, unless
        # the run asked for box_format=float.
        "detections": [
            {**item, "colour_index": label_colour_index(item["label"])}
            for item in public_detections(
                job.result, threshold=threshold, box_format=_box_format(job)
            )
        ]
        if job.status == JobStatus.SUCCEEDED and job.result is not None
        else None,
        "timings": _timings(job.timings or {}),
        "exports": [
            (fmt, reverse("playground:job_export", args=[job.pk, fmt]) + query)
            for fmt in EXPORT_FORMATS
        ],
        "image_url": reverse("playground:job_export", args=[job.pk, "png"])
        + f"?{urlencode({**shown, **sizing})}",
        "image_width": image_width,
        "image_height": image_height,
        "image_enlarged": factor > 1,
    }


# The worker's stages in the order they run (PostgreSQL's jsonb keeps no key order).
# queue (seconds waited) and load (the worker loaded the model for it) come first.
STAGES = ("queue", "load", "decode", "preprocess", "forward", "postprocess", "provider")


def _timings(timings: dict) -> list[str]:
    """``decode 4 ms``, ... in stage order, then ``batch of 3`` (the worker's batch size)."""
    shown = [
        f"{name} {round(float(timings[name]) * 1000):,} ms"
        for name in (*STAGES, *sorted(set(timings) - {*STAGES, "batch"}))
        if isinstance(timings.get(name), int | float)
    ]
    if isinstance(timings.get("batch"), int):
        shown.append(f"batch of {timings['batch']}")
    return shown


@dataclass
class RunRow:
    job: Job
    detections: int | None
    cost: str


def _cost(job: Job) -> str:
    if job.charge_amount is None:
        return "free"
    if job.charge_status == Charge.Status.VOIDED:
        return "$0 (voided)"
    # The site's one money format (the dashboard, the run's page): $0.50, $1,000.
    return format_usd(Decimal(job.charge_amount))


# My runs' cursor: ``?before=`` (the "Older" link) or ``?after=`` ("Newer") the run
# ``<created_at>,<id>``, e.g. ``2026-12-03T14:02:05.123456Z,<uuid>`` (UTC, to the microsecond:
# the row's own value). Readable, and stable: it names a place in the list, not a count of
# rows before it, so runs made meanwhile neither repeat nor skip one.
CURSOR_PARAMS = ("before", "after")
CURSOR_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"
CURSOR_MAX = 80  # 27 + 1 + 36 characters
BAD_CURSOR = "That runs link was not a valid page of your runs: here are your newest."


def run_cursor(job: Job) -> str:
    """The cursor that names ``job``'s place in My runs."""
    return f"{job.created_at.astimezone(UTC):{CURSOR_TIME}},{job.pk}"


def parse_run_cursor(raw: str) -> tuple[datetime, uuid.UUID]:
    """``run_cursor``'s (created_at, id); ValueError for anything else."""
    if len(raw) > CURSOR_MAX or "," not in raw:
        raise ValueError(raw)
    when, _, pk = raw.partition(",")
    created_at = datetime.strptime(when, CURSOR_TIME).replace(tzinfo=UTC)
    return created_at, uuid.UUID(pk)


def _runs_url(carried: dict[str, list[str]], **cursor: str) -> str:
    """``/runs`` with the query the list was asked with (any filter) and ``cursor``."""
    query = {**carried, **{name: [value] for name, value in cursor.items()}}
    # ``:`` and ``,`` stay readable in the address bar (both are allowed in a query).
    text = urllib.parse.urlencode(query, doseq=True, safe=":,")
    return reverse("playground:runs") + (f"?{text}" if text else "")


# The viewer's own list: a shared cache must not give it to anyone else.
@cache_control(private=True, max_age=0)
@require_safe
def runs_list(request):
    """My runs: the viewer's runs (signed in: theirs, API calls included; anonymous: this
    session's tries), newest first, a page at a time by keyset (``selectors.runs_page``):
    "Older" and "Newer" carry a cursor, never a page number."""
    carried = {
        name: request.GET.getlist(name)
        for name in request.GET
        if name not in (*CURSOR_PARAMS, "page")
    }
    # ``?page=N`` was the OFFSET pages' link (until session 48): the first page, as the
    # list reads now (page N then held other runs each time one was made anyway).
    if "page" in request.GET:
        return redirect(_runs_url(carried))
    given = [name for name in CURSOR_PARAMS if name in request.GET]
    keys = {}
    try:
        if len(given) > 1:
            raise ValueError("before and after")
        for name in given:
            values = request.GET.getlist(name)
            if len(values) != 1:
                raise ValueError(name)
            keys[name] = parse_run_cursor(values[0])
    except ValueError:
        messages.info(request, BAD_CURSOR)
        return redirect(_runs_url(carried))
    viewer = Viewer.of(request)
    page = runs_page(viewer=viewer, limit=RUNS_PER_PAGE, **keys)
    if keys and not page.jobs:  # nothing older than the cursor now (runs deleted)
        return redirect(_runs_url(carried))
    rows = []
    for job in page.jobs:
        count = None
        if job.status == JobStatus.SUCCEEDED and job.result is not None:
            count = len(public_detections(job.result, threshold=run_threshold(job)))
        rows.append(RunRow(job=job, detections=count, cost=_cost(job)))
    context = {
        "rows": rows,
        "newer_url": _runs_url(carried, after=run_cursor(page.jobs[0])) if page.newer else "",
        "older_url": _runs_url(carried, before=run_cursor(page.jobs[-1])) if page.older else "",
    }
    return render(request, "playground/runs.html", context)


def _owned_job(request, job_id) -> Job:
    """The requester's own run, for its owner's buttons; 404 for anyone else, public or
    not (they are not told it exists)."""
    found = job_for_viewer(job_id=job_id, viewer=Viewer.of(request))
    if found is None or not found[1]:
        raise Http404(RUN_NOT_FOUND)
    return found[0]


@require_POST
def job_visibility(request, job_id):
    """The owner's "Make public" / "Make private" button (a CSRF-checked form)."""
    job = _owned_job(request, job_id)
    choice = request.POST.get("public")
    if choice not in ("0", "1"):
        return _error(BAD_VISIBILITY, status=400, code="invalid_visibility", param="public")
    services.job_set_public(job=job, public=choice == "1")
    messages.success(request, MADE_PUBLIC if job.is_public else MADE_PRIVATE)
    # Back to the page at the threshold it was showing (a bad value: the run's own).
    run = run_threshold(job)
    try:
        threshold = parse_threshold(request.POST.get("threshold"), default=run)
    except ApplicationError:
        threshold = run
    shown = _threshold_query(threshold, run)
    page = reverse("playground:job", args=[job.pk])
    return redirect(f"{page}?{urlencode(shown)}" if shown else page)


@require_POST
def job_image_delete(request, job_id):
    """The owner's "Delete image" button: the upload goes now, the detections stay."""
    job = _owned_job(request, job_id)
    try:
        deleted = services.job_image_delete(job=job)
    except StorageUnavailable:
        logger.warning("run %s: the storage refused to delete its image", job.pk, exc_info=True)
        messages.error(request, STORAGE_DOWN)
        return redirect("playground:job", job.pk)
    if not deleted:
        messages.error(request, IMAGE_IN_USE.format(status=job.get_status_display().lower()))
    else:
        messages.success(request, IMAGE_DELETED_NOW)
    return redirect("playground:job", job.pk)


def _download(body: bytes | str, *, job: Job, ext: str, content_type: str) -> HttpResponse:
    response = HttpResponse(body, content_type=content_type)
    name = f"{job.card.slug}-{str(job.pk)[:8]}.{ext}"
    response["Content-Disposition"] = content_disposition_header(True, name)
    # A run made private again must not stay readable from a shared cache.
    response["Cache-Control"] = "private, max-age=60"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@require_safe
def job_export(request, job_id, fmt: str):
    """``/playground/jobs/<id>/export.<fmt>``: the run as JSON, COCO, CSV or a PNG with
    its boxes drawn. Errors in the API's JSON error shape."""
    found = job_for_viewer(job_id=job_id, viewer=Viewer.of(request))
    if found is None:
        return _error(RUN_NOT_FOUND, status=404, code="job_not_found")
    job, owner = found
    if fmt not in EXPORT_FORMATS:
        return _error(UNKNOWN_FORMAT.format(fmt=fmt[:20]), status=404, code="unknown_format")
    try:
        threshold = parse_threshold(request.GET.get("threshold"), default=run_threshold(job))
        max_width = max_width_param(request.GET.get("max_width")) if fmt == "png" else None
        min_size = min_size_param(request.GET.get("min_size")) if fmt == "png" else None
    except ApplicationError as exc:
        return JsonResponse(exc.as_dict(), status=exc.status)
    if fmt == "json":
        record = run_record(request, job, owner=owner, threshold=threshold)
        body = json.dumps(record, indent=2, ensure_ascii=False)
        return _download(body, job=job, ext="json", content_type="application/json")
    if job.status != JobStatus.SUCCEEDED:
        return _error(NOT_FINISHED.format(status=job.status), status=409, code="job_not_succeeded")
    if fmt == "csv":
        rows = public_detections(job.result, threshold=threshold, box_format=_box_format(job))
        return _download(
            exports.csv_text(rows), job=job, ext="csv", content_type="text/csv; charset=utf-8"
        )
    detections = public_detections(job.result, threshold=threshold, box_format="float")
    if fmt == "coco":
        document = exports.coco_document(
            detections=detections,
            width=job.width,
            height=job.height,
            file_name=f"{job.pk}{_image_ext(job)}",
            label_map=label_map(services.card_spec(job.card)),
            info={
                "description": f"{job.card.model_id} on run {job.pk}, threshold {threshold:g}",
                "url": request.build_absolute_uri(reverse("playground:job", args=[job.pk])),
                "version": job.weights_revision or job.model_revision,
                "date_created": job.created_at.isoformat(),
            },
        )
        return _download(
            json.dumps(document), job=job, ext="coco.json", content_type="application/json"
        )
    return _png(
        request, job, detections, threshold=threshold, max_width=max_width, min_size=min_size
    )


def _image_ext(job: Job) -> str:
    return "." + job.image_name.rsplit(".", 1)[-1] if "." in job.image_name else ""


def _png(
    request,
    job: Job,
    detections: list[dict],
    *,
    threshold: float,
    max_width: int | None,
    min_size: int | None = None,
) -> HttpResponse:
    if job.image_deleted_at is not None:
        message = IMAGE_DELETED.format(date=f"{job.image_deleted_at:%Y-%m-%d}")
        return _error(message, status=410, code="image_deleted")
    if not job.image_name:  # purged by retention: nothing cached is served either
        return _error(IMAGE_GONE, status=410, code="image_deleted")
    # The same drawing asked again (a page's visitors, a retried download) is not drawn
    # again; and a shrunk picture (the permalink page's, ``max_width``) is decoded and
    # shrunk once and kept, then drawn on at any threshold. Only a decoding of the upload
    # counts against the client's large exports: a page moved through thresholds does not.
    key = _export_key(job, threshold=threshold, max_width=max_width, min_size=min_size)
    cached = cache_get(key, what=EXPORT_CACHE)
    if cached is not None:
        return _download(cached, job=job, ext="png", content_type="image/png")
    base_key = _export_key(job, threshold=None, max_width=max_width, min_size=min_size)
    base = cache_get(base_key, what=EXPORT_CACHE) if max_width else None
    if base is not None:
        mode, size, pixels, factor, enlarged = base
        canvas = Image.frombytes(mode, size, pixels)
    else:
        refused = _large_export_refused(request, job)
        if refused is not None:
            return refused
        try:
            data = upload_read(job.image_name)
        except FileNotFoundError:
            return _error(IMAGE_GONE, status=410, code="image_deleted")
        except StorageUnavailable:
            logger.exception("job %s: the upload storage failed", job.pk)
            return _error(STORAGE_DOWN, status=503, code="storage_unavailable")
        try:
            # The worker's own decoding: the upright pixels the boxes were computed on.
            image = decode_image(data, max_pixels=settings.VITRINE_MAX_IMAGE_PIXELS).image
        except ImageError:  # accepted when the job was made, so only a damaged stored file
            logger.exception("job %s: the stored upload does not decode", job.pk)
            return _error(IMAGE_GONE, status=410, code="image_deleted")
        enlarged = enlargement(image.size, min_size)
        if enlarged > 1:  # every pixel a square of enlarged x enlarged, the boxes with them
            image = image.resize(
                (image.width * enlarged, image.height * enlarged), Image.Resampling.NEAREST
            )
        canvas, factor = exports.png_canvas(image, max_width=max_width)
        pixels = canvas.tobytes()
        if max_width and len(pixels) <= EXPORT_CACHE_MAX_BYTES:
            cache_set(
                base_key,
                (canvas.mode, canvas.size, pixels, factor, enlarged),
                seconds=EXPORT_CACHE_SECONDS,
                what=EXPORT_CACHE,
            )
    if enlarged > 1:
        detections = [
            {**item, "box": {side: float(value) * enlarged for side, value in item["box"].items()}}
            for item in detections
        ]
    body = exports.png_draw(canvas, detections, factor)
    if len(body) <= EXPORT_CACHE_MAX_BYTES:
        cache_set(key, body, seconds=EXPORT_CACHE_SECONDS, what=EXPORT_CACHE)
    return _download(body, job=job, ext="png", content_type="image/png")


def _large_export_refused(request, job: Job) -> JsonResponse | None:
    """429 when this client network has drawn its minute's large exports (a drawing costs
    the web worker ~55 ns a pixel, whatever the file's size: a 5 kB PNG of 40 megapixels
    held one for 2.2 s, and 16 clients asking for it again and again held every page for
    15 s, session 48's probe); None to go on (the drawing is counted)."""
    if (job.width or 0) * (job.height or 0) <= LARGE_EXPORT_PIXELS:
        return None
    bucket = ratelimit.Bucket(
        "export-large",
        ratelimit.client_network(request),
        settings.VITRINE_LARGE_EXPORTS_PER_MINUTE,
        60,
    )
    decision = ratelimit.hit(bucket)
    if decision.allowed:
        return None
    message = LARGE_EXPORTS_LIMITED.format(
        limit=settings.VITRINE_LARGE_EXPORTS_PER_MINUTE, seconds=decision.retry_after
    )
    response = _error(message, status=429, code="rate_limit_exceeded")
    for name, value in decision.headers().items():
        response[name] = value
    return response


def _export_key(job: Job, *, threshold: float | None, max_width, min_size) -> str:
    """The cache key of a drawn export: the run, the stored upload (a new one is another
    picture) and what the drawing was asked with (``threshold`` None: the picture it is
    drawn on, shrunk)."""
    what = f"{job.pk}|{job.image_sha256 or job.image_name}|{threshold!r}|{max_width}|{min_size}"
    return "vitrine:export-png:" + hashlib.sha256(what.encode()).hexdigest()[:40]


def cache_get(key: str, *, what: str):
    """``key``'s value in the shared cache, or None: the cache is a shortcut, and an outage
    costs the work it saves (a drawing, a decoding), never the answer."""
    try:
        return cache.get(key)
    except Exception:
        logger.warning("%s cache unavailable", what, exc_info=True)
        return None


def cache_set(key: str, value, *, seconds: int, what: str) -> None:
    """Keep ``value`` under ``key`` for ``seconds``, if the cache can be reached."""
    try:
        cache.set(key, value, seconds)
    except Exception:
        logger.warning("%s cache unavailable", what, exc_info=True)
