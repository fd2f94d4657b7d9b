"""Database work of waiting API calls stays off Django's one thread-sensitive thread under
ASGI (so a burst of job creations does not hold up /healthz), and on the caller's thread
(with the test's transaction) under WSGI."""

from __future__ import annotations

import threading

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.test import AsyncRequestFactory, RequestFactory

from playground import events, offload
from tests import factories


def where() -> str:
    return threading.current_thread().name


@pytest.mark.django_db(transaction=True)
def test_under_asgi_database_work_runs_on_the_api_pool_not_the_shared_thread():
    request = AsyncRequestFactory().post("/v1/inference/x/y")

    async def both():
        shared = await sync_to_async(where)()  # where sync views and middleware run
        pooled = await offload.run_db(request, where)
        return shared, pooled

    shared, pooled = async_to_sync(both)()
    assert pooled.startswith("vitrine-db")
    assert pooled != shared


@pytest.mark.django_db
def test_under_wsgi_it_stays_on_the_callers_thread_and_sees_its_transaction():
    from django.contrib.auth import get_user_model

    factories.user(username="inside-the-test-transaction")
    request = RequestFactory().post("/v1/inference/x/y")
    caller = where()

    def seen() -> bool:
        return get_user_model().objects.filter(username="inside-the-test-transaction").exists()

    async def look():
        return await offload.run_db(request, where), await offload.run_db(request, seen)

    name, visible = async_to_sync(look)()
    assert name == caller
    assert visible  # the same connection: the uncommitted user is there


@pytest.mark.django_db(transaction=True)
def test_a_wait_reads_the_row_through_the_reader_it_is_given():
    looks = []

    async def reader():
        looks.append(await offload.run_db(AsyncRequestFactory().get("/"), where))
        return True

    assert async_to_sync(events.job_finished_wait)(
        "00000000-0000-0000-0000-000000000000", timeout=5, is_final=reader
    )
    assert looks and looks[0].startswith("vitrine-db")
