"""What ran a job: the worker records the loaded checkpoint's provenance on every job it runs,
and refuses paid jobs on untrained weights unless ``VITRINE_ALLOW_UNTRAINED`` is on.

The detector computes its provenance once, when it is loaded (runtime/provenance.py), so
recording it costs one UPDATE per batch and no file reads.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.db import connection

from catalog.db import UNFLUSHED_COMMIT, prepared_rows
from playground.models import Job, JobStatus

logger = logging.getLogger(__name__)

UNTRAINED_NOTICE = (
    "untrained weights: this model ran with random placeholder weights, its boxes mean "
    "nothing (a development setup)"
)
UNTRAINED_REFUSED_LOG = (
    "{label} is marked untrained: refusing paid job {job_id} (VITRINE_ALLOW_UNTRAINED is off)"
)


def provenance_fields(provenance: dict[str, Any]) -> dict[str, Any]:
    """The job's columns for ``provenance`` (Detector.provenance)."""
    return {
        "model_revision": provenance["model_revision"][:200],
        "weights_revision": provenance["revision"][:80],
        "weights_untrained": bool(provenance["untrained"]),
        "runtime_backend": provenance["backend"][:200],
        "runtime_precision": provenance["precision"][:16],
    }


def recorded(job: Job, fields: dict[str, Any]) -> bool:
    """True when the job's row already says ``fields`` (its claim wrote them)."""
    return all(getattr(job, name) == value for name, value in fields.items())


# What this process last recorded, and for which card: its next claim of a job of that card
# writes it with the claim (services.job_claim), one statement fewer before the forward.
_last_recorded: tuple[int, dict[str, Any]] | None = None


def remember(*, card_id: int, fields: dict[str, Any]) -> None:
    global _last_recorded
    _last_recorded = (card_id, fields)


def claim_provenance() -> tuple[int, dict[str, Any]] | None:
    """(card id, fields) for the claim to write on a job of that card's own route, or None.
    The worker checks it against the model it then loads (``recorded``) and writes the
    loaded one's if they differ (an operator changed the card's checkpoint meanwhile)."""
    return _last_recorded


def jobs_record_provenance(*, jobs: list[Job], provenance: dict[str, Any], worker: str) -> int:
    """Write ``provenance`` (Detector.provenance) on the jobs this worker still runs."""
    fields = provenance_fields(provenance)
    for job in jobs:
        for name, value in fields.items():
            setattr(job, name, value)
    pks = [job.pk for job in jobs]
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        return _record_sql(pks=pks, worker=worker, fields=fields)
    # SQLite, or inside a caller's transaction, whose commit keeps its fsync: the ORM's update.
    return Job.objects.filter(pk__in=pks, status=JobStatus.RUNNING, worker=worker).update(**fields)


# Every job runs this between its claim and its forward, so on PostgreSQL it is one prepared
# statement in its own transaction (the ORM's BEGIN, SET LOCAL, UPDATE and COMMIT were four
# round trips and ~1 ms of compiling), committed without an fsync of its own (~3 ms on a
# slow disk; catalog.db.UNFLUSHED_COMMIT): the job's next synchronous commit (its result,
# its failure) flushes it. A database crash before then loses only this running job's
# provenance, and a running job whose worker lost it is queued again and records it afresh
# on its next attempt.
_RECORD_SQL = f"""
UPDATE {Job._meta.db_table}
SET model_revision = %s::text, weights_revision = %s::text, weights_untrained = %s::boolean,
    runtime_backend = %s::text, runtime_precision = %s::text
FROM {UNFLUSHED_COMMIT}
WHERE id = ANY(%s::uuid[]) AND status = '{JobStatus.RUNNING.value}' AND worker = %s::text
RETURNING 1"""


def _record_sql(*, pks: list, worker: str, fields: dict) -> int:
    params = [
        fields["model_revision"],
        fields["weights_revision"],
        fields["weights_untrained"],
        fields["runtime_backend"],
        fields["runtime_precision"],
        pks,
        worker,
    ]
    return len(prepared_rows(_RECORD_SQL, params))


def is_paid(job: Job) -> bool:
    """A job billed through the API (a charge was reserved for it); free tries are not."""
    return bool(job.cost_ref)


def untrained_refused(job: Job, *, untrained: bool) -> bool:
    """True when ``job`` must not run on these weights: untrained, paid, and not allowed."""
    return untrained and is_paid(job) and not settings.VITRINE_ALLOW_UNTRAINED


def weights_resource(job: Job) -> dict[str, Any] | None:
    """The ``weights`` object of a job's JSON; None until a worker has loaded the model."""
    if not (job.weights_revision or job.runtime_backend):
        return None
    return {
        "revision": job.weights_revision,
        "untrained": job.weights_untrained,
        "backend": job.runtime_backend,
        "precision": job.runtime_precision,
        "notice": UNTRAINED_NOTICE if job.weights_untrained else None,
    }
