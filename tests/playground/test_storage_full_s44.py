"""An upload the disk cannot take (session 44's resource probe).

The job storage on a full tmpfs: each refused call answered 503 ``storage_unavailable``
and charged nothing, but left the file Django's storage had created, empty or cut short at
the point the disk ran out; no row names such a file, so retention never deletes it and it
kept the disk full. Here the operating system refuses the storage's write through a file
size limit (RLIMIT_FSIZE, EFBIG), as a full disk refuses it with ENOSPC: no root, no mount.
"""

from __future__ import annotations

import io
import resource
from decimal import Decimal

import pytest
from PIL import Image

from billing.models import Charge
from billing.services.keys import api_key_create
from billing.services.ledger import wallet_for
from playground.models import Job
from playground.storage import LocalJobStorage
from tests import factories

pytestmark = pytest.mark.django_db
LIMIT = 4096  # bytes a file of this process may grow to while the disk is "full"


def noise_png() -> bytes:
    """A PNG far above LIMIT (random pixels do not compress)."""
    buffer = io.BytesIO()
    Image.effect_noise((96, 96), 100).convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


class FullDiskStorage(LocalJobStorage):
    """The job storage on a disk that is full while ``full`` is set: each write runs under
    a file size limit of LIMIT bytes, so the OS cuts it short with EFBIG (Python ignores
    SIGXFSZ) as a full disk does with ENOSPC. Only the storage's own writes: the SQLite
    test database's file is written by the same process."""

    full = False

    def _save(self, name, content):
        if not FullDiskStorage.full:
            return super()._save(name, content)
        saved = resource.getrlimit(resource.RLIMIT_FSIZE)
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, saved[1]))
        try:
            return super()._save(name, content)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, saved)


def test_an_upload_the_disk_cannot_take_leaves_no_file_and_costs_nothing(
    client, settings, tmp_path, django_capture_on_commit_callbacks
):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    (tmp_path / "jobs").mkdir()
    backend = f"{FullDiskStorage.__module__}.{FullDiskStorage.__qualname__}"
    settings.STORAGES = {**settings.STORAGES, "jobs": {"BACKEND": backend}}
    user = factories.user()
    factories.funded(user, "1.00")
    _key, secret = api_key_create(user=user, name="disk")
    card = factories.card()
    factories.route(card=card)
    image = noise_png()
    assert len(image) > LIMIT

    def call(path: str, **headers):
        return client.post(
            f"{path}{card.model_id}",
            data=image,
            content_type="image/png",
            headers={"Authorization": f"Bearer {secret}", **headers},
        )

    FullDiskStorage.full = True
    try:
        answers = [
            call("/v1/inference/"),
            call("/v1/detections/"),
            call("/v1/detections/", Prefer="respond-async"),
        ]
    finally:
        FullDiskStorage.full = False

    for response in answers:
        assert (response.status_code, response["Retry-After"]) == (503, "5")
        assert response.json()["error"]["code"] == "storage_unavailable"
    assert list((tmp_path / "jobs").iterdir()) == []  # before the fix: 3 files of LIMIT bytes
    assert not Job.objects.exists() and not Charge.objects.exists()
    assert wallet_for(user).balance == Decimal("1.00")

    # Space again: the same call is taken and its upload kept whole.
    with django_capture_on_commit_callbacks():  # no worker: the job stays queued
        response = call("/v1/detections/", Prefer="respond-async")
    assert response.status_code == 202, response.content
    job = Job.objects.get()
    assert (tmp_path / "jobs" / job.image_name).read_bytes() == image
