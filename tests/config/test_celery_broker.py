"""The Celery app's configuration source and its Redis channel, against a real Redis.

Both exist for speed (a job message is sent inside the paid call); what is tested here is
that they change nothing else: Celery reads Django's ``CELERY_*`` settings and its own
defaults as before, and messages keep arriving across a dropped connection and a new pool.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from kombu import Connection, Queue

from config.celery import app
from config.settings.env import redis_client_url
from playground.broker import RedisChannel, RedisTransport


def test_celery_reads_djangos_celery_settings_and_its_own_defaults():
    assert app.conf.task_acks_late is settings.CELERY_TASK_ACKS_LATE is True
    assert app.conf.worker_prefetch_multiplier == settings.CELERY_WORKER_PREFETCH_MULTIPLIER
    assert app.conf.task_time_limit == settings.CELERY_TASK_HARD_TIME_LIMIT
    assert app.conf.broker_transport_options == settings.CELERY_BROKER_TRANSPORT_OPTIONS
    assert app.conf.beat_schedule == settings.CELERY_BEAT_SCHEDULE
    # Set nowhere in Django's settings: Celery's own default.
    assert not hasattr(settings, "CELERY_RESULT_EXPIRES")
    assert app.conf.result_expires == timedelta(days=1)


def test_a_change_to_the_apps_configuration_wins_over_the_settings():
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = "elsewhere"
    try:
        assert app.conf.task_default_queue == "elsewhere"
    finally:
        app.conf.task_default_queue = previous
    assert app.conf.task_default_queue == settings.CELERY_TASK_DEFAULT_QUEUE


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:6379/0", "rediss://cache.internal:6380/0", "redis+socket:///tmp/r.sock"],
)
def test_every_redis_broker_url_gets_the_channel_that_keeps_its_client(url):
    assert isinstance(Connection(url).transport, RedisTransport)


def test_other_brokers_keep_their_transport():
    assert not isinstance(Connection("amqp://guest@127.0.0.1:5672//").transport, RedisTransport)


def _waiting(client: redis.Redis, queue: str) -> int:
    return client.llen(queue)


def test_messages_arrive_across_a_dropped_connection_and_a_new_pool(broker_url):
    """One client for every message of a channel; when Redis drops its connections the
    next message is still sent, and a new pool (kombu makes one after a fork) gets a new
    client that sends."""
    queue = Queue(f"test-channel-{uuid.uuid4().hex}")
    server = redis.Redis.from_url(redis_client_url(broker_url))
    with Connection(broker_url) as connection:
        channel = connection.default_channel
        assert isinstance(channel, RedisChannel)
        producer = connection.Producer(channel)
        try:
            producer.publish({"n": 1}, routing_key=queue.name, declare=[queue])
            client = channel._sync_client
            producer.publish({"n": 2}, routing_key=queue.name)
            assert channel._sync_client is client  # one client, not one per message
            assert _waiting(server, queue.name) == 2

            # Redis closes every normal connection (a restart, a failover, a timeout).
            server.client_kill_filter(_type="normal", skipme=True)
            producer.publish({"n": 3}, routing_key=queue.name)
            assert _waiting(server, queue.name) == 3

            channel._disconnect_pools()  # what kombu does in a forked child
            producer.publish({"n": 4}, routing_key=queue.name)
            assert channel._sync_client is not client
            assert channel._sync_client.connection_pool is channel.pool
            assert _waiting(server, queue.name) == 4
            received = [channel.basic_get(queue.name, no_ack=True) for _ in range(4)]
            assert [m.decode()["n"] for m in received] == [1, 2, 3, 4]
        finally:
            server.delete(queue.name)
            server.close()
