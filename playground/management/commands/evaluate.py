"""``manage.py evaluate <model id> --images DIR --annotations instances.json``: COCO box AP of
a catalogue model, measured through the runtime the workers use (playground/runtime/coco.py).

    manage.py evaluate facebook/detr-resnet-50 \\
        --images /data/coco/val2017 --annotations /data/coco/annotations/instances_val2017.json \\
        --json detr-val2017.json

The checkpoint is the card's (``checkpoint_local_dir``, ``$VITRINE_WEIGHTS_DIR``, then the
Hugging Face cache), loaded as a worker loads it: same device choice, ``VITRINE_AUTOCAST``,
``VITRINE_BATCH_SIZE`` and image backend. The result is stored for the card's revision
(shown on the model page when the weights are trained) unless ``--no-save``.
"""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from catalog.evaluations import evaluation_record
from catalog.models import ModelCard
from playground.runtime import DetectorRuntimeError, load_detector
from playground.runtime.coco import (
    AP_NAMES,
    EVAL_THRESHOLD,
    MAX_DETECTIONS,
    CocoDataset,
    CocoError,
    evaluate,
)
from playground.services import card_spec

UNKNOWN_MODEL = "No model {model_id!r} in the catalogue."
NO_CHECKPOINT = "{model_id} has no checkpoint (no Hub repo, no local folder): nothing to run."


def dataset_name(annotations: Path) -> str:
    """``instances_val2017.json`` -> ``COCO val2017``; otherwise the file's stem."""
    stem = annotations.stem
    if stem.startswith("instances_"):
        return f"COCO {stem.removeprefix('instances_')}"
    return stem


class Command(BaseCommand):
    help = "Measure a catalogue model's COCO box AP through the serving runtime."

    def add_arguments(self, parser):
        parser.add_argument("model_id", help="Catalogue id, e.g. facebook/detr-resnet-50.")
        parser.add_argument("--images", required=True, help="Folder of the dataset's images.")
        parser.add_argument("--annotations", required=True, help="COCO instances JSON.")
        parser.add_argument("--limit", type=int, help="Only the first N images (by id).")
        parser.add_argument("--json", dest="json_out", help="Write the report here.")
        parser.add_argument("--dataset-name", help="Default: from the file, 'COCO val2017'.")
        parser.add_argument("--device", help="cpu, cuda, ... (default: cuda if available)")
        parser.add_argument("--batch-size", type=int, help="Default: the worker's.")
        parser.add_argument(
            "--threshold",
            type=float,
            default=EVAL_THRESHOLD,
            help=f"Score floor (default {EVAL_THRESHOLD}: every detection, as COCO counts).",
        )
        parser.add_argument(
            "--max-detections",
            type=int,
            default=MAX_DETECTIONS,
            help=f"Best detections kept per image (default {MAX_DETECTIONS}, COCO's maxDets).",
        )
        parser.add_argument("--no-save", action="store_true", help="Do not store the result.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, model_id: str, **options):
        card = (
            ModelCard.objects.by_model_id(model_id).select_related("organisation").first()
            if "/" in model_id
            else None
        )
        if card is None:
            raise CommandError(UNKNOWN_MODEL.format(model_id=model_id))
        spec = card_spec(card)
        if not (spec.repo or spec.local_dir):
            raise CommandError(NO_CHECKPOINT.format(model_id=model_id))
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be at least 1.")
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        if not 0.0 <= options["threshold"] <= 1.0:
            raise CommandError("--threshold must be between 0 and 1.")
        annotations = Path(options["annotations"])
        try:
            dataset = CocoDataset.load(annotations)
        except CocoError as exc:
            raise CommandError(str(exc)) from exc
        try:
            detector = load_detector(spec, device=options["device"])
        except DetectorRuntimeError as exc:
            raise CommandError(exc.message) from exc
        if detector.untrained:
            self.stderr.write(
                "Note: this checkpoint is marked untrained (random weights): its AP is ~0 and "
                "is stored for the record only, never shown on the model page."
            )
        total = min(options["limit"] or len(dataset.images), len(dataset.images))
        bar = None
        if not options["no_progress"]:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="img", desc=model_id, file=self.stderr._out)
        try:
            run = evaluate(
                detector,
                dataset,
                options["images"],
                limit=options["limit"],
                batch_size=options["batch_size"],
                threshold=options["threshold"],
                max_detections=options["max_detections"],
                progress=bar.update if bar is not None else None,
            )
        except CocoError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if bar is not None:
                bar.close()
        report = self._report(card, detector, dataset, run, options)
        for name in AP_NAMES:
            self.stdout.write(f"{name:5} {run.metrics[name]:.3f}")
        self.stdout.write(
            f"{run.images} images, {run.annotations} boxes, {run.detections} detections "
            f"({run.unmapped} with a label the dataset lacks dropped) in {run.seconds:.1f}s "
            f"({report['timing']['images_per_second']:.2f} images/s) on {detector.device}"
        )
        if options["json_out"]:
            Path(options["json_out"]).write_text(json.dumps(report, indent=2) + "\n")
            self.stdout.write(f"report: {options['json_out']}")
        if not options["no_save"]:
            result = evaluation_record(card=card, report=report)
            shown = "" if result.untrained else " (shown on the model page)"
            self.stdout.write(f"stored as evaluation {result.pk}{shown}")

    def _report(self, card, detector, dataset, run, options) -> dict:
        device = str(detector.device)
        if detector.device.type == "cuda":
            import torch

            device = f"{device} ({torch.cuda.get_device_name(detector.device)})"
        else:
            device = f"{device} ({platform.processor() or platform.machine()})"
        return {
            "model": card.model_id,
            "checkpoint": detector.spec.label,
            "card_revision": card.checkpoint_revision,
            "weights": {
                "revision": detector.revision,
                "untrained": detector.untrained,
            },
            "dataset": {
                "name": options["dataset_name"] or dataset_name(dataset.path),
                "annotations_file": str(dataset.path),
                "images": run.images,
                "annotations": run.annotations,
                "of_images": len(dataset.images),
            },
            "metrics": run.metrics,
            "runtime": {
                "device": device,
                "backend": detector.provenance["backend"],
                "precision": detector.arithmetic,
                "channels_last": detector.channels_last,
                "batch_size": options["batch_size"] or detector.default_batch_size,
                "threshold": options["threshold"],
                "max_detections": options["max_detections"],
                "boxes": "float xywh (before the API's integer rounding)",
                "evaluator": f"pycocotools {version('pycocotools')}",
            },
            "counts": {
                "detections": run.detections,
                "unmapped_labels_dropped": run.unmapped,
                "exif_orientation_ignored": run.orientation_ignored,
            },
            "timing": {
                "seconds": round(run.seconds, 3),
                "images_per_second": round(run.images / run.seconds, 3) if run.seconds else 0,
                "stages": run.stage_seconds,
            },
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        }
