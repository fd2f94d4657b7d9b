"""The one job serializer: the body of ``GET /v1/jobs/<id>``, of a cancel, of every 202 and
of Vitrine's own 200 (``POST /v1/detections/...``), and the OpenAPI schema of all of them.

Money is an exact decimal string. ``cost`` is what the wallet pays for the job (held while
it runs, charged on success, "0" once voided); ``price_version`` is the price row in force
when the job was accepted (a later price change never reprices it); ``balance`` is the
wallet now. Provenance: ``model`` and ``model_revision`` (the pinned checkpoint revision the
job ran, or the provider's model id on a provider route).

Boxes: ``detections`` are the Hugging Face shape with integer pixels (``box_format=int``,
the default, as HF's pipeline truncates them); with ``box_format=float`` each box has the
model's float coordinates (clipped to the image), since truncation alone costs AP.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from billing.models import Charge
from playground.failures import public_error
from playground.models import Job, JobStatus, WebhookDelivery
from playground.provenance import weights_resource
from playground.selectors import job_money
from playground.services import job_queue_position

DEFAULT_THRESHOLD = 0.5
# What a running job is doing (Job.phase, empty once the model is loaded: "inference").
JOB_PHASES = ("loading_model", "inference")
BOX_FORMATS = ("int", "float")
# The float box the worker keeps beside the integer one (playground/runtime: float_boxes).
FLOAT_BOX_KEY = "box_float"
# A box's keys in the order every answer gives them (Hugging Face's, the docs'). Database
# quirk: PostgreSQL's jsonb keeps an object's keys sorted by length, then bytes, so a box
# read back from Job.result is {"xmax", "xmin", "ymax", "ymin"}: rebuilt in this order.
BOX_KEYS = ("xmin", "ymin", "xmax", "ymax")

DECIMAL_STRING = {
    "type": "string",
    "format": "decimal",
    "pattern": r"^\d+(\.\d+)?$",
    "description": "USD, an exact decimal string; parse it with a decimal type.",
}


def money(amount: Decimal) -> str:
    return f"{Decimal(amount).normalize():f}"


def public_detections(result: list[dict] | None, *, threshold: float, box_format: str = "int"):
    """The detections a caller sees: those at or above ``threshold``, in the Hugging Face
    shape ``{label, score, box}`` (integer boxes, or float ones with ``box_format=float``),
    keys in that order and each box's in ``BOX_KEYS`` order, whatever the database kept."""
    if result is None:
        return None
    shown = []
    for item in result:
        if item["score"] < threshold:
            continue
        box = item["box"]
        if box_format == "float":
            box = {k: float(v) for k, v in (item.get(FLOAT_BOX_KEY) or box).items()}
        if isinstance(box, dict) and box.keys() == set(BOX_KEYS):
            box = {k: box[k] for k in BOX_KEYS}
        shown.append({"label": item["label"], "score": item["score"], "box": box})
    return shown


@extend_schema_serializer(component_name="Box")
class BoxSerializer(serializers.Serializer):
    xmin = serializers.FloatField(help_text="Pixels; an integer unless box_format=float.")
    ymin = serializers.FloatField()
    xmax = serializers.FloatField()
    ymax = serializers.FloatField()


@extend_schema_serializer(component_name="Detection")
class DetectionSerializer(serializers.Serializer):
    label = serializers.CharField()
    score = serializers.FloatField()
    box = BoxSerializer()


@extend_schema_serializer(component_name="JobImage")
class JobImageSerializer(serializers.Serializer):
    sha256 = serializers.CharField()
    width = serializers.IntegerField(help_text="After EXIF orientation.")
    height = serializers.IntegerField()
    original_width = serializers.IntegerField()
    original_height = serializers.IntegerField()
    deleted = serializers.IntegerField(
        allow_null=True,
        help_text="When the stored upload was deleted (unix seconds): by its owner "
        "(DELETE /v1/jobs/{job_id}/image) or by retention; null while it is kept.",
    )


