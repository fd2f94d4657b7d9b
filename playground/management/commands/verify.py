"""``manage.py verify``: run the detector runtime on the reference image and compare with the
published outputs of the real checkpoint. For machines that have the real weights:

    manage.py verify --checkpoint /weights/facebook/detr-resnet-50/no_timm \\
        --expected ../shared/testdata/reference/expected_outputs.json \\
        --model-id facebook/detr-resnet-50 --image ../shared/testdata/reference/000000039769.png

    # every model the catalogue sells, each from where the workers load it:
    manage.py verify --catalogue --expected ../shared/testdata/reference/expected_outputs.json \\
        --image ../shared/testdata/reference/000000039769.png

Without --checkpoint the model id (at --revision) is found like any catalogue checkpoint
(VITRINE_WEIGHTS_DIR, then the Hugging Face cache). Tolerances are transformers' own
(rtol 1e-4 + atol 1e-4, see playground/runtime/reference.py). On a GPU the check runs in
float32 with TF32 off (autocast is ignored), as the published values were computed.

A model with no published outputs in --expected (hustvl/yolos-tiny: the file has
YOLOS-small) is compared with transformers' ``pipeline("object-detection")`` on the same
weights instead, and the command says so: that proves the serving path, not the weights.
Exits non-zero on any mismatch.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from playground.runtime import CheckpointSpec, DetectorRuntimeError, decode_image, load_detector
from playground.runtime.reference import (
    ATOL,
    RTOL,
    Check,
    Tolerance,
    compare_with_pipeline,
    compare_with_reference,
    pipeline_detections,
)

MAX_PIXELS = 50_000_000
# The pipeline comparison's score floor for trained weights (the HF pipeline's default 0.5
# is too high to compare many boxes; 0.3 is what the published DETR outputs use).
PIPELINE_THRESHOLD = 0.3
NO_REFERENCE = (
    "{model_id}: no published reference output in {expected}; comparing the runtime with "
    "transformers' pipeline on the same weights instead (checks the serving path, not that "
    "the weights are the published ones)."
)


class Command(BaseCommand):
    help = "Compare the runtime's output for a real checkpoint with published expected outputs."

    def add_arguments(self, parser):
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--model-id", help="Its key under 'models' (a Hub id).")
        which.add_argument(
            "--catalogue",
            action="store_true",
            help="Every published card with a checkpoint, loaded as its workers load it.",
        )
        parser.add_argument("--checkpoint", help="Checkpoint folder (default: find --model-id).")
        parser.add_argument("--expected", required=True, help="expected_outputs.json")
        parser.add_argument("--revision", default="", help="Hub revision without --checkpoint.")
        parser.add_argument("--image", required=True, help="The reference image.")
        parser.add_argument("--rtol", type=float, default=RTOL, help=f"Default {RTOL:.0e}.")
        parser.add_argument(
            "--atol", "--tolerance", type=float, help=f"Default: the file's, else {ATOL:.0e}."
        )
        parser.add_argument(
            "--threshold",
            type=float,
            default=PIPELINE_THRESHOLD,
            help="Score floor of the pipeline comparison (models with no published outputs).",
        )
        parser.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
        parser.add_argument(
            "--allow-tf32", action="store_true", help="Keep TF32 on a GPU (looser numbers)."
        )

    def handle(self, *args, **options):
        reference = json.loads(Path(options["expected"]).read_text())
        image = decode_image(Path(options["image"]).read_bytes(), max_pixels=MAX_PIXELS)
        self._strict_float32(options)
        if options["catalogue"]:
            targets = self._catalogue()
            if not targets:
                raise CommandError("No published card has a checkpoint.")
        else:
            spec = CheckpointSpec(
                repo=options["model_id"],
                revision=options["revision"],
                local_dir=options["checkpoint"] or "",
            )
            targets = [(options["model_id"], options["model_id"], spec)]
        failed = []
        for label, hub_id, spec in targets:
            if not self._verify(label, hub_id, spec, reference, image, options):
                failed.append(label)
        if failed:
            raise CommandError(f"mismatch: {', '.join(failed)}")

    def _catalogue(self) -> list[tuple[str, str, CheckpointSpec]]:
        from catalog.models import ModelCard
        from playground.services import card_spec

        cards = ModelCard.objects.published().select_related("organisation")
        return [
            (card.model_id, card.checkpoint_repo or card.model_id, card_spec(card))
            for card in cards
            if card.checkpoint_repo or card.checkpoint_local_dir
        ]

    def _strict_float32(self, options) -> None:
        import torch

        if not options["allow_tf32"]:
            # Ampere+ GPUs run cuDNN convolutions in TF32 by default (10-bit mantissa):
            # ResNet backbones then drift past any float32 tolerance.
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False

    def _verify(self, label, hub_id, spec, reference, image, options) -> bool:
        self.stdout.write(f"== {label} ({spec.label})")
        try:
            detector = load_detector(spec, device=options["device"])
        except DetectorRuntimeError as exc:
            self.stdout.write(f"FAIL load: {exc.message}")
            return False
        detector.autocast_dtype = None  # the published values are float32
        if detector.untrained:
            self.stderr.write(f"Note: {label} has random weights; it cannot match a reference.")
        entry = reference.get("models", {}).get(hub_id)
        if entry is not None:
            checks = compare_with_reference(
                detector,
                image,
                entry,
                atol=options["atol"],
                rtol=options["rtol"],
                image_sha256=reference.get("image_sha256"),
            )
        else:
            self.stdout.write(NO_REFERENCE.format(model_id=hub_id, expected=options["expected"]))
            checks = self._against_pipeline(detector, image, options)
        for check in checks:
            mark = "ok  " if check.ok else ("FAIL" if check.required else "note")
            self.stdout.write(f"{mark} {check.name}: {check.detail}")
        if any(c.required and not c.ok for c in checks):
            self.stdout.write(self.style.ERROR(f"{label}: mismatch"))
            return False
        what = "the reference" if entry is not None else "transformers' pipeline"
        self.stdout.write(self.style.SUCCESS(f"{label}: matches {what} ({detector.device})"))
        return True

    def _against_pipeline(self, detector, image, options) -> list[Check]:
        from transformers import AutoImageProcessor, AutoModelForObjectDetection

        from playground.runtime.weights import resolve_weights

        source = resolve_weights(detector.spec)
        # A second, independent load: the pipeline must not share the runtime's objects.
        model = AutoModelForObjectDetection.from_pretrained(source.path, **source.kwargs)
        processor = AutoImageProcessor.from_pretrained(
            source.path, backend=detector.image_backend, config=model.config, **source.kwargs
        )
        threshold = options["threshold"]
        expected = pipeline_detections(
            model.eval(), processor, image.image, threshold=threshold, device=detector.device
        )
        tolerance = Tolerance(rtol=options["rtol"], atol=options["atol"] or ATOL)
        return compare_with_pipeline(
            detector, image, expected, threshold=threshold, tolerance=tolerance
        )
