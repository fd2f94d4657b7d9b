"""``manage.py export_model <model id>``: export a catalogue model's checkpoint to OpenVINO IR
(default) or to ONNX for ONNX Runtime.

    manage.py export_model facebook/detr-resnet-50
    manage.py export_model facebook/detr-resnet-50 --backend onnxruntime
    manage.py export_model facebook/detr-resnet-50 --check      # compare the existing export again

The export is made from the files the torch path loads (the card's checkpoint, found like
the worker finds it), checked against torch on a few images (generated, or ``--images``)
and written next to the weights (``<checkpoint>/<backend>``; for the Hugging Face cache,
``$VITRINE_EXPORTS_DIR/<org>/<name>/<revision>/<backend>``) with ``export.json``: exporter
versions, the source files' sha256 and revision, the check's figures. Beyond the tolerance
nothing is written and the command fails. With ``VITRINE_BACKEND=auto`` (the default) the
workers then run the export on the CPU.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from PIL import Image

from playground.runtime import CheckpointSpec, DetectorRuntimeError
from playground.runtime.backends import (
    BOX_TOLERANCE,
    EXPORT_BACKENDS,
    LOGIT_TOLERANCE,
    available,
    not_installed_message,
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
            "--check", action="store_true", help="Compare the existing export; write nothing."
        )

    def handle(self, *args, model_id: str, backend: str, **options):
        from playground.runtime.export import check_existing, export_checkpoint

        if backend not in EXPORT_BACKENDS:
            raise CommandError(
                f"Unknown backend {backend!r}; choose from {', '.join(EXPORT_BACKENDS)}."
            )
        if not available(backend):
            raise CommandError(not_installed_message(backend))
        spec = self._spec(model_id, options["checkpoint"])
        images = self._images(options["images"], options["limit"])
        tolerances = {
            "logit_tol": options["logit_tolerance"],
            "box_tol": options["box_tolerance"],
        }
        try:
            if options["check"]:
                comparison, refusal = check_existing(
                    spec, backend=backend, images=images, **tolerances
                )
                self.stdout.write(
                    f"{model_id}: max |logit difference| {comparison.logits:.2e}, max |box "
                    f"difference| {comparison.boxes:.2e}, queries without a partner "
                    f"{comparison.unmatched} ({comparison.images} images)"
                )
                if refusal:
                    raise CommandError(f"The runtime would not use it: {refusal}")
                if not comparison.within(tolerances["logit_tol"], tolerances["box_tol"]):
                    raise CommandError("The export differs from torch beyond the tolerance.")
                self.stdout.write("within the tolerance")
                return
            folder, manifest = export_checkpoint(
                spec,
                backend=backend,
                images=images,
                log=lambda line: self.stdout.write(f"{model_id}: {line}"),
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
