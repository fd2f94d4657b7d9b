"""On PostgreSQL a job's INSERT is one prepared statement (``catalog.db.prepared_insert``);
elsewhere the ORM's. The same calls through each path must leave the same row and hand back
the same instance, and refuse the same bad values."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from django.db import DataError, connection, transaction
from django.forms.models import model_to_dict
from PIL import Image

from catalog import db
from playground import services
from playground.models import Job
from tests import factories

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the prepared INSERT is PostgreSQL's"
    ),
]
# Different on every job by nature: its id, its stored file's name, and its clock.
PER_JOB = {"id", "image_name", "created_at", "queued_at", "enqueued_at"}


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def fields(job: Job) -> dict:
    values = {f.attname: getattr(job, f.attname) for f in Job._meta.concrete_fields}
    return {k: v for k, v in values.items() if k not in PER_JOB}


@pytest.fixture
def orm_insert(monkeypatch):
    """job_create as it runs on any other database: the ORM's INSERT."""

    def orm(instance):
        instance.save(force_insert=True)
        return instance

    return lambda: monkeypatch.setattr(services, "prepared_insert", orm)


@pytest.fixture
def paid_call(settings, tmp_path, django_capture_on_commit_callbacks):
    settings.VITRINE_JOB_STORAGE = tmp_path / "jobs"
    card = factories.card()
    route = factories.route(card=card, price=Decimal("0.0002"))
    owner = factories.user(username="insert-owner")

    def create(**extra):
        with django_capture_on_commit_callbacks(execute=False):
            return services.job_create(
                card=card, route=route, owner=owner, image_bytes=png(),
                parameters={"threshold": 0.4, "box_format": "float"}, request_id="req-1", **extra,
            )  # fmt: skip

    return create


def test_the_prepared_insert_leaves_the_orms_row_and_instance(paid_call, orm_insert):
    prepared = paid_call()
    orm_insert()
    orm = paid_call()

    assert fields(prepared) == fields(orm)
    assert prepared._state.adding is False and prepared._state.db == orm._state.db
    stored = {j.pk: j for j in Job.objects.filter(pk__in=[prepared.pk, orm.pk])}
    assert model_to_dict(stored[prepared.pk], exclude=PER_JOB) == model_to_dict(
        stored[orm.pk], exclude=PER_JOB
    )
    assert fields(stored[prepared.pk]) == fields(prepared)  # what it handed back is the row
    assert stored[prepared.pk].created_at is not None
    assert stored[prepared.pk].parameters == {"threshold": 0.4, "box_format": "float"}


@pytest.mark.parametrize("path", ["prepared", "orm"])
def test_a_value_too_long_for_its_column_is_refused_not_cut(paid_call, orm_insert, path):
    if path == "orm":
        orm_insert()
    with pytest.raises(DataError), transaction.atomic():
        paid_call(queue="q" * 33)  # a 32-character column
    assert not Job.objects.exists()


def test_a_model_whose_database_computes_a_column_is_refused():
    from catalog.models import Organisation  # an auto-increment primary key

    with pytest.raises(TypeError, match="computes"):
        db.prepared_insert(Organisation(name="x", slug="x"))
