"""Measured-here accuracy: storing an evaluation report and choosing the one a page shows."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch

from catalog.models import EvaluationResult, ModelCard

# The report's metric names (playground/runtime/coco.py) and the model's fields.
METRIC_FIELDS = {
    "AP": "ap",
    "AP50": "ap50",
    "AP75": "ap75",
    "AP_S": "ap_small",
    "AP_M": "ap_medium",
    "AP_L": "ap_large",
}


def evaluation_record(*, card: ModelCard, report: dict[str, Any]) -> EvaluationResult:
    """Store one ``manage.py evaluate`` report for ``card``."""
    metrics = report["metrics"]
    weights = report["weights"]
    return EvaluationResult.objects.create(
        card=card,
        checkpoint_revision=card.checkpoint_revision,
        resolved_revision=weights.get("revision", ""),
        dataset=report["dataset"]["name"],
        images=report["dataset"]["images"],
        annotations=report["dataset"]["annotations"],
        device=report["runtime"].get("device", ""),
        runtime=report["runtime"],
        untrained=bool(weights.get("untrained")),
        seconds=report["timing"]["seconds"],
        report={k: v for k, v in report.items() if k != "results"},
        **{field: metrics[name] for name, field in METRIC_FIELDS.items()},
    )


def trained_evaluations_prefetch() -> Prefetch:
    """One query for a page's cards: their trained evaluations, newest first."""
    return Prefetch(
        "evaluations",
        queryset=EvaluationResult.objects.filter(untrained=False).order_by("-evaluated_at"),
        to_attr="trained_evaluations",
    )


def shown_evaluation(card: ModelCard) -> EvaluationResult | None:
    """The newest trained evaluation of the revision the card serves now, or None.

    Needs ``trained_evaluations_prefetch()``. A result measured at another revision is not
    this checkpoint's accuracy, and random weights' AP is nobody's.
    """
    for evaluation in getattr(card, "trained_evaluations", []):
        if evaluation.checkpoint_revision == card.checkpoint_revision:
            return evaluation
    return None
