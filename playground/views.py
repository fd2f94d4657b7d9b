"""The try-it page: upload an image in the browser, a worker runs the detector, boxes appear.

Playground runs are free and limited per hour (``VITRINE_PLAYGROUND_PER_HOUR``) per client
IP and per signed-in user, counted in the shared limiter (catalog/ratelimit.py), except a
signed-in visitor's whose wallet holds the price: they pay it like an API call
(playground/demo.py). Runs belong to the signed-in user or, for anonymous visitors, to the
session, and only their owner can see them unless the owner makes them public
(playground/runs.py). The API's pipeline (playground/pipeline.py) creates and queues them,
and the API's job serializer describes them.
"""

from __future__ import annotations

import hmac
import io
import logging
import mimetypes
import time

from django.conf import settings
from django.contrib import messages
from django.db import connection, transaction
from django.db.models import Q
from django.http import FileResponse, Http404, HttpResponse, HttpResponseNotModified, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import parse_etags
from django.views.decorators.cache import cache_control
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_safe
from prometheus_client.exposition import choose_encoder

from billing.services.ledger import InsufficientCredits
from catalog import ratelimit
from catalog.errors import ApplicationError
from catalog.lifecycle import (
    CALLABLE,
    card_callable_check,
    lifecycle_apply,
    lifecycle_remember,
    status_filter,
)
from catalog.models import ModelCard
from catalog.views import renamed_redirect
from playground import demo, idempotency, limits, metrics, pipeline, public_image, runs
from playground.api import parse_threshold
from playground.models import Job
from playground.runtime import ImageError
from playground.selectors import TRIES_SESSION, Viewer, job_for_viewer
from playground.serializers import job_data
from playground.services import UPRIGHT_CACHE_KEY
from playground.storage import (
    STORAGE_DOWN,
    StorageUnavailable,
    upload_discard,
    upload_open,
    upload_read,
)

logger = logging.getLogger(__name__)

RATE_LIMITED = "You have run {limit} free tries this hour; try again in {minutes} min, or {more}."
# What else runs more, by who asks: a signed-in visitor was told to sign up (session 47).
MORE_TRIES = {
    False: "sign up for an API key to run more",
    True: "top up your wallet: your tries are then paid from it",
}
NOT_CALLABLE = "{name} is {status}: it cannot be tried yet."
NO_IMAGE = "Choose an image (JPEG, PNG, WebP or GIF)."
TOO_LARGE = "That file is {size}; the limit is {limit}."
# Decimal units, as a file manager and the pages' scripts write a file's size (playground.js
# and compare.js write the same words for a file they refuse before sending it).
SIZE_UNITS = ((1000, "kB"), (1000**2, "MB"), (1000**3, "GB"))


def file_size(n: int, decimals: int = 1) -> str:
    """``n`` bytes as people read it: 999 bytes, 1 kB, 12.6 MB; rounded half up, exactly,
    to ``decimals`` places, trailing zeros dropped (999,960 bytes is 1 MB, not 1,000 kB)."""
    if n < 1000:
        return f"{n:,} byte{'' if n == 1 else 's'}"
    scale = 10**decimals
    for unit, name in SIZE_UNITS:
        scaled = (n * scale * 2 + unit) // (2 * unit)
        whole, part = divmod(scaled, scale)
        fraction = str(part).zfill(decimals).rstrip("0")
        text = f"{whole:,}{'.' + fraction if fraction else ''} {name}"
        if scaled < 1000 * scale:
            break
    return text


def file_sizes(size: int, limit: int) -> tuple[str, str]:
    """A size and the limit it is over, with as many decimals as tell them apart (20.98 MB
    against 20.97 MB, not 21 MB against 21 MB)."""
    for decimals in range(1, 10):
        pair = file_size(size, decimals), file_size(limit, decimals)
        if pair[0] != pair[1]:
            return pair
    return f"{size:,} bytes", f"{limit:,} bytes"


def too_large(size: int, limit: int) -> str:
    """The refusal of an upload of ``size`` bytes over ``limit``, in human units."""
    shown, most = file_sizes(size, limit)
    return TOO_LARGE.format(size=shown, limit=most)


# How long /healthz waits for a pooled connection: a load balancer's probe must get its
# answer inside its own timeout, not after the requests' 10 s pool wait.
HEALTH_DB_WAIT = 2.0
DATABASE_DOWN = "The database cannot be reached."


