"""Charges per second on PostgreSQL with many users paying at once, in one command.

    .venv/bin/python bench/bench_charges.py                 # 20 s per scenario
    .venv/bin/python bench/bench_charges.py --seconds 5 --json /tmp/charges.json

Each client has its own database connection and runs the money path of an API call in a
loop: ``charge_reserve`` then ``charge_post`` (two transactions, as in production: the
reserve with the request, the post when the worker finishes). A client is a process of its
own, except in ``own_web``. Scenarios, one after another on the same route (a shared
price-route row):

- ``single``: 1 client on its own wallet (the baseline);
- ``own``: 16 clients, each on its own wallet (many users), 16 processes: 16 Python
  interpreters sharing the cores with PostgreSQL, the clients' harshest shape;
- ``own_web``: the same 16 clients as a web machine runs them (README, Production: 4
  uvicorn workers), 4 processes with a thread and a connection per client;
- ``shared``: 16 clients on one wallet (one busy customer; these must queue on its row);
- ``own_key``: as ``own``, each client calling with its own API key (no spend cap and no
  allow-list: the common case, checked in the same round trip).

On PostgreSQL ``charge_reserve`` and ``charge_post`` are one round trip each (PL/pgSQL
functions, ``billing/services/charges.py``); the report counts the SQL statements one
charge issues.

It prints charges/s, deadlocks (PostgreSQL's own count for the database, and the errors
the clients saw), the ledger check (all entries sum to zero, every transaction sums to
zero, every cached balance is the sum of its entries, every wallet of the run is exact)
and the CPU, and writes it all as JSON (default ``bench/results/charges.json``).

The database is ``DATABASE_URL`` or ``postgres://postgres@127.0.0.1:5432/vitrine_bench``;
it is created if missing and migrated. Each run adds its own users, card and route, so
runs never disturb each other's numbers or checks.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from machine import cpu_model  # bench/machine.py (bench/ is on the path)

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/vitrine_bench"
PRICE = Decimal("0.0000075")
FUNDS = Decimal("1000000")
# The web tier's shape (README, Production): 4 uvicorn workers per web machine, each
# running a paying call's reservation on its own thread with its own connection.
WEB_PROCESSES = 4


def ensure_database(url: str) -> None:
    """Create the database named in ``url`` if it does not exist yet."""
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # The bench's own users must start with exactly the funds it gives them.
    os.environ.setdefault("VITRINE_SIGNUP_CREDIT", "0")
    import django

    django.setup()


def backend_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) the PostgreSQL backend ``pid`` has used so far, read
    from /proc; None where the server is not on this machine or not readable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # Fields 14 and 15 of stat(5) (utime, stime), counted after the ")" of the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wal_lsn() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        return cursor.fetchone()[0]


def wal_bytes_since(lsn: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", [lsn])
        return int(cursor.fetchone()[0])


def client(
    route_id: int, assigned: list[tuple[int, int | None]], name: str, ready, seconds: float, out
) -> None:
    """One process: a thread per assigned (user, key), each with its own database
    connection (Django's are per thread), each running reserve + post in a loop until the
    time is up; the process reports the counts of all of them."""
    import threading

    setup_django()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.db.utils import OperationalError

    from billing.models import ApiKey
    from billing.services.charges import charge_post, charge_reserve
    from catalog.models import PriceRoute

    # As production runs (DEBUG off): Django does not log every query. With the
    # development default (DEBUG on) that log alone cost ~0.1-0.2 ms of client CPU per
    # charge, which is not what an API call pays.
    settings.DEBUG = False
    route = PriceRoute.objects.select_related("card").get(pk=route_id)
    counts = {"charges": 0, "deadlocks": 0, "errors": 0, "error_samples": []}
    backend_cpu = []
    lock = threading.Lock()
    set_up = threading.Barrier(len(assigned) + 1)
    go = threading.Barrier(len(assigned) + 1)

    def loop(index: int, user_id: int, key_id: int | None) -> None:
        user = get_user_model().objects.get(pk=user_id)
        # As the API's authentication hands it over: the key row, read once per request.
        api_key = ApiKey.objects.get(pk=key_id) if key_id is not None else None
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            backend_pid = cursor.fetchone()[0]
        set_up.wait()
        go.wait()  # every thread of every client is set up and connected: start together
        backend_start = backend_cpu_s(backend_pid)
        mine = {"charges": 0, "deadlocks": 0, "errors": 0, "error_samples": []}
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            n += 1
            job_id = uuid.uuid5(uuid.NAMESPACE_OID, f"{name}/{index}/{n}")
            try:
                charge_reserve(
                    job_id=job_id, user=user, card=route.card, route=route, api_key=api_key
                )
                charge_post(job_id=job_id)
                mine["charges"] += 1
            except OperationalError as exc:
                if "deadlock detected" in str(exc):
                    mine["deadlocks"] += 1
                else:
                    mine["errors"] += 1
                if len(mine["error_samples"]) < 3:
                    mine["error_samples"].append(str(exc).splitlines()[0])
            except Exception as exc:  # counted and reported; the run goes on
                mine["errors"] += 1
                if len(mine["error_samples"]) < 3:
                    mine["error_samples"].append(f"{type(exc).__name__}: {exc}"[:200])
        backend_end = backend_cpu_s(backend_pid)
        connection.close()
        with lock:
            for key in ("charges", "deadlocks", "errors"):
                counts[key] += mine[key]
            counts["error_samples"] = (counts["error_samples"] + mine["error_samples"])[:3]
            backend_cpu.append(
                None
                if backend_start is None or backend_end is None
                else backend_end - backend_start
            )

    threads = [
        threading.Thread(target=loop, args=(i, user_id, key_id))
        for i, (user_id, key_id) in enumerate(assigned)
    ]
    for thread in threads:
        thread.start()
    set_up.wait()  # this process's threads are connected
    ready.wait()  # and every other client process's: start together
    cpu_start = time.process_time()
    go.wait()
    for thread in threads:
        thread.join()
    counts["client_cpu_s"] = time.process_time() - cpu_start
    counts["backend_cpu_s"] = None if None in backend_cpu else sum(backend_cpu)
    connection.close()
    out.put(counts)


def pg_deadlocks() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
        return int(cursor.fetchone()[0])


def wallet_balance(user_id: int) -> Decimal:
    from billing.models import AccountKind, LedgerAccount

    return LedgerAccount.objects.get(kind=AccountKind.WALLET, user_id=user_id).balance


def ledger_check(users: dict[int, Decimal]) -> dict:
    """The whole ledger balances; this run's wallets are exact (start - price x charges)."""
    from django.db import connection
    from django.db.models import Count, Q

    from billing.models import Charge

    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(amount), 0) FROM billing_ledgerentry")
        total = cursor.fetchone()[0]
        cursor.execute(
            "SELECT count(*) FROM (SELECT transaction_id FROM billing_ledgerentry"
            " GROUP BY transaction_id HAVING sum(amount) <> 0 OR count(*) < 2) t"
        )
        unbalanced = cursor.fetchone()[0]
        # Cached balances (NULL for accounts that keep none) against their entries.
        cursor.execute(
            "SELECT count(*) FROM billing_ledgeraccount a WHERE a.balance IS NOT NULL"
            " AND a.balance <> (SELECT coalesce(sum(e.amount), 0) FROM billing_ledgerentry e"
            " WHERE e.account_id = a.id)"
        )
        cache_mismatches = cursor.fetchone()[0]
    wrong_wallets = []
    for user_id, start in users.items():
        held_or_paid = Charge.objects.filter(user_id=user_id).aggregate(
            n=Count("id", filter=~Q(status=Charge.Status.VOIDED))
        )["n"]
        expected = start - PRICE * held_or_paid
        if wallet_balance(user_id) != expected:
            wrong_wallets.append(user_id)
    ok = total == 0 and unbalanced == 0 and cache_mismatches == 0 and not wrong_wallets
    return {
        "ok": ok,
        "sum_of_all_entries": str(total),
        "unbalanced_transactions": unbalanced,
        "cached_balance_mismatches": cache_mismatches,
        "wrong_wallets": len(wrong_wallets),
    }


