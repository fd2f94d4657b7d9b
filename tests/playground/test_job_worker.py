"""Jobs end to end: a real worker process runs the real detector on random-weight checkpoints."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from playground import services
from playground.models import Job
from playground.runtime import CheckpointSpec, decode_image, get_detector
from playground.runtime.provenance import folder_digest
from tests import factories
from tests.conftest import wait_for

pytestmark = pytest.mark.worker


@pytest.fixture(scope="session")
def checkpoints(runtime_checkpoint):
    """Random-weight YOLOS tiny and DETR R50 (published architectures) with test-sized
    inputs: a worker's model load, warm-up and forward pass take seconds, not minutes,
    on a busy machine, so no time limit or wait in these tests depends on its speed."""
    return {family: runtime_checkpoint(family) for family in ("yolos_tiny", "detr")}


def photo(width=320, height=240) -> bytes:
    image = Image.new("RGB", (width, height), (40, 120, 200))
    for x in range(60, 200):
        for y in range(50, 150):
            image.putpixel((x, y), (230, 200, 40))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture
def storage(settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"


def card_for(checkpoint):
    return factories.card(checkpoint_local_dir=str(checkpoint))


# Random weights score every class near 1/num_labels, under the default 0.05 floor: a lower
# floor keeps detections to compare.
FLOOR = "0.002"


@pytest.mark.parametrize("family", ["yolos_tiny", "detr"])
def test_a_worker_runs_a_job_end_to_end(start_worker, storage, checkpoints, family):
    worker = start_worker(env_extra={"VITRINE_DETECTION_FLOOR": FLOOR})
    image = photo()
    job = services.job_create(card=card_for(checkpoints[family]), image_bytes=image)

    def finished():
        job.refresh_from_db()
        return job.is_final

    wait_for(finished, timeout=240, interval=0.5, message=worker.output())
    assert (job.status, job.attempts, job.error_code) == ("succeeded", 1, ""), worker.output()
    assert set(job.timings) >= {"decode", "preprocess", "forward", "postprocess"}
    # The same detections the runtime gives in this process: the real detector ran.
    spec = CheckpointSpec(local_dir=str(checkpoints[family]))
    (expected,) = get_detector(spec).detect(
        [decode_image(image, max_pixels=10**8)], threshold=float(FLOOR)
    )
    assert len(job.result) == len(expected.detections) > 0
    for got, want in zip(job.result, expected.detections, strict=True):
        assert got["label"] == want["label"]
        assert abs(got["score"] - want["score"]) < 1e-4
        assert all(abs(got["box"][k] - want["box"][k]) <= 1 for k in want["box"])
        assert 0 <= got["box"]["xmin"] <= got["box"]["xmax"] <= 320
    assert job.attempt_log.get().outcome == "succeeded"
    # Provenance recorded by the worker process: the loaded folder's digest, and the marker.
    assert job.weights_revision == folder_digest(checkpoints[family])
    assert job.weights_untrained is True
    assert (job.runtime_precision, job.runtime_backend[:13]) == ("fp32", "transformers ")


def test_missing_weights_fail_the_job_without_a_crash(start_worker, storage, tmp_path):
    worker = start_worker()
    job = services.job_create(card=card_for(tmp_path / "nowhere"), image_bytes=photo())
    wait_for(lambda: Job.objects.get(pk=job.pk).is_final, timeout=120, message=worker.output())
    job.refresh_from_db()
    assert (job.status, job.error_code) == ("failed", "weights_not_installed")
    assert worker.proc.poll() is None


def test_a_job_survives_kill_9_of_its_worker_and_finishes_once(start_worker, storage, checkpoints):
    # A short lease so the lost attempt's lease runs out soon after its heartbeat stops
    # (the whole worker is gone: its unacked message stays with the broker, so only the
    # reaper can bring the job back).
    limits = {"VITRINE_JOB_LEASE": "3", "VITRINE_REAPER_INTERVAL": "1"}
    first = start_worker(env_extra=limits)
    job = services.job_create(card=card_for(checkpoints["detr"]), image_bytes=photo(640, 480))
    wait_for(lambda: Job.objects.get(pk=job.pk).status == "running", timeout=120, interval=0.05)
    first.kill_hard()
    job.refresh_from_db()
    assert job.status == "running"  # the dead worker still holds it

    schedule = str(first.log.parent / "beat-schedule")
    second = start_worker("--beat", "--schedule", schedule, env_extra=limits)
    wait_for(
        lambda: Job.objects.get(pk=job.pk).is_final, timeout=240, interval=0.5,
        message=second.output(),
    )  # fmt: skip
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("succeeded", 2), second.output()
    outcomes = list(job.attempt_log.values_list("number", "outcome"))
    assert outcomes == [(1, "lost"), (2, "succeeded")]
    assert job.result is not None


def test_a_paid_call_runs_on_a_worker_and_posts_its_charge_once(
    client, start_worker, storage, checkpoints, other_user, settings
):
    from decimal import Decimal

    from billing.models import Charge
    from billing.services.keys import api_key_create
    from billing.services.ledger import wallet_for
    from billing.services.topups import credit_grant

    worker = start_worker(env_extra={"VITRINE_DETECTION_FLOOR": FLOOR})
    card = card_for(checkpoints["yolos_tiny"])
    factories.route(card=card, price=Decimal("0.0002"))
    credit_grant(user=other_user, amount=Decimal("0.0005"), reason="test")
    _, key = api_key_create(user=other_user, name="e2e")

    # The call waits on the job's finished signal: a long wait costs nothing when it is fast.
    settings.VITRINE_SYNC_WAIT = 600
    response = client.post(
        f"/v1/inference/{card.model_id}?threshold={FLOOR}",
        data=photo(),
        content_type="image/jpeg",
        headers={"Authorization": f"Bearer {key}"},
    )

    assert response.status_code == 200, (response.content, worker.output())
    detections = response.json()
    assert detections and set(detections[0]) == {"label", "score", "box"}
    assert response["X-Vitrine-Cost"] == "0.0002"
    assert response["X-Vitrine-Balance"] == "0.0003"
    charge = Charge.objects.get(job_id=response["X-Vitrine-Job-Id"])
    assert (charge.status, charge.amount) == ("posted", Decimal("0.0002"))
    assert wallet_for(other_user).balance == Decimal("0.0003")


def test_a_failed_job_costs_nothing(client, start_worker, storage, other_user, tmp_path, settings):
    from decimal import Decimal

    from billing.models import Charge
    from billing.services.keys import api_key_create
    from billing.services.ledger import wallet_for
    from billing.services.topups import credit_grant

    settings.VITRINE_SYNC_WAIT = 600  # answered on the job's finished signal
    start_worker()
    card = card_for(tmp_path / "weights-not-here")
    factories.route(card=card, price=Decimal("0.0002"))
    credit_grant(user=other_user, amount=Decimal("1"), reason="test")
    _, key = api_key_create(user=other_user, name="e2e")

    response = client.post(
        f"/v1/inference/{card.model_id}", data=photo(), content_type="image/jpeg",
        headers={"Authorization": f"Bearer {key}"},
    )  # fmt: skip

    assert response.status_code == 503
    body = response.json()["error"]
    assert (body["code"], body["type"], body["cost"]) == (
        "weights_not_installed", "service_unavailable", "0",
    )  # fmt: skip
    assert Charge.objects.get(job_id=body["job"]).status == "voided"
    assert wallet_for(other_user).balance == Decimal("1")


def test_a_worker_groups_queued_jobs_of_one_model_into_one_batch(
    start_worker, storage, checkpoints
):
    """Three jobs in one batch (decoded on the worker's decode threads), and beside them in
    the same burst an upload that became garbage and one that is gone: those two fail on
    their own, with their own codes, and the batch still runs the other three."""
    from playground.storage import job_storage, upload_delete

    card = card_for(checkpoints["yolos_tiny"])
    # Queued before any worker runs, as a burst would be.
    jobs = [services.job_create(card=card, image_bytes=photo()) for _ in range(5)]
    corrupt, missing = jobs[1], jobs[3]
    job_storage().delete(corrupt.image_name)
    job_storage().save(corrupt.image_name, io.BytesIO(b"\xff\xd8\xff" + b"\x00" * 500))
    upload_delete(missing.image_name)
    worker = start_worker(env_extra={"VITRINE_BATCH_SIZE": "5", "VITRINE_DETECTION_FLOOR": FLOOR})

    def all_done():
        return all(Job.objects.get(pk=j.pk).is_final for j in jobs)

    wait_for(all_done, timeout=240, interval=0.5, message=worker.output())
    done = [Job.objects.get(pk=j.pk) for j in jobs]
    assert [(j.status, j.error_code) for j in done] == [
        ("succeeded", ""), ("failed", "corrupt_image"), ("succeeded", ""),
        ("failed", "image_missing"), ("succeeded", ""),
    ], worker.output()  # fmt: skip
    good = [done[0], done[2], done[4]]
    assert [j.timings["batch"] for j in good] == [3, 3, 3]
    assert [j.attempts for j in done] == [1] * 5  # the other messages found them claimed
    # The pool process's return named the five jobs it ended; the worker's main process
    # acknowledged the four other messages itself, handing none of them to the pool.
    log = worker.output()
    assert sorted(re.findall(r"job (\S+): ended in another job's batch", log)) == sorted(
        str(j.pk) for j in jobs[1:]
    ), log
    assert "ended here with another job's batch" not in log, log
    assert good[0].result == good[1].result == good[2].result  # same image, same detections


@pytest.mark.skipif(
    __import__("django.db").db.connection.vendor != "postgresql",
    reason="PostgreSQL backends are what a reconnect costs (SQLite opens a file)",
)
def test_a_worker_keeps_its_database_connection_between_jobs(start_worker, storage, checkpoints):
    """Celery's Django fix-up closed every connection around every task: a new PostgreSQL
    backend (~7 ms) per job. The worker now recycles it as Django recycles a request's."""
    from urllib.parse import urlencode

    from django.db import connection

    from tests.conftest import database_url

    name = f"vitrine-worker-{id(checkpoints)}"
    url = database_url(connection.settings_dict) + "?" + urlencode({"application_name": name})
    start_worker(env_extra={"DATABASE_URL": url})
    card = card_for(checkpoints["yolos_tiny"])

    def backends() -> set[int]:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s", [name])
            return {row[0] for row in cursor.fetchall()}

    seen = []
    for _ in range(3):
        job = services.job_create(card=card, image_bytes=photo())

        def finished(job=job):
            job.refresh_from_db()
            return job.is_final

        wait_for(finished, timeout=240, interval=0.2)
        assert job.status == "succeeded"
        seen.append(backends())
    assert seen[0], "the worker held no connection after its job"
    assert seen[0] == seen[1] == seen[2]

    # A database restart between jobs (here: the worker's backends terminated) costs a
    # reconnect, not a failed job: the kept connection is checked before the next task's
    # first statement, the claim's prepared statement included (catalog.db.prepared_row).
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            [name],
        )
    # Gone, as after a restart: their goodbye is on the worker's socket.
    wait_for(lambda: not backends() & seen[0], timeout=30, interval=0.05)
    job = services.job_create(card=card, image_bytes=photo())
    wait_for(lambda: job.refresh_from_db() or job.is_final, timeout=240, interval=0.2)
    assert (job.status, job.error_code, job.attempts) == ("succeeded", "", 1)
    after = backends()
    assert after and after.isdisjoint(seen[0])
