"""Provenance on every job (revision, backend, precision, untrained) and the refusal of paid
jobs on untrained weights. The task runs in this process on a real random-weight checkpoint;
test_job_worker.py checks the same fields through a real worker process."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from billing.models import Charge
from billing.services.keys import api_key_create
from billing.services.ledger import wallet_for
from billing.services.topups import credit_grant
from playground import services
from playground.failures import UNTRAINED_REFUSED
from playground.provenance import UNTRAINED_NOTICE
from playground.runtime.provenance import folder_digest, hub_commit, is_commit
from playground.tasks import run_detection
from tests import factories
from tests.playground.runtime_helpers import blocks_image, encode

PRICE = Decimal("0.0002")


@pytest.fixture
def storage(settings, tmp_path):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"


@pytest.fixture
def card(db, runtime_checkpoint):
    card = factories.card(checkpoint_local_dir=str(runtime_checkpoint("yolos_tiny")))
    factories.route(card=card, price=PRICE)
    return card


@pytest.fixture
def account(other_user):
    _, plaintext = api_key_create(user=other_user, name="ci")
    credit_grant(user=other_user, amount=Decimal("1.00"), reason="test")
    return {"user": other_user, "auth": f"Bearer {plaintext}"}


def paid_job(client, card, account) -> str:
    response = client.post(
        f"/v1/inference/{card.model_id}",
        data=encode(blocks_image(320, 240, seed=1), "JPEG"),
        content_type="image/jpeg",
        headers={"Authorization": account["auth"], "Prefer": "respond-async"},
    )
    assert response.status_code == 202, response.content
    return response.json()["id"]


def test_a_paid_job_on_untrained_weights_is_refused_and_not_charged(
    client, settings, storage, card, account
):
    settings.VITRINE_ALLOW_UNTRAINED = False
    job_id = paid_job(client, card, account)

    run_detection(job_id)

    response = client.get(f"/v1/jobs/{job_id}", headers={"Authorization": account["auth"]})
    body = response.json()
    assert body["status"] == "failed"
    assert body["error"] == {"code": "untrained_weights", "message": UNTRAINED_REFUSED}
    assert body["cost"] == "0"
    assert Charge.objects.get(job_id=job_id).status == Charge.Status.VOIDED
    assert wallet_for(account["user"]).balance == Decimal("1.00")
    # Refused, but the job still says what it would have run on.
    assert body["weights"]["untrained"] is True
    assert response["X-Vitrine-Weights"] == "untrained"


def test_allowed_untrained_weights_serve_and_say_so(client, settings, storage, card, account):
    settings.VITRINE_ALLOW_UNTRAINED = True
    job_id = paid_job(client, card, account)

    run_detection(job_id)

    response = client.get(f"/v1/jobs/{job_id}", headers={"Authorization": account["auth"]})
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["cost"] == "0.0002"
    assert response["X-Vitrine-Weights"] == "untrained"
    assert body["weights"] == {
        "revision": folder_digest(card.checkpoint_local_dir),
        "untrained": True,
        "backend": body["weights"]["backend"],
        "precision": "fp32",
        "notice": UNTRAINED_NOTICE,
    }
    assert body["weights"]["backend"].startswith("transformers ")
    assert ", cpu, pil preprocessing" in body["weights"]["backend"]


def test_a_free_try_on_untrained_weights_is_served_and_the_page_says_so(
    client, settings, storage, card, other_user
):
    settings.VITRINE_ALLOW_UNTRAINED = False
    # A try-page job: no charge reserved for it.
    job = services.job_create(
        card=card, image_bytes=encode(blocks_image(320, 240, seed=2)), owner=other_user
    )

    run_detection(str(job.pk))

    job.refresh_from_db()
    assert job.status == "succeeded"
    assert job.weights_untrained is True
    client.force_login(other_user)
    assert client.get(f"/playground/jobs/{job.pk}", headers={"Accept": "application/json"}).json()[
        "weights"
    ]["untrained"]
    page = client.get(f"/playground/jobs/{job.pk}").content.decode()
    assert "Untrained weights:" in page and "(untrained weights)" in page


def test_trained_weights_serve_paid_jobs_with_no_untrained_notice(
    client, settings, storage, card, account, tmp_path
):
    """A checkpoint without the marker (as every published one) is served with the setting
    off, and its provenance names its own folder digest."""
    settings.VITRINE_ALLOW_UNTRAINED = False
    trained = tmp_path / "trained"
    shutil.copytree(card.checkpoint_local_dir, trained)
    config = trained / "config.json"
    config.write_text(config.read_text().replace('"vitrine_untrained": true', '"x": 0'))
    card.checkpoint_local_dir = str(trained)
    card.save()
    job_id = paid_job(client, card, account)

    run_detection(job_id)

    response = client.get(f"/v1/jobs/{job_id}", headers={"Authorization": account["auth"]})
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["weights"]["untrained"] is False and body["weights"]["notice"] is None
    assert body["weights"]["revision"] == folder_digest(trained)
    assert "X-Vitrine-Weights" not in response


def test_the_folder_digest_changes_with_the_weights(tmp_path, runtime_checkpoint):
    copy = tmp_path / "copy"
    shutil.copytree(runtime_checkpoint("yolos_tiny"), copy)
    before = folder_digest(copy)
    assert before == folder_digest(runtime_checkpoint("yolos_tiny"))
    assert before.startswith("sha256:") and len(before) == 7 + 64
    (copy / "model.safetensors").write_bytes((copy / "model.safetensors").read_bytes()[:-1] + b"x")
    assert folder_digest(copy) != before


def test_the_hub_cache_resolves_a_branch_to_its_snapshot_commit(tmp_path, monkeypatch):
    """The layout huggingface_hub writes: refs/<branch> holds the commit of snapshots/<commit>."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--facebook--detr-resnet-50"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "no_timm").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))

    assert hub_commit("facebook/detr-resnet-50", "no_timm") == commit
    assert hub_commit("facebook/detr-resnet-50", "main") == ""
    assert hub_commit("facebook/other", commit) == commit  # a pinned commit is its own answer
    assert is_commit(commit) and not is_commit("no_timm")


def test_unrun_jobs_have_no_weights_yet(db, card, storage):
    job = services.job_create(card=card, image_bytes=encode(blocks_image(320, 240, seed=3)))
    from playground.provenance import weights_resource

    assert weights_resource(job) is None
    assert Path(card.checkpoint_local_dir).is_dir()