@extend_schema_serializer(component_name="JobError")
class JobErrorSerializer(serializers.Serializer):
    code = serializers.CharField()
    message = serializers.CharField()


@extend_schema_serializer(component_name="PriceVersion")
class PriceVersionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    price = serializers.CharField(help_text="USD per unit, exact decimal string.")
    unit = serializers.CharField()
    effective_at = serializers.IntegerField(help_text="Unix seconds.")


@extend_schema_serializer(component_name="WebhookDelivery")
class WebhookSerializer(serializers.Serializer):
    url = serializers.CharField()
    status = serializers.ChoiceField(
        choices=WebhookDelivery.Status.choices,
        help_text="waiting (job running), pending, delivered, failed",
    )
    attempts = serializers.IntegerField()
    last_status_code = serializers.IntegerField(allow_null=True)
    last_error = serializers.CharField(help_text="Empty when the last attempt got a 2xx.")
    delivered = serializers.IntegerField(allow_null=True, help_text="Unix seconds.")


@extend_schema_serializer(component_name="JobWeights")
class WeightsSerializer(serializers.Serializer):
    revision = serializers.CharField(
        help_text="The Hub snapshot's commit, or sha256:<digest> of a folder's weights."
    )
    untrained = serializers.BooleanField(help_text="Random placeholder weights.")
    backend = serializers.CharField(help_text="The runtime that ran the forward pass.")
    precision = serializers.CharField(help_text="fp32, or bf16/fp16/int8 where that was chosen.")
    notice = serializers.CharField(allow_null=True)


def _seconds(moment) -> int | None:
    return int(moment.timestamp()) if moment else None


