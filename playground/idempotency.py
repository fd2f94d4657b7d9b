"""``Idempotency-Key`` on every paid call: a retry never creates or charges a second job.

A caller may send ``Idempotency-Key: <any printable ASCII up to 255 characters>`` with a
call that costs money (``POST /v1/inference/...`` with or without ``Prefer:
respond-async``, the Hugging Face and the Cloudflare flavours). Within
``VITRINE_IDEMPOTENCY_TTL`` (24 h):

- the same key with the same request (same flavour, model, route, image bytes and
  parameters: a *fingerprint*, so a new multipart boundary or JSON key order does not
  count as a change) answers from the first call's job: the same job, the same answer,
  no second charge;
- the same key with a different request is refused: 422 ``idempotency_key_reused``.

Concurrency: the record is inserted in the transaction that creates the job, under a
unique constraint on (account, key). A concurrent duplicate's insert waits on the first
one's row (PostgreSQL) and fails once it commits; the loser then reads the winner's record
and answers with its job. Nothing is recorded for a refused call (400, 402, ...): its
transaction rolls back, so a retry after fixing the wallet is a fresh call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from catalog import errors
from playground.models import CachedCall, IdempotencyRecord, Job

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255
KEY_REUSED = (
    "This Idempotency-Key was used within the last {hours} h for a different request "
    "(another model, route, image or parameters); use a new key for a new request."
)
BAD_KEY = "The Idempotency-Key header must be 1-255 printable ASCII characters."


def key_from(request) -> str | None:
    """The request's ``Idempotency-Key``, None when absent; 400 when malformed."""
    raw = request.headers.get(HEADER)
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not all(32 <= ord(c) < 127 for c in key):
        raise errors.ApplicationError(BAD_KEY, code="invalid_idempotency_key", param=HEADER)
    return key


def fingerprint(**parts) -> str:
    """A stable hash of what a call asks for (values must be JSON-serialisable)."""
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _cutoff():
    return timezone.now() - timedelta(seconds=settings.VITRINE_IDEMPOTENCY_TTL)


class Replay(NamedTuple):
    """What an earlier call with the key answered: its job, and whether that call was a
    cache hit (it ran and charged nothing, so neither does its replay's answer)."""

    job: Job
    cached: bool


class RequestPrint(NamedTuple):
    """What an Idempotency-Key's request is: the print stored with the key, and how to get
    the prints the same request was stored under before (only read when a stored print
    differs): by its model's id, current or former, before session 47, whose operator probe
    found a retry after a rename refused 422 via either id."""

    value: str
    former: Callable[[], Iterable[str]] = tuple

    def names(self, stored: str) -> bool:
        return stored == self.value or stored in set(self.former())


def _replay(record: IdempotencyRecord, print_: RequestPrint) -> Replay:
    if not print_.names(record.fingerprint):
        raise errors.ApplicationError(
            KEY_REUSED.format(hours=settings.VITRINE_IDEMPOTENCY_TTL // 3600),
            code="idempotency_key_reused",
            status=422,
            param=HEADER,
        )
    return Replay(record.job, record.cached)


def idempotent_job_find(*, user, key: str, print_: RequestPrint) -> Replay | None:
    """The job an earlier call with this key created (None if none within the TTL).

    Raises 422 when the key was used for a different request. Read before any work is
    done, so a plain retry decodes, stores and reserves nothing.
    """
    record = (
        IdempotencyRecord.objects.select_related("job")
        .filter(user=user, key=key, created_at__gte=_cutoff())
        .first()
    )
    return _replay(record, print_) if record else None


def idempotent_job_claim(*, user, key: str, print_: RequestPrint) -> Replay | None:
    """Reserve ``key`` for the call about to create a job; call inside its transaction.

    Returns None when the key is ours (then ``idempotent_job_bind`` it to the new job), or
    the job of a concurrent call that claimed the key first. A claim older than the TTL is
    dropped and the key reused.
    """
    IdempotencyRecord.objects.filter(user=user, key=key, created_at__lt=_cutoff()).delete()
    try:
        # A savepoint: on PostgreSQL a failed insert aborts the enclosing transaction.
        with transaction.atomic():
            IdempotencyRecord.objects.create(user=user, key=key, fingerprint=print_.value, job=None)
    except IntegrityError:
        record = IdempotencyRecord.objects.select_related("job").get(user=user, key=key)
        return _replay(record, print_)
    return None


def idempotent_job_bind(*, user, key: str, job: Job) -> None:
    IdempotencyRecord.objects.filter(user=user, key=key).update(job=job)


def idempotent_job_release(*, user, key: str) -> None:
    """Forget a key whose job failed or was cancelled (it charged nothing): run anew."""
    IdempotencyRecord.objects.filter(user=user, key=key).delete()


def idempotent_job_record(*, user, key: str, print_: RequestPrint, job: Job) -> None:
    """Name an existing job (a cache hit) under ``key``; a concurrent claim may win. Its
    replays answer as the hit did, charging nothing (``Replay.cached``)."""
    try:
        with transaction.atomic():
            IdempotencyRecord.objects.create(
                user=user, key=key, fingerprint=print_.value, job=job, cached=True
            )
    except IntegrityError:
        pass


def call_records_purge_expired(*, now=None) -> dict[str, int]:
    """Forget keys older than ``VITRINE_IDEMPOTENCY_TTL`` and result-cache entries older
    than ``VITRINE_HF_CACHE_TTL`` (run with the upload retention beat). Neither is read past
    its TTL anyway; this only keeps the tables small."""
    now = now or timezone.now()
    keys, _ = IdempotencyRecord.objects.filter(
        created_at__lt=now - timedelta(seconds=settings.VITRINE_IDEMPOTENCY_TTL)
    ).delete()
    cached, _ = CachedCall.objects.filter(
        created_at__lt=now - timedelta(seconds=settings.VITRINE_HF_CACHE_TTL)
    ).delete()
    return {"idempotency_keys_deleted": keys, "cache_entries_deleted": cached}


def cached_calls_forget_queued(sender, card, **kwargs) -> None:
    """``catalog.models.checkpoint_changed``: the card's queued jobs will run its new
    checkpoint, so they are no answer for the calls that asked under the old one (the result
    cache's fingerprint names the checkpoint). Session 47's outside check: a job queued
    under one repository ran the next one's weights, and once the repository was set back,
    an identical call was answered from it."""
    from playground.models import JobStatus

    CachedCall.objects.filter(job__card=card, job__status=JobStatus.QUEUED).delete()