@csrf_exempt  # reads only: another method is a 405, not the CSRF check's 403
@require_safe
def healthz(request):
    """Liveness for load balancers: the web process answers and reaches its database; 503
    in JSON, at once, when it cannot (an HTML 500 after the pool's 10 s wait, before)."""
    try:
        _database_answers()
    except Exception as exc:  # any failure to reach it: psycopg's, the pool's, Django's
        logger.warning("healthz: %s", exc)
        response = JsonResponse({"status": "unavailable", "error": DATABASE_DOWN}, status=503)
        response["Retry-After"] = "5"
        response["Cache-Control"] = "no-store"
        return response
    return JsonResponse({"status": "ok"})


METRICS_TOKEN_WRONG = (
    "Send the metrics token (VITRINE_METRICS_TOKEN) as 'Authorization: Bearer <token>'."
)


@csrf_exempt  # reads only: another method is a 405, not the CSRF check's 403
@require_safe
def metrics_view(request):
    """Prometheus's scrape (playground/metrics.py): the token's holder only; no page at all
    (404) where no token is configured."""
    token = settings.VITRINE_METRICS_TOKEN
    if not token:
        raise Http404
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        error = ApplicationError(METRICS_TOKEN_WRONG, "invalid_metrics_token", status=401)
        response = JsonResponse(error.as_dict(), status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        response["Cache-Control"] = "no-store"
        return response
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = HttpResponse(encoder(metrics.registry(_database_answers)), content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response


def _database_answers() -> None:
    pool = connection.pool if connection.vendor == "postgresql" else None
    if pool is not None and connection.connection is None:
        # A connection from the pool, waited for HEALTH_DB_WAIT at most (Django's own
        # checkout waits the pool's timeout), given straight back.
        pool.open()
        held = pool.getconn(timeout=HEALTH_DB_WAIT)
        try:
            _select_1_within(held, HEALTH_DB_WAIT)
        finally:
            pool.putconn(held)  # closed when it failed: the pool drops it
        return
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return
    connection.ensure_connection()
    try:
        _select_1_within(connection.connection, HEALTH_DB_WAIT)
    except Exception:
        # Closed by the check; Django, which did not see the error, would keep it until
        # CONN_MAX_AGE: the next request connects anew.
        connection.close()
        raise


def _select_1_within(conn, timeout: float) -> None:
    """``SELECT 1`` on a psycopg connection, its answer awaited ``timeout`` seconds at most.
    A link that went silent (a partition, a half-open connection: no answer and nothing
    closed) held the probe for as long as it lasted (a 10 s silence: a 9.9 s 200, a 60 s
    one: 60 s; session 43) where a 503 within HEALTH_DB_WAIT is promised: the connection
    is closed instead (it is never used again) and TimeoutError raised. Any failure closes
    it: the check bypasses psycopg's and Django's own error handling."""
    import select

    from psycopg import pq

    pgconn = conn.pgconn
    try:
        deadline = time.monotonic() + timeout
        pgconn.send_query(b"SELECT 1")
        poller = select.poll()
        poller.register(pgconn.socket, select.POLLIN)
        while True:
            pgconn.flush()
            pgconn.consume_input()
            if not pgconn.is_busy():
                break
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                raise TimeoutError(f"no answer from the database within {timeout} s")
        failed = None
        while (result := pgconn.get_result()) is not None:
            if result.status != pq.ExecStatus.TUPLES_OK:
                failed = result.error_message.decode(errors="replace") or "SELECT 1 failed"
        if failed:
            raise RuntimeError(failed)
    except BaseException:
        conn.close()
        raise


def _visitor(request, *, create: bool = True) -> dict | None:
    """Who owns playground jobs made by this request: the user, else the session. A page
    that only reads passes ``create=False``: a visitor with no session yet owns nothing
    (None) and is given no session row (every crawler's view of a try page made one)."""
    if request.user.is_authenticated:
        return {"owner": request.user}
    if not request.session.session_key:
        if not create:
            return None
        request.session.save()
    key = request.session.session_key
    if create and request.session.get(TRIES_SESSION) != key:
        # Kept in the session's data, which signing in keeps while it changes the key: the
        # runs made under it become the user's then (selectors.session_runs_adopt).
        request.session[TRIES_SESSION] = key
    return {"owner": None, "session_key": key}


def _get_job_for_visitor(request, job_id) -> tuple[Job, bool]:
    """The job and whether the visitor owns it: its owner's, or public (playground/runs.py);
    404 for a private job of someone else."""
    found = job_for_viewer(job_id=job_id, viewer=Viewer.of(request))
    if found is None:
        raise Http404("No such job for you.")
    return found


def _wants_json(request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _refuse(request, card, message: str, status: int, code: str):
    if _wants_json(request):
        # The API's one error shape, so a script reads the page's errors like the API's.
        error = ApplicationError(
            message, code=code, status=status, type="service_unavailable" if status == 503 else None
        )
        return JsonResponse(error.as_dict(), status=status)
    messages.error(request, message)
    return redirect("playground:try", card.organisation.slug, card.slug)


CSRF_FAILED = (
    "The form's security token is missing or stale (CSRF check failed): reload the page and "
    "send it again."
)


def csrf_failure(request, reason: str = ""):
    """``CSRF_FAILURE_VIEW``: a script or page that asks for JSON (the try page's fetch,
    ``Accept: application/json``) gets the refusal in the API's one error shape; a browser
    form, the site's page (templates/403_csrf.html: reload and send again; allow cookies
    when the browser sent none)."""
    if _wants_json(request):
        error = ApplicationError(CSRF_FAILED, code="csrf_failed", status=403)
        return JsonResponse(error.as_dict(), status=403)
    from django.middleware.csrf import REASON_NO_CSRF_COOKIE

    return render(
        request, "403_csrf.html", {"no_cookie": reason == REASON_NO_CSRF_COOKIE}, status=403
    )


# It lists this visitor's recent tries: never kept by a shared cache.
@cache_control(private=True, max_age=0)
@require_http_methods(["GET", "HEAD", "POST"])
def try_model(request, org: str, name: str):
    card = (
        ModelCard.objects.published()
        .select_related("organisation", "task")
        .filter(organisation__slug=org, slug=name)
        .first()
    )
    if card is None:
        renamed = request.method in ("GET", "HEAD") and renamed_redirect(
            request, f"{org}/{name}", url_name="playground:try"
        )
        if renamed:
            return renamed
        raise Http404("No such model.")
    lifecycle_remember(request, card)  # Deprecation/Sunset/Link, as the API sends them
    # The API's one check (catalog/lifecycle.py): coming soon 409, retired 410 naming the
    # replacement; the page and the API cannot disagree.
    try:
        card_callable_check(card)
        refusal = None
    except ApplicationError as exc:
        refusal = exc
    if request.method in ("GET", "HEAD"):  # HEAD: GET's answer without its body
        visitor = _visitor(request, create=False)
        recent = (
            Job.objects.filter(card=card, **visitor).order_by("-created_at")[:5] if visitor else []
        )
        # A retired model's page is gone (410) and says what replaces it; a coming-soon one
        # is a page about what is coming (200).
        status = refusal.status if refusal is not None and refusal.status == 410 else 200
        return lifecycle_apply(request, render(
            request,
            "playground/try.html",
            {"card": card, "callable": refusal is None, "recent": recent,
             "refusal": refusal.message if refusal is not None else "",
             "alternatives": _alternatives(card) if refusal is not None else []},
            status=status,
        ))  # fmt: skip
    if refusal is not None:
        return lifecycle_apply(
            request, _refuse(request, card, refusal.message, refusal.status, refusal.code)
        )
    try:
        threshold = parse_threshold(request.POST.get("threshold"))
    except ApplicationError as exc:
        return _refuse(request, card, exc.message, exc.status, exc.code)
    route = demo.own_route(card)
    # A signed-in visitor whose wallet covers the run pays it like an API call; everyone
    # else spends a free try (playground/demo.py), counted only for a job made: a refused
    # upload (a BMP, an empty file, a pixel bomb) or an outage costs no try.
    paid = demo.wallet_pays(request, route)
    buckets = [] if paid else demo.try_buckets(request)
    if buckets:
        room = ratelimit.peek(*buckets)  # out of tries: said before the upload is read
        if not room.allowed:
            return _rate_limited(request, card, room)
    upload = request.FILES.get("image")
    if upload is None:
        return _refuse(request, card, NO_IMAGE, 400, "missing_image")
    if upload.size > settings.VITRINE_MAX_UPLOAD_BYTES:
        message = too_large(upload.size, settings.VITRINE_MAX_UPLOAD_BYTES)
        return _refuse(request, card, message, 413, "image_too_large")
    image = upload.read()
    try:
        # The API's pipeline (playground/pipeline.py): the same upload checks, job row and
        # enqueue as POST /v1/inference; a paid run also reserves its price there.
        if paid:
            limits.paid_try_check(request, card)  # 429: the account's or model's minute
            # The page's script sends one Idempotency-Key per run it means: an upload whose
            # answer the network lost, sent again by Run, finds the job it made (one charge).
            try:
                job = pipeline.job_submit(
                    request=request, card=card, route=route, image=image,
                    threshold=threshold, flavour="playground",
                    idempotency_key=idempotency.key_from(request),
                ).job  # fmt: skip
            except InsufficientCredits:
                # The wallet covered the run when this request was read, and no longer did
                # when its price was reserved (another tab's run took it): the free try a
                # visitor with that wallet is offered, not a 402 beside "N free tries left".
                paid = False
        if not paid:
            buckets = buckets or demo.try_buckets(request)
            room = ratelimit.peek(*buckets)
            if not room.allowed:
                raise _OutOfTries(room)
            job = _free_try(request, card, route, image, threshold, buckets)
    except _OutOfTries as exc:
        return _rate_limited(request, card, exc.decision)
    except ApplicationError as exc:
        response = _refuse(request, card, exc.message, exc.status, exc.code)
        for header, value in exc.headers.items():
            response[header] = value
        return response
    url = reverse("playground:job", args=[job.pk])
    if _wants_json(request):
        return JsonResponse(job_json(job, request=request), status=202, headers={"Location": url})
    return redirect(url)


class _OutOfTries(Exception):
    def __init__(self, decision: ratelimit.Decision):
        self.decision = decision


def _free_try(request, card, route, image: bytes, threshold: float, buckets) -> Job:
    """A free try's job, its try counted in the same step. The job row and the count go
    together: the row is made first (the upload checked and stored), the try counted inside
    its transaction, and a count refused (a concurrent request of the same visitor took the
    last try since the peek) rolls the row back, its message unsent and its upload deleted.
    So a refused upload costs nothing and the limit holds under any concurrency."""
    visitor = _visitor(request)  # a new session's row outside it: a rollback keeps it
    with transaction.atomic():
        job = pipeline.try_submit(
            card=card, route=route, image=image, threshold=threshold, visitor=visitor
        ).job
        decision = ratelimit.hit(*buckets)
        if not decision.allowed:
            transaction.set_rollback(True)
    if not decision.allowed:
        upload_discard(job.image_name)
        raise _OutOfTries(decision)
    # The message was sent at the commit; inside the block try_submit's own check ran
    # before it. A broker that refused it fails the job at once, as outside a transaction.
    pipeline._queued_check(job)
    return job


def _rate_limited(request, card, decision: ratelimit.Decision):
    message = RATE_LIMITED.format(
        limit=decision.limit,
        minutes=-(-decision.retry_after // 60),
        more=MORE_TRIES[request.user.is_authenticated],
    )
    response = _refuse(request, card, message, 429, "rate_limit_exceeded")
    response["Retry-After"] = str(decision.retry_after)
    return response


def job_json(job: Job, request=None) -> dict:
    """The page's job JSON: the API's job resource (``JobSerializer``, the one serializer)
    with every kept detection, since the page's threshold slider and class filter re-filter
    them without a new run; ``url`` is the page's own permalink (a visitor has no API key
    for ``/v1/jobs``), beside the API's (``api_url``), the upload and the image's size."""
    data = job_data(job, request=request, threshold=0.0)
    return {
        **data,
        "url": reverse("playground:job", args=[job.pk]),
        "api_url": data["url"],
        "image_url": reverse("playground:job_image", args=[job.pk]),
        "width": job.width,
        "height": job.height,
    }


# A run's page is its owner's (or shown to strangers without the owner's parts): never
# kept by a shared cache.
@cache_control(private=True, max_age=0)
@require_safe
def job_detail(request, job_id):
    job, owner = _get_job_for_visitor(request, job_id)
    if _wants_json(request):
        data = job_json(job, request=request)
        if not owner:  # someone else's public run: not the owner's wallet or webhook
            data["balance"] = data["webhook"] = None
        response = JsonResponse(data)
        response["Cache-Control"] = "private, no-store"  # polled while the job runs
        return response
    context = runs.permalink_context(request, job, owner=owner)
    context.update(_page_picture(job, context["detections"]))
    return render(request, "playground/job.html", context)


def _alternatives(card: ModelCard) -> list[ModelCard]:
    """Up to three models of ``card``'s task that can be tried now, for a page whose model
    cannot (coming soon: the page was a dead end): live before beta before deprecated."""
    callable_now = Q()
    for status in CALLABLE:
        callable_now |= status_filter(status)
    cards = (
        ModelCard.objects.published()
        .filter(callable_now, task_id=card.task_id)
        .exclude(pk=card.pk)
        .select_related("organisation")
    )
    rank = {status: i for i, status in enumerate(("live", "beta", "deprecated"))}
    return sorted(cards, key=lambda c: (rank.get(c.status, 9), c.display_name.lower()))[:3]


# The permalink's picture is the run's own image (``job_image``: the upload, or its copy
# without metadata for a stranger), shown no taller than this, with the boxes and labels
# drawn over it by the page (templates/playground/job.html): labels in the page's own
# 12 px type whatever the picture's scale. A PNG drawn by the server and shrunk to the
# screen took its labels down to 5 or 6 px (a 360 px phone; a 300x2000 picture at 1280).
PAGE_IMAGE_MAX_HEIGHT = 720


def _percent(value: float, whole: int) -> str:
    return f"{min(max(value / whole * 100, 0.0), 100.0):.3f}"


def _page_picture(job: Job, detections: list[dict] | None) -> dict:
    """The permalink's ``<img>``: its URL, its size on the page (width and height
    attributes, so its space is kept before it loads: enlarged as ``runs.page_image_size``
    does, at most ``PAGE_IMAGE_MAX_HEIGHT`` tall) and the boxes to draw on it, each in
    percentages of the picture (``x``, ``y``, ``w``, ``h``; ``rest`` is what lies below its
    top), larger boxes first so a small one's label is drawn over a large one's."""
    if not (job.width and job.height):
        return {"image_url": reverse("playground:job_image", args=[job.pk]), "boxes": []}
    width, height, _ = runs.page_image_size(job)
    if height > PAGE_IMAGE_MAX_HEIGHT:
        width = max(1, round(width * PAGE_IMAGE_MAX_HEIGHT / height))
        height = PAGE_IMAGE_MAX_HEIGHT
    boxes = []
    for d in detections or ():
        box = d["box"]
        x, y = _percent(box["xmin"], job.width), _percent(box["ymin"], job.height)
        boxes.append(
            {
                "x": x,
                "y": y,
                # at least a sliver: a box of no width is still drawn
                "w": f"{max(float(_percent(box['xmax'], job.width)) - float(x), 0.1):.3f}",
                "h": f"{max(float(_percent(box['ymax'], job.height)) - float(y), 0.1):.3f}",
                "rest": f"{100 - float(y):.3f}",
                "text": f"{d['label']} {d['score']:.2f}",
                "colour_index": d["colour_index"],
                "area": (box["xmax"] - box["xmin"]) * (box["ymax"] - box["ymin"]),
            }
        )
    boxes.sort(key=lambda b: -b["area"])
    return {
        "image_url": reverse("playground:job_image", args=[job.pk]),
        "image_width": width,
        "image_height": height,
        "boxes": boxes,
    }


PUBLIC_FORMATS = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/webp": "WEBP",
    "image/gif": "GIF",
}
# The upright copy of a turned upload (playground/public_image.py) is kept in the shared cache
# by the upload's digest, so a page that draws it again (or a comparison's other panels, the
# same image) costs no second decode and encode. Larger copies are made again each time.
UPRIGHT_CACHE = "upright image"
UPRIGHT_CACHE_SECONDS = 3600
UPRIGHT_CACHE_MAX_BYTES = 8 * 1024 * 1024
_NOT_TURNED = ("", b"")  # cached for an upload the worker does not turn: served as it is


@require_safe
def job_image(request, job_id):
    """The picture the boxes were found on, for drawing them on: the upload, to its owner
    (or anyone, once public; to anyone else without its metadata: GPS, camera, names); an
    upload the worker turned by its EXIF or XMP orientation, upright and re-encoded with no
    orientation left, to everyone, since a browser may not turn it as the worker did
    (playground/public_image.py)."""
    job, owns = _get_job_for_visitor(request, job_id)
    # Purged (playground/retention.py) or deleted by its owner: nothing cached is served.
    if not job.image_name or job.image_deleted_at is not None:
        raise Http404("The image is gone.")
    etag = _image_etag(job, owns)
    if etag and _still_current(request, etag):
        # The browser's copy is this one still: no storage read (checked first: a run made
        # private, or its image deleted, is refused above, not answered 304).
        response = HttpResponseNotModified()
        response["ETag"] = etag
        return _image_response(response)
    content_type = mimetypes.guess_type(job.image_name)[0] or "application/octet-stream"
    key = UPRIGHT_CACHE_KEY.format(job.image_sha256 or job.image_name)
    known = runs.cache_get(key, what=UPRIGHT_CACHE)
    if known is not None and known != _NOT_TURNED:
        return _image_response(HttpResponse(known[1], content_type=known[0]), etag)
    try:
        # From the shared storage: this web machine may not be the one that took the upload.
        if known == _NOT_TURNED and owns:  # the upload as sent, streamed
            return _image_response(
                FileResponse(upload_open(job.image_name), content_type=content_type), etag
            )
        data = upload_read(job.image_name)
    except FileNotFoundError:
        raise Http404("The image is gone.") from None
    except StorageUnavailable:
        logger.exception("job %s: the upload storage failed", job.pk)
        return HttpResponse(STORAGE_DOWN, status=503, content_type="text/plain")
    if known is None and public_image.is_turned(data):
        try:
            body, content_type = public_image.upright_copy(
                data, max_pixels=settings.VITRINE_MAX_IMAGE_PIXELS
            )
        except ImageError:  # accepted when the job was made, so only a damaged stored file
            logger.exception("job %s: the stored upload does not decode", job.pk)
            raise Http404("The image is gone.") from None
        if len(body) <= UPRIGHT_CACHE_MAX_BYTES:
            runs.cache_set(
                key, (content_type, body), seconds=UPRIGHT_CACHE_SECONDS, what=UPRIGHT_CACHE
            )
        return _image_response(HttpResponse(body, content_type=content_type), etag)
    if known is None:
        runs.cache_set(key, _NOT_TURNED, seconds=UPRIGHT_CACHE_SECONDS, what=UPRIGHT_CACHE)
    if owns:
        return _image_response(FileResponse(io.BytesIO(data), content_type=content_type), etag)
    image_format = PUBLIC_FORMATS.get(content_type)
    clean = public_image.without_metadata(data, image_format) if image_format else data
    return _image_response(HttpResponse(clean, content_type=content_type), etag)


def _image_etag(job: Job, owns: bool) -> str:
    """The image's validator: the upload's digest and whose copy (its owner's, or a
    stranger's without metadata; each upright when turned). Weak: the same picture may be
    encoded again byte for byte differently by another Pillow."""
    if not job.image_sha256:
        return ""
    return f'W/"{job.image_sha256[:32]}-{"owner" if owns else "public"}"'


def _still_current(request, etag: str) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (or ``*``), by HTTP's weak comparison (a
    ``W/`` prefix on either side does not count)."""
    asked = parse_etags(request.headers.get("If-None-Match", ""))
    opaque = etag.removeprefix("W/")
    return "*" in asked or any(tag.removeprefix("W/") == opaque for tag in asked)


def _image_response(response: HttpResponse, etag: str = "") -> HttpResponse:
    # Kept by the browser, asked again before each use (``no-cache``: a 304 while it is the
    # same), so a run made private or an image deleted is not shown from a copy kept for
    # an hour after (``max-age=3600`` before session 48). Whose copy depends on the session.
    response["Cache-Control"] = "private, no-cache"
    response["Vary"] = "Cookie"
    if etag and not response.has_header("ETag"):
        response["ETag"] = etag
    response["X-Content-Type-Options"] = "nosniff"
    return response
