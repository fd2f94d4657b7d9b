"""``manage.py verify``: run the detector runtime on the reference image and compare with
the published outputs of the real checkpoint. For machines that have the real weights:

    manage.py verify --checkpoint /weights/facebook/detr-resnet-50/no_timm \
        --expected ../shared/testdata/reference/expected_outputs.json \
        --model-id facebook/detr-resnet-50 --image ../shared/testdata/reference/000000039769.png

Without --checkpoint the model id (at --revision) is found like any catalogue checkpoint
(VITRINE_WEIGHTS_DIR, then the Hugging Face cache). Exits non-zero on any mismatch.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from playground.runtime import CheckpointSpec, DetectorRuntimeError, decode_image, load_detector
from playground.runtime.reference import compare_with_reference

MAX_PIXELS = 50_000_000


class Command(BaseCommand):
    help = "Compare the runtime's output for a real checkpoint with published expected outputs."

    def add_arguments(self, parser):
        parser.add_argument("--checkpoint", help="Checkpoint folder (default: find --model-id).")
        parser.add_argument("--expected", required=True, help="expected_outputs.json")
        parser.add_argument("--model-id", required=True, help="Its key under 'models'.")
        parser.add_argument("--revision", default="", help="Hub revision without --checkpoint.")
        parser.add_argument("--image", required=True, help="The reference image.")
        parser.add_argument("--tolerance", type=float, help="Override the file's tolerance.")
        parser.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")

    def handle(self, *args, **options):
        reference = json.loads(Path(options["expected"]).read_text())
        try:
            entry = reference["models"][options["model_id"]]
        except KeyError:
            known = ", ".join(reference.get("models", {}))
            raise CommandError(
                f"No {options['model_id']!r} in {options['expected']}; it has: {known}"
            ) from None
        spec = CheckpointSpec(
            repo=options["model_id"],
            revision=options["revision"],
            local_dir=options["checkpoint"] or "",
        )
        try:
            image = decode_image(Path(options["image"]).read_bytes(), max_pixels=MAX_PIXELS)
            detector = load_detector(spec, device=options["device"])
        except DetectorRuntimeError as exc:
            raise CommandError(exc.message) from exc
        if detector.untrained:
            self.stderr.write("Note: this checkpoint has random weights; it cannot match.")
        checks = compare_with_reference(
            detector,
            image,
            entry,
            tolerance=options["tolerance"],
            image_sha256=reference.get("image_sha256"),
        )
        for check in checks:
            mark = "ok  " if check.ok else ("FAIL" if check.required else "note")
            self.stdout.write(f"{mark} {check.name}: {check.detail}")
        failed = [c.name for c in checks if c.required and not c.ok]
        if failed:
            raise CommandError(f"{options['model_id']}: mismatch in {', '.join(failed)}")
        self.stdout.write(self.style.SUCCESS(f"{options['model_id']}: matches the reference"))
