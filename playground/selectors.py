"""Reads of jobs by who is looking: a run's owner, anyone for a public run.

The owner of a job is its user (a try made signed in, or an API call with one of the
user's keys) or, for an anonymous try, the browser session that made it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import OuterRef, QuerySet, Subquery

from billing.models import Charge
from playground.models import Job


@dataclass(frozen=True)
class Viewer:
    """Who asks: a signed-in user, or an anonymous session (its key may be empty)."""

    user_id: int | None
    session_key: str = ""

    @classmethod
    def of(cls, request) -> Viewer:
        if request.user.is_authenticated:
            return cls(user_id=request.user.pk)
        # Never creates a session: a visitor with none owns nothing.
        return cls(user_id=None, session_key=request.session.session_key or "")

    def owns(self, job: Job) -> bool:
        if self.user_id is not None:
            return job.owner_id == self.user_id
        return (
            job.owner_id is None and bool(self.session_key) and job.session_key == self.session_key
        )

    def jobs(self) -> QuerySet[Job]:
        """The jobs this viewer owns (none for a visitor without a session)."""
        if self.user_id is not None:
            return Job.objects.filter(owner_id=self.user_id)
        if not self.session_key:
            return Job.objects.none()
        return Job.objects.filter(owner__isnull=True, session_key=self.session_key)


def job_for_viewer(*, job_id, viewer: Viewer) -> tuple[Job, bool] | None:
    """The job and whether ``viewer`` owns it; None when it does not exist or is private
    to someone else (the caller answers 404 for both: a private run's id reveals nothing)."""
    job = Job.objects.select_related("card__organisation", "route").filter(pk=job_id).first()
    if job is None:
        return None
    owner = viewer.owns(job)
    if not (owner or job.is_public):
        return None
    return job, owner


def runs_for_viewer(*, viewer: Viewer) -> QuerySet[Job]:
    """The viewer's runs, newest first, each with its charge's amount and status
    (``charge_amount``, ``charge_status``; None for a free try)."""
    charge = Charge.objects.filter(job_id=OuterRef("pk"))
    return (
        viewer.jobs()
        .select_related("card__organisation")
        .annotate(
            charge_amount=Subquery(charge.values("amount")[:1]),
            charge_status=Subquery(charge.values("status")[:1]),
        )
        .order_by("-created_at", "-pk")
    )


# The relations a job's JSON reads (model id, route slug, owner's wallet).
_HELD_RELATIONS = ("card", "route", "owner")


def job_reread(job: Job) -> Job:
    """The row of a job this request created or found, read again as it is now (status,
    result, timings), reusing the card, route and owner the request already loaded.

    A synchronous call answers from this read once its job ends: one indexed read of the
    row (and its webhook) instead of a five-table join, about 1.4 ms less ORM work per
    answer on a 2-core EPYC (issue 10's API overhead). A relation the request did not
    load, or that is not the row's, loads lazily as before."""
    fresh = Job.objects.select_related("webhook_delivery").get(pk=job.pk)
    for name in _HELD_RELATIONS:
        descriptor = getattr(Job, name)
        attname = descriptor.field.attname
        if descriptor.is_cached(job) and getattr(job, attname) == getattr(fresh, attname):
            descriptor.field.set_cached_value(fresh, descriptor.field.get_cached_value(job))
    return fresh