def statements_per_charge(route_id: int, *, with_key: bool) -> int:
    """The SQL statements one charge (reserve, then post, outside a transaction) issues,
    counted on a user of its own (so the scenario's wallets stay exact)."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from billing.services.charges import charge_post, charge_reserve
    from billing.services.keys import api_key_create
    from billing.services.topups import credit_grant
    from catalog.models import PriceRoute

    route = PriceRoute.objects.select_related("card").get(pk=route_id)
    user = get_user_model().objects.create_user(f"bench-statements-{uuid.uuid4().hex[:12]}")
    credit_grant(user=user, amount=FUNDS, reason="bench funds")
    api_key = api_key_create(user=user, name="bench")[0] if with_key else None
    # The user's first charge creates their revenue account if need be: not the hot path.
    first = charge_reserve(job_id=uuid.uuid4(), user=user, card=route.card, route=route)
    charge_post(job_id=first.job_id)
    job_id = uuid.uuid4()
    with CaptureQueriesContext(connection) as queries:
        charge_reserve(job_id=job_id, user=user, card=route.card, route=route, api_key=api_key)
        charge_post(job_id=job_id)
    return len(queries)


def run_scenario(
    name: str,
    assignments: list[tuple[int, int | None]],
    route_id: int,
    seconds: float,
    processes: int | None = None,
) -> dict:
    """``assignments``: (user, key) per client; the clients run as ``processes`` processes
    (round robin, a thread per client in each), or as a process each (None)."""
    from django.db import connection

    from billing.models import Charge

    statements = statements_per_charge(route_id, with_key=assignments[0][1] is not None)
    starts = {user_id: wallet_balance(user_id) for user_id, _ in assignments}
    deadlocks_before = pg_deadlocks()
    charges_before = Charge.objects.filter(user_id__in=starts).count()
    lsn_before = wal_lsn()
    connection.close()  # nothing inherited by the children
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    count = processes or len(assignments)
    groups = [assignments[i::count] for i in range(count)]
    ready = ctx.Barrier(count + 1)
    procs = [
        ctx.Process(
            target=client,
            args=(route_id, group, f"{name}-{os.getpid()}-{i}", ready, seconds, out),
        )
        for i, group in enumerate(groups)
    ]
    for proc in procs:
        proc.start()
    ready.wait(timeout=600)
    results = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    charges = sum(r["charges"] for r in results)
    wal_bytes = wal_bytes_since(lsn_before)  # includes the checks' few writes: none
    check = ledger_check(starts)
    backend_cpu = [r["backend_cpu_s"] for r in results]
    recorded = Charge.objects.filter(user_id__in=starts).count() - charges_before
    return {
        "scenario": name,
        "clients": len(assignments),
        "client_processes": count,
        "wallets": len(starts),
        "seconds": seconds,
        "charges": charges,
        "charges_per_s": round(charges / seconds, 1),
        "charges_recorded": recorded,
        "sql_statements_per_charge": statements,
        "deadlocks_seen_by_clients": sum(r["deadlocks"] for r in results),
        "deadlocks_postgresql": pg_deadlocks() - deadlocks_before,
        "errors": sum(r["errors"] for r in results),
        # Python + Django time in the clients per charge: what bounds charges/s on few cores.
        "client_cpu_ms_per_charge": round(
            1000 * sum(r["client_cpu_s"] for r in results) / max(charges, 1), 2
        ),
        # The PostgreSQL backends' CPU per charge (None if the server is not local), and
        # the WAL each charge writes (what the commits must flush).
        "backend_cpu_ms_per_charge": (
            None if None in backend_cpu else round(1000 * sum(backend_cpu) / max(charges, 1), 2)
        ),
        "wal_bytes_per_charge": round(wal_bytes / max(charges, 1)),
        "error_samples": [s for r in results for s in r["error_samples"]][:5],
        "ledger": check,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="per scenario (20)")
    parser.add_argument("--clients", type=int, default=16, help="per many-client scenario")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "charges.json")
    parser.add_argument(
        "--scenarios",
        default="single,own,own_web,shared,own_key",
        help="comma-separated: single,own,own_web,shared,own_key",
    )
    args = parser.parse_args()

    url = os.environ.setdefault("DATABASE_URL", DEFAULT_URL)
    if not url.startswith(("postgres://", "postgresql://")):
        parser.error("the bench runs on PostgreSQL: set DATABASE_URL to a postgres:// URL")
    ensure_database(url)
    setup_django()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from billing.services.keys import api_key_create
    from billing.services.topups import credit_grant
    from catalog.models import ModelCard, Organisation, PriceRoute, Task
    from catalog.services import price_route_save

    call_command("migrate", verbosity=0)
    run = uuid.uuid4().hex[:8]
    organisation = Organisation.objects.create(name=f"Bench {run}", slug=f"bench-{run}")
    card = ModelCard.objects.create(
        slug=f"bench-{run}",
        display_name=f"Bench {run}",
        summary="A detector to charge for.",
        status=ModelCard.Status.LIVE,
        organisation=organisation,
        task=Task.objects.get_or_create(
            slug="object-detection", defaults={"name": "Object detection"}
        )[0],
    )
    route = price_route_save(
        route=PriceRoute(card=card, slug="vitrine", provider="Vitrine", is_own=True, price=PRICE)
    )

    def users(count: int, label: str, *, keys: bool = False) -> list[tuple[int, int | None]]:
        """(user id, API key id or None) per client."""
        made = []
        for i in range(count):
            user = get_user_model().objects.create_user(f"bench-{run}-{label}-{i}")
            credit_grant(user=user, amount=FUNDS, reason="bench funds")
            key = api_key_create(user=user, name="bench")[0] if keys else None
            made.append((user.pk, key.pk if key else None))
        return made

    wanted = args.scenarios.split(",")
    plans = {
        "single": lambda: users(1, "single"),
        "own": lambda: users(args.clients, "own"),
        "own_web": lambda: users(args.clients, "own-web"),
        "shared": lambda: users(1, "shared") * args.clients,
        "own_key": lambda: users(args.clients, "own-key", keys=True),
    }
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        pg_version = cursor.fetchone()[0]
    results = []
    for name in wanted:
        processes = WEB_PROCESSES if name == "own_web" else None
        result = run_scenario(name, plans[name](), route.pk, args.seconds, processes)
        results.append(result)
        print(
            f"{name:>7}: {result['clients']:>2} clients on {result['wallets']:>2} wallet(s): "
            f"{result['charges_per_s']:>8.1f} charges/s ({result['charges']} in "
            f"{args.seconds:g} s), deadlocks {result['deadlocks_seen_by_clients']} "
            f"(PostgreSQL: {result['deadlocks_postgresql']}), errors {result['errors']}, "
            f"ledger {'ok' if result['ledger']['ok'] else 'WRONG ' + str(result['ledger'])}, "
            f"{result['sql_statements_per_charge']} SQL statements and "
            f"{result['client_cpu_ms_per_charge']} ms of client CPU, "
            f"{result['backend_cpu_ms_per_charge']} ms of PostgreSQL CPU and "
            f"{result['wal_bytes_per_charge']} bytes of WAL per charge",
            flush=True,
        )
        for sample in result["error_samples"]:
            print(f"        e.g. {sample}")
    by_name = {r["scenario"]: r for r in results}
    if "single" in by_name and by_name["single"]["charges_per_s"]:
        for name in ("own", "own_web", "shared", "own_key"):
            if name in by_name:
                ratio = by_name[name]["charges_per_s"] / by_name["single"]["charges_per_s"]
                by_name[name]["ratio_to_single"] = round(ratio, 2)
                print(f"{name:>7}: {ratio:.2f}x the single client")
    report = {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "postgresql": pg_version,
        "python": platform.python_version(),
        "price": str(PRICE),
        "results": results,
    }
    print(f"CPU: {report['cpu']} x {report['cpus']}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    failed = any(
        r["errors"] or r["deadlocks_seen_by_clients"] or not r["ledger"]["ok"] for r in results
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
