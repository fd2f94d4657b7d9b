# ruff: noqa: F811  (the fixtures imported from test_flavour_errors are parameters here)
"""Session 47's probe of an operator changing the catalogue while users call it: what a
call is (its Idempotency-Key's request, its result-cache fingerprint) must follow the
model's row and the weights that compute its answer, not its id nor its id's past.

- A renamed model's retry with the same Idempotency-Key was refused 422 via either id, and
  an identical Hugging Face call after a rename ran and paid again.
- The result cache answered from a job of other weights: after the card's repository
  changed (same revision), after a local folder was set beside a revision, and for a job
  queued under one revision that ran the next one (it also said it ran the first).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from playground import idempotency, pipeline
from playground.models import CachedCall, Job
from playground.tasks import run_detection
from tests import factories
from tests.playground.runtime_helpers import blocks_image, encode
from tests.playground.test_flavour_errors import (  # noqa: F401  (fixtures)
    account,
    card,
    funded,
    jpeg,
    post,
    storage,
    succeeded_job,
)

pytestmark = pytest.mark.django_db


def rename(card, slug: str) -> None:
    card.slug = slug
    card.save()  # records the former id (catalog.ModelIdAlias), as the admin's save does


@pytest.mark.parametrize("flavour", ["vitrine", "hf", "cloudflare"])
def test_a_retry_after_a_rename_replays_via_either_id(client, card, funded, storage, flavour):
    image = jpeg()
    job = succeeded_job(card, funded["user"], image)
    old_id = card.model_id
    asked = pipeline.request_print(
        flavour=flavour, card=card, route=card.routes.get(), image=image, threshold=0.5
    )
    idempotency.idempotent_job_record(user=funded["user"], key="k-1", print_=asked, job=job)
    rename(card, "renamed-detector")

    for model_id in (old_id, card.model_id):
        retry = post(client, flavour, model_id, funded, image, **{"Idempotency-Key": "k-1"})
        assert retry.status_code == 200, (model_id, retry.content)
        assert retry["X-Vitrine-Job-Id"] == str(job.pk)
        assert retry["Idempotent-Replayed"] == "true"
    assert Job.objects.count() == 1
    # Another request under the key is still refused.
    other = post(client, flavour, card.model_id, funded, jpeg(colour=(1, 2, 3)), **{
        "Idempotency-Key": "k-1"
    })  # fmt: skip
    assert other.status_code == 422


def test_a_retry_still_replays_once_another_model_took_the_old_id(client, card, funded, storage):
    """The old id's alias goes when another card takes the id; the retry is still the same
    request (outside check of session 47: it was a 422 from then on)."""
    image = jpeg()
    job = succeeded_job(card, funded["user"], image)
    asked = pipeline.request_print(
        flavour="vitrine", card=card, route=card.routes.get(), image=image, threshold=0.5
    )
    idempotency.idempotent_job_record(user=funded["user"], key="k-2", print_=asked, job=job)
    old_slug = card.slug
    rename(card, "renamed-detector")
    factories.card(organisation=card.organisation, slug=old_slug)  # takes the old id

    retry = post(client, "vitrine", card.model_id, funded, image, **{"Idempotency-Key": "k-2"})
    assert retry.status_code == 200, retry.content
    assert retry["X-Vitrine-Job-Id"] == str(job.pk)


def fingerprint(card, route=None, sha256="0" * 64):
    return pipeline.cache_fingerprint(
        card=card, route=route or card.routes.get(), sha256=sha256, threshold=0.5
    )


def test_the_cache_fingerprint_is_the_model_and_what_computes_its_answer(card):
    before = fingerprint(card)
    rename(card, "renamed-detector")
    assert fingerprint(card) == before  # the same model

    card.checkpoint_repo, card.checkpoint_revision = "facebook/detr-resnet-50", "main"
    card.save()
    at_main = fingerprint(card)
    card.checkpoint_repo = "someone/detr-finetuned"  # the same revision name, other weights
    assert fingerprint(card) != at_main
    card.checkpoint_local_dir = "/weights/detr-a"  # loaded before the Hub's, whatever the revision
    beside = fingerprint(card)
    assert beside != at_main
    card.checkpoint_local_dir = "/weights/detr-b"
    assert fingerprint(card) != beside

    provider = factories.route(
        card=card, slug="provider-x", is_own=False, provider_model_id="@cf/a/detr"
    )
    served_by_a = fingerprint(card, provider)
    provider.provider_model_id = "@cf/a/detr-v2"
    assert fingerprint(card, provider) != served_by_a


def test_a_job_that_ran_another_revision_is_no_hit_for_the_one_it_was_asked_under(card, funded):
    image = jpeg()
    card.checkpoint_revision = "main"
    card.save()
    job = succeeded_job(card, funded["user"], image)
    asked = fingerprint(card, sha256=pipeline.image_sha256(image))
    CachedCall.objects.create(owner=funded["user"], fingerprint=asked, job=job)

    Job.objects.filter(pk=job.pk).update(model_revision="main")
    assert pipeline.cached_job(user=funded["user"], print_=asked) == job
    # Queued under main, it ran v2 (an operator's change in between, undone since).
    Job.objects.filter(pk=job.pk).update(model_revision="v2")
    assert pipeline.cached_job(user=funded["user"], print_=asked) is None


def test_a_checkpoint_change_forgets_the_queued_jobs_cached_calls(card, funded, storage):
    """A job queued under one repository runs the next one's weights: the call that asked
    under the first is not answered from it, even once the repository is set back (outside
    check of session 47). Its running and finished jobs' answers stay."""
    from playground import services

    card.checkpoint_repo, card.checkpoint_revision = "hustvl/yolos-tiny", "main"
    card.save()
    image = jpeg()
    asked = fingerprint(card, sha256=pipeline.image_sha256(image))
    queued = services.job_create(card=card, image_bytes=image, owner=funded["user"])
    done = succeeded_job(card, funded["user"], jpeg(colour=(4, 5, 6)))
    for job in (queued, done):
        CachedCall.objects.create(owner=funded["user"], fingerprint=asked, job=job)

    card.summary = "A save that changes no checkpoint forgets nothing."
    card.save()
    assert CachedCall.objects.count() == 2
    card.checkpoint_repo = "probe/yolos-alt"
    card.save()
    assert list(CachedCall.objects.values_list("job_id", flat=True)) == [done.pk]


def test_a_job_records_the_revision_it_ran_not_the_one_it_was_queued_under(
    client, settings, storage, runtime_checkpoint, funded
):
    """The worker loads what the card names when it runs the job (the task, in process, on
    a real random-weight checkpoint)."""
    settings.VITRINE_ALLOW_UNTRAINED = True
    card = factories.card(
        checkpoint_local_dir=str(runtime_checkpoint("yolos_tiny")), checkpoint_revision="main"
    )
    factories.route(card=card, price=Decimal("0.0002"))
    response = client.post(
        f"/v1/inference/{card.model_id}",
        data=encode(blocks_image(160, 120, seed=3), "JPEG"),
        content_type="image/jpeg",
        headers={"Authorization": funded["auth"], "Prefer": "respond-async"},
    )
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    assert Job.objects.get(pk=job_id).model_revision == "main"
    card.checkpoint_revision = "v2"
    card.save()

    run_detection(job_id)

    job = Job.objects.get(pk=job_id)
    assert (job.status, job.model_revision) == ("succeeded", "v2")
    assert job.finished_at <= timezone.now()
