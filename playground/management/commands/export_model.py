"""``manage.py export_model <model id>``: export a catalogue model's checkpoint to OpenVINO IR
(default) or to ONNX for ONNX Runtime.

    manage.py export_model facebook/detr-resnet-50
    manage.py export_model facebook/detr-resnet-50 --backend onnxruntime
    manage.py export_model facebook/detr-resnet-50 --check      # compare the existing export again
    manage.py export_model facebook/detr-resnet-50 --precision int8 --calibration-images DIR

The export is made from the files the torch path loads (the card's checkpoint, found like
the worker finds it), checked against torch on a few images (generated, or ``--images``)
and written next to the weights (``<checkpoint>/<backend>``; for the Hugging Face cache,
``$VITRINE_EXPORTS_DIR/<org>/<name>/<revision>/<backend>``) with ``export.json``: exporter
versions, the source files' sha256 and revision, the check's figures, and its forward timed
against torch's on this CPU. Beyond the tolerance nothing is written and the command fails.
With ``VITRINE_BACKEND=auto`` (the default) the workers then run the export on the CPU,
unless it was measured slower than torch on their CPU (run ``--check`` on a worker machine
of another CPU to measure it there).

``--precision int8`` makes the labelled fast variant that ``VITRINE_PRECISION=int8`` runs:
the OpenVINO IR quantized by NNCF with statistics from ``--calibration-images`` (photos like
the traffic; up to ``--calibration-limit``), or from generated images when none are given.
Its differences from torch are printed and recorded, not held to the f32 tolerance.
``--int8-scope all`` uses NNCF's default preset instead of its transformer one: the
attention's matmuls and the residual adds in int8 too, faster and further from f32.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from PIL import Image

from playground.runtime import CheckpointSpec, DetectorRuntimeError
from playground.runtime.backends import (
    BOX_TOLERANCE,
    CALIBRATION_LIMIT,
    EXPORT_BACKENDS,
    INT8_SCOPES,
    LOGIT_TOLERANCE,
    QUANTIZER_MESSAGE,
    available,
    not_installed_message,
    quantizer_available,
    speed_line,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


class Command(BaseCommand):
    help = "Export a catalogue model's checkpoint to OpenVINO IR or ONNX, checked against torch."

    def add_arguments(self, parser):
        parser.add_argument("model_id", help="The card's id, e.g. facebook/detr-resnet-50.")
        parser.add_argument(
            "--backend",
            default="openvino",
            help=f"One of {', '.join(EXPORT_BACKENDS)} (default openvino).",
        )
        parser.add_argument(
            "--checkpoint", help="Export this checkpoint folder instead of the card's."
        )
        parser.add_argument(
            "--images", help="A folder of images for the check (default: 3 generated)."
        )
        parser.add_argument("--limit", type=int, default=3, help="Images taken from --images.")
        parser.add_argument(
            "--logit-tolerance", type=float, default=LOGIT_TOLERANCE, help="Max |logit difference|."
        )
        parser.add_argument(
            "--box-tolerance",
            type=float,
            default=BOX_TOLERANCE,
            help="Max |box difference| (normalised cx, cy, w, h).",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Compare the existing export again and time it against torch on this CPU "
            "(the one thing written: that measurement, in its export.json).",
        )
        parser.add_argument(
            "--precision",
            choices=("f32", "int8"),
            default="f32",
            help="f32 (default; held to the tolerance) or int8 (OpenVINO, NNCF-quantized: "
            "the labelled fast variant, its differences recorded).",
        )
        parser.add_argument(
            "--calibration-images",
            help="int8: a folder of photos like the traffic for the quantizer's statistics "
            "(default: generated images, enough for a test checkpoint only).",
        )
        parser.add_argument(
            "--int8-scope",
            choices=INT8_SCOPES,
            default="transformer",
            help="int8: transformer (default: softmax, norms and the attention's matmuls stay "
            "in float) or all (NNCF's default preset: faster, moves the outputs further).",
        )
        parser.add_argument(
            "--calibration-limit",
            type=int,
            default=CALIBRATION_LIMIT,
            help=f"int8: calibration images taken from the folder (default {CALIBRATION_LIMIT}).",
        )

    def handle(self, *args, model_id: str, backend: str, **options):
        from playground.runtime.export import check_existing, export_checkpoint

        if backend not in EXPORT_BACKENDS:
            raise CommandError(
                f"Unknown backend {backend!r}; choose from {', '.join(EXPORT_BACKENDS)}."
            )
        if not available(backend):
            raise CommandError(not_installed_message(backend))
        precision = options["precision"]
        int8 = precision == "int8"
        if int8 and backend != "openvino":
            raise CommandError("--precision int8 is an OpenVINO export (--backend openvino).")
        if int8 and not options["check"] and not quantizer_available():
            raise CommandError(QUANTIZER_MESSAGE)
        if options["calibration_images"] and not int8:
            raise CommandError("--calibration-images calibrates an int8 export (--precision int8).")
        spec = self._spec(model_id, options["checkpoint"])
        images = self._images(options["images"], options["limit"])
        calibration = self._images(options["calibration_images"], options["calibration_limit"])
        tolerances = {
            "logit_tol": options["logit_tolerance"],
            "box_tol": options["box_tolerance"],
        }
        try:
            if options["check"]:
                comparison, refusal, speed = check_existing(
                    spec, backend=backend, images=images, precision=precision, **tolerances
                )
                self.stdout.write(
                    f"{model_id}: max |logit difference| {comparison.logits:.2e}, max |box "
                    f"difference| {comparison.boxes:.2e}, queries without a partner "
                    f"{comparison.unmatched} ({comparison.images} images)"
                )
                self.stdout.write(f"{model_id}: {speed_line(speed)} (kept in export.json)")
                if refusal:
                    raise CommandError(f"The runtime would not use it: {refusal}")
                if int8:
                    self.stdout.write("int8: differences recorded, not held to the tolerance")
                    return
                if not comparison.within(tolerances["logit_tol"], tolerances["box_tol"]):
                    raise CommandError("The export differs from torch beyond the tolerance.")
                self.stdout.write("within the tolerance")
                return
            folder, manifest = export_checkpoint(
                spec,
                backend=backend,
                images=images,
                log=lambda line: self.stdout.write(f"{model_id}: {line}"),
                precision=precision,
                calibration_images=calibration,
                calibration_source=options["calibration_images"] or "",
                int8_scope=options["int8_scope"],
                **tolerances,
            )
        except DetectorRuntimeError as exc:
            raise CommandError(exc.message) from exc
        made_by = manifest["exporter"]
        self.stdout.write(
            f"{model_id}: accepted, written to {folder} ("
            + ", ".join(f"{k} {v}" for k, v in made_by.items() if k in ("openvino", "onnx"))
            + ")"
        )

    def _spec(self, model_id: str, checkpoint: str | None) -> CheckpointSpec:
        if checkpoint:
            return CheckpointSpec(local_dir=checkpoint)
        from catalog.models import ModelCard
        from playground.services import card_spec

        card = ModelCard.objects.by_model_id(model_id).first()
        if card is None:
            raise CommandError(f"No model {model_id!r} in the catalogue.")
        spec = card_spec(card)
        if not spec.repo and not spec.local_dir:
            raise CommandError(f"{model_id} has no checkpoint to export.")
        return spec

    def _images(self, folder: str | None, limit: int) -> list[Image.Image] | None:
        if not folder:
            return None
        paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise CommandError(f"No images in {folder}.")
        return [Image.open(p).convert("RGB") for p in paths[:limit]]