@extend_schema_serializer(component_name="DetectionJob")
class JobSerializer(serializers.Serializer):
    """A detection job: its status, its detections once it has succeeded, what it cost and
    how long each step took."""

    # The docstring is the schema's description (API users read it). Context: ``request``;
    # optional ``threshold`` (re-filters the kept detections), ``box_format`` ("int" or
    # "float") and ``site`` (see ``_absolute``).

    id = serializers.CharField()
    object = serializers.CharField(help_text="Always detection_job.")
    model = serializers.CharField(help_text="<organisation>/<name>")
    model_revision = serializers.CharField(
        allow_null=True, help_text="Checkpoint revision the job ran (or the provider's model)."
    )
    route = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=JobStatus.choices)
    queue_position = serializers.IntegerField(
        allow_null=True,
        help_text="While queued: 1 when it is next in its queue, 2 behind one job, ...",
    )
    phase = serializers.ChoiceField(
        choices=JOB_PHASES,
        allow_null=True,
        help_text="While running: loading_model (the worker loads the model first), then "
        "inference; null otherwise.",
    )
    created = serializers.IntegerField()
    started = serializers.IntegerField(allow_null=True)
    finished = serializers.IntegerField(allow_null=True)
    attempts = serializers.IntegerField()
    image = JobImageSerializer()
    threshold = serializers.FloatField()
    box_format = serializers.ChoiceField(choices=BOX_FORMATS)
    detections = DetectionSerializer(many=True, allow_null=True, help_text="Null until done.")
    floor = serializers.FloatField(help_text="Detections under this score are not kept.")
    timings = serializers.DictField(child=serializers.FloatField(), help_text="Seconds.")
    error = JobErrorSerializer(allow_null=True)
    cost = serializers.CharField(help_text="USD charged (held while running; 0 once voided).")
    would_be_cost = serializers.CharField(help_text="USD it costs without BYOK.")
    byok = serializers.BooleanField()
    charge_status = serializers.ChoiceField(
        choices=Charge.Status.choices, allow_null=True, help_text="reserved, posted, voided"
    )
    price_version = PriceVersionSerializer(allow_null=True)
    balance = serializers.CharField(allow_null=True, help_text="The wallet now, USD.")
    webhook = WebhookSerializer(allow_null=True)
    url = serializers.URLField()
    request_id = serializers.CharField(help_text="X-Request-Id of the call that created it.")
    weights = WeightsSerializer(
        allow_null=True, help_text="What computed the boxes; null until a worker ran the job."
    )

    def to_representation(self, job: Job) -> dict:
        request = self.context["request"]
        threshold = self.context.get("threshold")
        if threshold is None:
            threshold = job.parameters.get("threshold", DEFAULT_THRESHOLD)
        box_format = self.context.get("box_format") or job.parameters.get("box_format") or "int"
        paid = job_money(job)
        charge = paid.charge
        version = charge.price_version if charge else None
        return {
            "id": str(job.pk),
            "object": "detection_job",
            "model": job.card.model_id,
            "model_revision": job.model_revision or None,
            "route": job.route.slug if job.route else None,
            "status": job.status,
            "queue_position": job_queue_position(job),
            "phase": (job.phase or "inference") if job.status == JobStatus.RUNNING else None,
            "created": _seconds(job.created_at),
            "started": _seconds(job.started_at),
            "finished": _seconds(job.finished_at),
            "attempts": job.attempts,
            "image": {
                "sha256": job.image_sha256,
                "width": job.width,
                "height": job.height,
                "original_width": job.original_width,
                "original_height": job.original_height,
                "deleted": _seconds(job.image_deleted_at),
            },
            "threshold": threshold,
            "box_format": box_format,
            "detections": public_detections(job.result, threshold=threshold, box_format=box_format),
            "floor": settings.VITRINE_DETECTION_FLOOR,
            "timings": job.timings,
            # The caller-facing text for the code; the stored message is for operators.
            "error": public_error(job.error_code, job.error_message),
            "cost": money(charge.cost) if charge else "0",  # 0 once voided
            "would_be_cost": money(charge.would_be_amount) if charge else "0",
            "byok": charge.byok if charge else False,
            "charge_status": charge.status if charge else None,
            "price_version": {
                "id": version.pk,
                "price": money(version.price),
                "unit": version.unit,
                "effective_at": _seconds(version.effective_at),
            }
            if version
            else None,
            "balance": money(paid.balance) if job.owner_id else None,
            "webhook": _webhook(job),
            # The checkpoint's revision, backend, precision, and whether its weights are
            # untrained (playground/provenance.py); null until a worker ran it.
            "weights": weights_resource(job),
            "url": _absolute(
                request,
                reverse("playground_api:job-detail", args=[job.pk]),
                site=self.context.get("site"),
            ),
            "request_id": job.request_id,
        }


def _absolute(request, path: str, *, site: str | None = None) -> str:
    """An absolute URL: from the request, or where there is none (a webhook sent by a
    worker) from SITE_URL, else from ``site``, the base of the site the job was created on
    (``WebhookDelivery.site_url``)."""
    if request is None:
        return (settings.SITE_URL or site or "") + path
    return request.build_absolute_uri(path)


def _webhook(job: Job) -> dict | None:
    delivery = getattr(job, "webhook_delivery", None)
    if delivery is None:
        return None
    status = delivery.status
    if status == WebhookDelivery.Status.WAITING and job.status in Job.FINAL:
        # Queued by the job's end after its commit, or by the reaper's sweep should that
        # fail: due either way. A synchronous call's answer, read as the job ended, said
        # "waiting (job running)" beside "succeeded" (session 43's outside probe).
        status = WebhookDelivery.Status.PENDING
    return {
        "url": delivery.url,
        "status": status,
        "attempts": delivery.attempts,
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "delivered": _seconds(delivery.delivered_at),
    }


def job_data(
    job: Job,
    *,
    request,
    threshold: float | None = None,
    box_format: str | None = None,
    site: str | None = None,
):
    """The job resource as a dict (see ``JobSerializer``). ``site``: with no request, the
    base its URLs are built on when SITE_URL is empty (see ``_absolute``)."""
    context = {
        "request": request, "threshold": threshold, "box_format": box_format, "site": site,
    }  # fmt: skip
    return JobSerializer(job, context=context).data
