"""Job webhooks: the finished job POSTed, signed, to a URL the caller gave, safely.

Signing: ``Vitrine-Signature: t=<unix seconds>,v1=<hex>`` where ``<hex>`` is
HMAC-SHA256, keyed with the account's webhook secret (dashboard), over the bytes
``<t>.<body>``. For 24 hours after a rotation the header carries two ``v1`` signatures,
the previous secret's first and the current one's last (Stripe's format): a receiver
accepts the delivery when any of them matches, so one still checking the old secret keeps
working, and one that keeps only the last ``v1`` checks the current secret as before. A
receiver recomputes it, compares in constant time and refuses a ``t`` too far from its
clock (replays). ``Vitrine-Webhook-Id`` is the job id: delivery is at least once, so a
receiver dedupes on it.

The body is the job resource as ``GET /v1/jobs/<id>`` shows it, less its ``webhook``
object (the delivery's own state, stale in the very delivery that succeeds). Its URLs are
absolute: on ``SITE_URL`` when it is set, else on the site the job was created on (the
creating request's scheme and host, kept on the delivery's row).

Never a request to our own network (SSRF): the URL is checked when the job is created
(http or https, no credentials, a host name or a public IP literal that resolves); at
delivery the host is resolved again, *every* resolved address must be public (not
loopback, private, link-local, multicast, reserved, unspecified, shared (CGNAT), nor an
IPv4 address wrapped in IPv6 (mapped, 6to4, Teredo, NAT64) that is one of those; the
cloud metadata addresses 169.254.169.254 and fd00:ec2::254 are link-local and private),
and the connection goes to the checked address itself, so a DNS answer that changes in
between (rebinding) is never used. Decimal, octal and hex host forms (``2130706433``,
``0177.0.0.1``) resolve to the address they mean and are checked as such. Redirects are
not followed (a 3xx is a failed attempt); connect and read are bounded by timeouts and at
most ``MAX_RESPONSE_BYTES`` of the answer are read. ``VITRINE_WEBHOOK_ALLOW_HOSTS`` exempts
listed IPs/networks from the guard, for tests only.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import ipaddress
import json
import logging
import random
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from catalog import ratelimit
from catalog.errors import ApplicationError
from playground.failures import account_is_closed
from playground.models import Job, WebhookDelivery

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "Vitrine-Signature"
ID_HEADER = "Vitrine-Webhook-Id"
EVENT_HEADER = "Vitrine-Event"
EVENT = "job.finished"
USER_AGENT = "Vitrine-Webhooks/1"
MAX_URL_LENGTH = 2000
MAX_RESPONSE_BYTES = 64 * 1024

BAD_SCHEME = "'webhook' must be an http:// or https:// URL."
HAS_CREDENTIALS = "'webhook' must not carry a user name or password; sign-check the body instead."
BAD_HOST = "'webhook' has no valid host name."
BAD_PORT = "'webhook' has an invalid port."
TOO_LONG = "'webhook' is longer than {limit} characters."
NOT_RESOLVED = "The webhook host '{host}' does not resolve."
# The address a name resolves to is not repeated: a caller would map our internal DNS
# (db.internal -> 10.x) through the message.
NOT_PUBLIC = (
    "The webhook host '{host}' is not a public internet address, or resolves to one that is "
    "not (loopback, private, link-local, metadata, multicast or reserved)."
)
REDIRECTED = "The receiver answered {status} (a redirect); redirects are not followed."
TOO_SLOW = (
    "No complete answer within {seconds} s (VITRINE_WEBHOOK_ATTEMPT_TIMEOUT): answer 2xx at "
    "once and do the work afterwards."
)


class WebhookRefused(Exception):
    """The URL or one of its addresses may not be called: a final failure, not retried."""


# --- the address guard ------------------------------------------------------------------
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# IANA's special-purpose blocks that are not globally reachable, written out so the guard
# does not depend on which of them this Python's ``ipaddress`` knows (it changed in 3.12/13).
_SPECIAL = [
    ipaddress.ip_network(block)
    for block in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/127", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "3fff::/20",
        "5f00::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
]  # fmt: skip


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address carries (mapped, 6to4, Teredo, NAT64)."""
    found = []
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in _NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [
        ipaddress.ip_network(item, strict=False) for item in settings.VITRINE_WEBHOOK_ALLOW_HOSTS
    ]


def address_is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for an address on the public internet; every special range is refused."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False
        embedded = _embedded_ipv4(address)
        if embedded and not all(address_is_public(v4) for v4 in embedded):
            return False
        if address.ipv4_mapped is not None:
            return True  # judged as the IPv4 address it is
    special = (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
        or any(address in block for block in _SPECIAL if block.version == address.version)
    )
    return not special and address.is_global


def address_allowed(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Public, or exempted by VITRINE_WEBHOOK_ALLOW_HOSTS (tests)."""
    if any(
        address in network for network in _allowed_networks() if network.version == address.version
    ):
        return True
    return address_is_public(address)


def resolve_checked(host: str, port: int) -> list[tuple[int, str]]:
    """Resolve ``host`` and return its (family, address) pairs, all allowed; raises
    ``WebhookRefused`` when it does not resolve or when *any* address is not allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError):
        raise WebhookRefused(NOT_RESOLVED.format(host=host)) from None
    checked: list[tuple[int, str]] = []
    for family, _, _, _, sockaddr in infos:
        text = sockaddr[0]
        address = ipaddress.ip_address(text.split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and len(sockaddr) > 3 and sockaddr[3]:
            address = ipaddress.IPv6Address(f"{address}%{sockaddr[3]}")
        if not address_allowed(address):
            raise WebhookRefused(NOT_PUBLIC.format(host=host))
        if (family, text) not in checked:
            checked.append((family, text))
    if not checked:
        raise WebhookRefused(NOT_RESOLVED.format(host=host))
    return checked


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as in the URL, for the Host header and TLS
    port: int
    path: str  # path and query


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _is_host_name(host: str) -> bool:
    try:
        host.encode("idna")
    except UnicodeError:
        return False
    labels = host.rstrip(".").split(".")
    return all(labels) and all(len(label) <= 63 for label in labels) and len(host) <= 253


def parse_url(url: str) -> Target:
    """Check the URL's form (no resolution); raises ``WebhookRefused`` with the reason."""
    if not isinstance(url, str) or not url:
        raise WebhookRefused(BAD_SCHEME)
    if len(url) > MAX_URL_LENGTH:
        raise WebhookRefused(TOO_LONG.format(limit=MAX_URL_LENGTH))
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise WebhookRefused(BAD_HOST)
    try:
        # A bracketed host that is no IPv6 address ("http://[1::2::3]/", "http://[::1/")
        # is a ValueError here: it was a 500 (session 46's probe).
        parts = urlsplit(url)
    except ValueError:
        raise WebhookRefused(BAD_HOST) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise WebhookRefused(BAD_SCHEME)
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise WebhookRefused(HAS_CREDENTIALS)
    host = parts.hostname or ""
    try:
        port = parts.port
        if port is None:
            port = 443 if parts.scheme.lower() == "https" else 80
    except ValueError:
        raise WebhookRefused(BAD_PORT) from None
    if not host or port == 0:
        raise WebhookRefused(BAD_HOST if not host else BAD_PORT)
    if not _is_ip_literal(host) and not _is_host_name(host):
        raise WebhookRefused(BAD_HOST)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(scheme=parts.scheme.lower(), host=host, port=port, path=path)


# The creation check's lookups run here, each given CREATION_RESOLVE_TIMEOUT seconds. The
# call that asks waits on one of the API's few database threads (playground/offload.py:
# VITRINE_API_DB_CONCURRENCY, 8); a webhook host whose own name server never answers held
# it for the system resolver's whole retry schedule (glibc: 5 s a try, 2 tries, for A and
# AAAA), so 8 such calls, well within one key's rate limit, would hold every paid call of
# the web process. A lookup that outlives its wait finishes on its own in this small pool
# (threads start on first use, never in a parent before a fork); its call is refused.
CREATION_RESOLVE_TIMEOUT = 2.0
NOT_RESOLVED_IN_TIME = (
    "The webhook host '{host}' did not resolve within {seconds:g} s; check its DNS and retry."
)
_resolver = ThreadPoolExecutor(max_workers=4, thread_name_prefix="vitrine-webhook-dns")


def webhook_url_validate(url: str) -> str:
    """The check at job creation: a 400 ``invalid_webhook`` (param ``webhook``) naming what
    is wrong, for a non-http(s) URL, credentials in it, a bad host, a host that does not
    resolve (within ``CREATION_RESOLVE_TIMEOUT``) or one that resolves to a non-public
    address."""
    try:
        target = parse_url(url)
        lookup = _resolver.submit(resolve_checked, target.host, target.port)
        try:
            lookup.result(timeout=CREATION_RESOLVE_TIMEOUT)
        except FutureTimeout:
            lookup.cancel()  # still queued behind slow lookups: never started
            message = NOT_RESOLVED_IN_TIME.format(
                host=target.host, seconds=CREATION_RESOLVE_TIMEOUT
            )
            raise WebhookRefused(message) from None
    except WebhookRefused as exc:
        raise ApplicationError(str(exc), code="invalid_webhook", param="webhook") from None
    return url


# --- signing --------------------------------------------------------------------------
def sign(*, secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.<body>`` with the account's secret."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(
    *, secret: str, timestamp: int, body: bytes, previous: str | None = None
) -> str:
    """``t=<timestamp>,v1=<hex>``; with ``previous`` (the secret a rotation replaced, within
    its 24 hours) ``t=<timestamp>,v1=<previous's hex>,v1=<hex>``: the current signature last,
    where a verifier that keeps only the last ``v1`` (a dict of the fields) finds it."""
    signatures = [previous] if previous else []
    signatures.append(secret)
    return ",".join(
        [f"t={timestamp}"]
        + [f"v1={sign(secret=key, timestamp=timestamp, body=body)}" for key in signatures]
    )


# --- one HTTP attempt to a checked address ----------------------------------------------
class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever the host name resolves to now."""

    def __init__(self, host, port, *, address: str, connect_timeout: float, **kwargs):
        super().__init__(host, port, **kwargs)
        self._address = address
        self._connect_timeout = connect_timeout

    def connect(self):
        self.sock = socket.create_connection(
            (self._address, self.port), timeout=self._connect_timeout
        )
        self.sock.settimeout(self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host, port, *, address: str, connect_timeout: float, **kwargs):
        super().__init__(host, port, context=ssl.create_default_context(), **kwargs)
        self._address = address
        self._connect_timeout = connect_timeout

    def connect(self):
        raw = socket.create_connection((self._address, self.port), timeout=self._connect_timeout)
        raw.settimeout(self.timeout)
        # Certificate checked against the URL's host name (SNI too), not the address.
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


@dataclass(frozen=True)
class Attempt:
    status: int | None
    error: str

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def post_signed(url: str, *, body: bytes, headers: dict[str, str]) -> Attempt:
    """One POST to ``url``: the guard, then the request to the checked address. Raises
    ``WebhookRefused`` for an address that may not be called; network errors are returned
    as a failed ``Attempt``."""
    target = parse_url(url)
    addresses = resolve_checked(target.host, target.port)
    connection_class = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    # The whole attempt, every address, is bounded: the read timeout bounds each read, and a
    # receiver dripping its answer a byte at a time held a worker for as long as it liked
    # (39 s for a 40 s drip, until the task's 60 s soft limit, whose failure then waited an
    # hour for the sweep). At the deadline the socket is shut down under the blocked read.
    seconds = settings.VITRINE_WEBHOOK_ATTEMPT_TIMEOUT
    deadline = time.monotonic() + seconds
    too_slow = TOO_SLOW.format(seconds=seconds)
    last_error = ""
    for _, address in addresses:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return Attempt(None, too_slow)
        connection = connection_class(
            target.host,
            target.port,
            address=address,
            connect_timeout=min(settings.VITRINE_WEBHOOK_CONNECT_TIMEOUT, remaining),
            timeout=min(settings.VITRINE_WEBHOOK_READ_TIMEOUT, remaining),
        )
        cut, held = threading.Event(), []
        timer = threading.Timer(remaining, _cut, args=(connection, cut, held))
        timer.daemon = True
        timer.start()
        try:
            try:
                connection.request("POST", target.path, body=body, headers=headers)
            except (OSError, http.client.HTTPException) as exc:
                connection.close()
                if cut.is_set():
                    return Attempt(None, too_slow)
                last_error = f"connect to {address}: {type(exc).__name__}: {exc}"
                continue  # the next checked address, if any
            # Kept for the deadline: an answer that closes the connection (HTTP/1.0, or
            # Connection: close) has http.client drop ``connection.sock`` as it reads the
            # head, and the body is then read from this socket all the same.
            held.append(connection.sock)
            try:
                response = connection.getresponse()
                response.read(MAX_RESPONSE_BYTES)  # bounded; the rest is dropped with the socket
            except (OSError, http.client.HTTPException) as exc:
                return Attempt(
                    None, too_slow if cut.is_set() else f"{type(exc).__name__}: {exc}"[:300]
                )
            finally:
                connection.close()
        finally:
            timer.cancel()
        if cut.is_set():
            # The deadline cut a body still trickling in: a read of a known length ends
            # quietly short at the shutdown, no exception (a 2xx head then a body a byte at a
            # time counted as delivered). No complete answer in time: retried.
            return Attempt(None, too_slow)
        if 300 <= response.status < 400:
            return Attempt(response.status, REDIRECTED.format(status=response.status))
        error = "" if 200 <= response.status < 300 else f"HTTP {response.status}"
        return Attempt(response.status, error)
    return Attempt(None, last_error[:300])


def _cut(connection: http.client.HTTPConnection, cut: threading.Event, held: list) -> None:
    """The attempt's deadline: end the connection under whatever read or write is blocked
    on it (shutdown wakes a blocked recv; close alone does not). ``held``: the connected
    socket, once the request went out (``connection.sock`` may be gone by then)."""
    cut.set()
    sock = held[0] if held else connection.sock
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed: the attempt ended as it fired
            sock.shutdown(socket.SHUT_RDWR)


# --- the job side -----------------------------------------------------------------------
def site_of(request) -> str:
    """The absolute base (``scheme://host[:port]``, no trailing slash) of the site a request
    came to: what the API's answers to it build their URLs on."""
    return request.build_absolute_uri("/").rstrip("/")


def webhook_register(*, job: Job, url: str, request=None) -> WebhookDelivery:
    """Attach a (validated) webhook to a job being created, in its transaction. The
    creating ``request``'s site is kept with it: the body's URLs are built on it when
    ``SITE_URL`` is empty (a worker has no request to build them from)."""
    site = site_of(request) if request is not None else ""
    return WebhookDelivery.objects.create(job=job, url=url, site_url=site)


# The longest countdown a message is sent with. A worker holds a countdown's message
# unacknowledged until it runs: past RabbitMQ's consumer_timeout (30 min by default) the
# server closes the worker's channel and the Celery worker exits ("PRECONDITION_FAILED -
# delivery acknowledgement timed out"), and past Redis's visibility timeout the message is
# handed out again. A longer backoff (VITRINE_WEBHOOK_RETRY_MAX allows an hour) goes in
# steps: the message carries when its attempt is due, and one that runs before then is
# sent on again for the rest.
MAX_COUNTDOWN = 600


def _enqueue(
    delivery_id: int,
    *,
    attempts: int | None,
    countdown: float = 0,
    due: float | None = None,
    started: float | None = None,
) -> bool:
    """Send the message for the attempt after ``attempts`` (the number it must find), in
    ``countdown`` seconds (or at ``due``, a Unix time), in steps of at most MAX_COUNTDOWN.
    ``started``: the message only checks whether the attempt claimed then ever ended
    (``webhook_deliver``). False when it could not be sent (noted: ``_unsent``)."""
    from playground.tasks import deliver_webhook

    if due is None and countdown > MAX_COUNTDOWN:
        due = time.time() + countdown
    if due is not None:
        countdown = due - time.time()
    when = due if due is not None else time.time() + countdown
    kwargs = {"due": due} if due is not None and countdown > MAX_COUNTDOWN else {}
    if started is not None:
        kwargs["started"] = started
    countdown = max(0.0, min(countdown, MAX_COUNTDOWN))
    try:
        deliver_webhook.apply_async(
            (delivery_id, attempts),
            kwargs,
            queue=settings.VITRINE_WEBHOOK_QUEUE,
            countdown=countdown,
        )
    except Exception as exc:  # the reaper's next sweep sends it (``resend_at``)
        logger.warning("webhook %s: not enqueued (%s: %s)", delivery_id, type(exc).__name__, exc)
        _unsent(delivery_id, when)
        return False
    return True


def _unsent(delivery_id: int, when: float) -> None:
    """Note on the delivery that its message, due at ``when`` (a Unix time), was not sent:
    the reaper's next sweep sends it (``webhooks_sweep``). With the database away too, the
    sweep of lost messages finds it later (``VITRINE_WEBHOOK_RETRY_MAX`` + 300 s)."""
    from datetime import UTC, datetime

    try:
        WebhookDelivery.objects.filter(pk=delivery_id).update(
            resend_at=datetime.fromtimestamp(when, tz=UTC)
        )
    except DatabaseError as exc:
        logger.warning("webhook %s: its unsent message not noted (%s)", delivery_id, exc)


ACCOUNT_CLOSED = "The account was closed: nothing is sent for it any more."
SLOT_SCOPE = "webhook-account"
TURN_WAIT = (
    5.0  # seconds (and up to as many again) before a delivery that waited its turn looks again
)


def webhooks_close_owner(*, owner_id: int) -> int:
    """A closed account's webhooks: the ones not sent yet never will be, and every address
    it gave (a URL may carry its own token) is forgotten. The number stopped."""
    deliveries = WebhookDelivery.objects.filter(job__owner_id=owner_id)
    Status = WebhookDelivery.Status
    stopped = deliveries.filter(status__in=(Status.WAITING, Status.PENDING)).update(
        status=Status.FAILED, last_error=ACCOUNT_CLOSED, url=""
    )
    deliveries.exclude(url="").update(url="")
    return stopped


def webhook_job_finished(job_id) -> None:
    """Called after the commit that ended a job: queue its webhook, if it has one. Never
    raises into the caller (a worker finishing a job): a webhook left waiting is found by
    the reaper's sweep (``webhooks_sweep``)."""
    try:
        waiting = WebhookDelivery.objects.filter(
            job_id=job_id, status=WebhookDelivery.Status.WAITING
        )
        pk = waiting.values_list("pk", flat=True).first()
        if pk is not None and waiting.filter(pk=pk).update(status=WebhookDelivery.Status.PENDING):
            _enqueue(pk, attempts=0)
    except Exception:
        logger.exception("job %s: webhook not queued; the reaper will", job_id)


def retry_delay(attempts: int) -> int:
    """Seconds before the next try after ``attempts`` failed ones: base, doubling, capped."""
    base, cap = settings.VITRINE_WEBHOOK_RETRY_BASE, settings.VITRINE_WEBHOOK_RETRY_MAX
    return min(base * 2 ** max(attempts - 1, 0), cap)


def webhook_body(job: Job, *, site: str = "") -> bytes:
    """The finished job resource, as the jobs API shows it (one serializer), its URLs
    absolute on ``SITE_URL`` or else ``site`` (where the job was created), and without its
    ``webhook`` object: the delivery's state before this very attempt, stale in it."""
    from playground.serializers import job_data

    data = job_data(job, request=None, site=site)
    data.pop("webhook", None)
    return json.dumps(data, separators=(",", ":")).encode()


def webhook_deliver(
    *,
    delivery_id: int,
    attempts: int | None = None,
    due: float | None = None,
    started: float | None = None,
) -> str:
    """One delivery attempt; records it and schedules the next on failure. Returns the
    delivery's status afterwards ("" when there was nothing to do). A message that comes
    before its attempt is ``due`` (a long backoff sent in steps: ``MAX_COUNTDOWN``) is sent
    on for the rest of the wait, and nothing else is done.

    The attempt is claimed first with a compare-and-set on the attempt count the message
    carries (``attempts``), so two copies of one message (a redelivery: Redis hands an
    ETA message out again after its visibility timeout, and backoffs can be longer) make
    one attempt, never two. A copy that finds its attempt claimed but never ended (the
    worker making it was killed: the broker hands its message out again) looks again once
    that attempt's deadline has passed (``started``): still unended, it counts as failed
    and the next is scheduled, where it waited for the sweep (over an hour).
    """

    if due is not None and due - time.time() > 1:
        _enqueue(delivery_id, attempts=attempts, due=due)
        return ""
    delivery = (
        WebhookDelivery.objects.select_related(
            "job__card__organisation", "job__route", "job__owner"
        )
        .filter(pk=delivery_id, status=WebhookDelivery.Status.PENDING)
        .first()
    )
    if delivery is None or not delivery.job.is_final or delivery.job.owner is None:
        return ""
    if account_is_closed(delivery.job.owner):
        # A closed account (billing/services/accounts.py): nothing more goes to its
        # addresses, and no signing secret is made again for it. An account an operator
        # only suspended (unticked "active") still gets the answers of the jobs it was
        # charged for: they were failed as "closed", their address erased, and nothing
        # went out once it was active again (session 47's operator probe).
        WebhookDelivery.objects.filter(
            pk=delivery.pk, status=WebhookDelivery.Status.PENDING
        ).update(status=WebhookDelivery.Status.FAILED, last_error=ACCOUNT_CLOSED, url="")
        return WebhookDelivery.Status.FAILED
    expected = delivery.attempts if attempts is None else attempts
    if started is not None:
        return _attempt_lost(delivery, expected, started)
    # The account's share of the webhooks queue: while VITRINE_WEBHOOK_PER_ACCOUNT of its
    # attempts run (a slow receiver's, say), this one waits its turn, no attempt counted,
    # and the workers go on with other accounts' deliveries (one account's receiver that
    # held its answers held every worker, and every account's webhooks waited behind it).
    owner, member = str(delivery.job.owner_id), f"{delivery.pk}:{expected}"
    lapse = _attempt_lapse()
    if not ratelimit.slot_take(
        SLOT_SCOPE, owner, limit=settings.VITRINE_WEBHOOK_PER_ACCOUNT, lapse=lapse, member=member
    ):
        _enqueue(delivery.pk, attempts=expected, countdown=TURN_WAIT * (1 + random.random()))
        return ""
    try:
        return _attempt(delivery, expected)
    finally:
        ratelimit.slot_give(SLOT_SCOPE, owner, member=member)


def _attempt_lapse() -> float:
    """Seconds after its claim by which an attempt has ended, one way or another."""
    return settings.VITRINE_WEBHOOK_ATTEMPT_TIMEOUT + settings.VITRINE_WEBHOOK_CONNECT_TIMEOUT


WORKER_LOST = "The delivering worker was lost during the attempt."
DID_NOT_FINISH = "The attempt did not finish ({error}); the next one is scheduled."
UNDER_WAY = "Attempt under way."


def _attempt_lost(delivery: WebhookDelivery, expected: int, started: float) -> str:
    """Attempt ``expected + 1``, claimed at ``started``, past its deadline: if it never
    recorded its end (still marked under way, ``last_attempt_at`` still its claim's), its
    worker died in it; it counts as a failed attempt and the next is scheduled as after
    any."""
    from datetime import UTC, datetime, timedelta

    number = expected + 1
    # The claim's time went through a float: matched within a millisecond, not exactly.
    claimed_at, slack = datetime.fromtimestamp(started, tz=UTC), timedelta(milliseconds=1)
    now = timezone.now()
    final = number >= settings.VITRINE_WEBHOOK_MAX_ATTEMPTS
    Status = WebhookDelivery.Status
    ended = not WebhookDelivery.objects.filter(
        pk=delivery.pk,
        status=Status.PENDING,
        attempts=number,
        last_error=UNDER_WAY,
        last_attempt_at__gte=claimed_at - slack,
        last_attempt_at__lte=claimed_at + slack,
    ).update(
        status=Status.FAILED if final else Status.PENDING,
        last_status_code=None,
        last_error=WORKER_LOST,
        last_attempt_at=now,
    )
    if ended:
        return ""
    logger.warning("webhook %s: attempt %s lost with its worker", delivery.pk, number)
    if final:
        return Status.FAILED
    _enqueue(delivery.pk, attempts=number, countdown=retry_delay(number))
    return Status.PENDING


def _attempt(delivery: WebhookDelivery, expected: int) -> str:
    """Claim attempt ``expected + 1`` of ``delivery`` and make it (``webhook_deliver``)."""
    from billing.services.webhook_secrets import webhook_signing_secrets

    # The claim marks the attempt under way (its end always writes its own outcome over
    # the mark): a mark still there past the attempt's deadline is an attempt that died.
    claimed = WebhookDelivery.objects.filter(
        pk=delivery.pk, status=WebhookDelivery.Status.PENDING, attempts=expected
    ).update(
        attempts=expected + 1, last_attempt_at=timezone.now(), last_error=UNDER_WAY, resend_at=None
    )
    if not claimed:
        # Another copy of this message made this attempt, or is making it, or was killed
        # making it: while it is marked under way, look again after its deadline
        # (``_attempt_lost``).
        claimed_at = (
            WebhookDelivery.objects.filter(
                pk=delivery.pk,
                status=WebhookDelivery.Status.PENDING,
                attempts=expected + 1,
                last_error=UNDER_WAY,
            )
            .values_list("last_attempt_at", flat=True)
            .first()
        )
        if claimed_at is not None:
            started = claimed_at.timestamp()
            _enqueue(
                delivery.pk,
                attempts=expected,
                countdown=max(0.0, started + _attempt_lapse() + 1 - time.time()),
                started=started,
            )
        return ""
    number = expected + 1
    job = delivery.job
    body = webhook_body(job, site=delivery.site_url)
    from playground.services import db_now

    # The database's clock, not this machine's: a receiver refuses a `t` off its own by more
    # than its tolerance (300 s in the README), and a worker 400 s ahead had every delivery
    # refused until its attempts ran out (session 43).
    now = db_now()
    timestamp = int(now.timestamp())
    secret, previous = webhook_signing_secrets(user=job.owner, at=now)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        ID_HEADER: str(job.pk),
        EVENT_HEADER: EVENT,
        SIGNATURE_HEADER: signature_header(
            secret=secret, previous=previous, timestamp=timestamp, body=body
        ),
    }
    refused = False
    try:
        attempt = post_signed(delivery.url, body=body, headers=headers)
    except WebhookRefused as exc:
        attempt, refused = Attempt(None, str(exc)[:300]), True
    except Exception as exc:  # the task's soft time limit, or a bug: a failed attempt
        # Recorded and the next one scheduled, as for any failed attempt: left marked under
        # way, the delivery waited for the sweep, over an hour (session 46's probe).
        logger.exception("webhook %s: attempt %s did not finish", delivery.pk, number)
        attempt = Attempt(None, DID_NOT_FINISH.format(error=type(exc).__name__))
    now = timezone.now()
    if attempt.ok:
        status = WebhookDelivery.Status.DELIVERED
    elif refused or number >= settings.VITRINE_WEBHOOK_MAX_ATTEMPTS:
        status = WebhookDelivery.Status.FAILED
    else:
        status = WebhookDelivery.Status.PENDING
    WebhookDelivery.objects.filter(pk=delivery.pk, attempts=number).update(
        status=status,
        last_status_code=attempt.status,
        last_error=attempt.error,
        last_attempt_at=now,
        delivered_at=now if attempt.ok else None,
    )
    logger.info(
        "webhook_attempt",
        extra={"job_id": str(job.pk), "attempt": number, "status_code": attempt.status,
               "outcome": status, "error": attempt.error},
    )  # fmt: skip
    if status == WebhookDelivery.Status.PENDING:
        _enqueue(delivery.pk, attempts=number, countdown=retry_delay(number))
    return status


def webhooks_sweep(*, now=None) -> int:
    """Deliveries whose message was not sent (the broker was away: ``resend_at``), sent
    for when they were due; and those whose message was lost: pending with no attempt for
    longer than the longest backoff, or still waiting for a job that ended that long ago
    (the process that ended it died before queueing the webhook). Send them again; the
    attempt count in the message keeps a late original from making a second attempt. Run
    by the reaper. Returns how many were sent."""
    from datetime import timedelta

    from django.db.models import Q

    count = 0
    unsent = WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.PENDING, resend_at__isnull=False
    )
    for pk, attempts, resend_at in unsent.values_list("pk", "attempts", "resend_at")[:500]:
        if not _enqueue(pk, attempts=attempts, due=resend_at.timestamp()):
            return count  # the broker is still away: the next sweep tries again
        WebhookDelivery.objects.filter(pk=pk, resend_at=resend_at).update(resend_at=None)
        count += 1
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.VITRINE_WEBHOOK_RETRY_MAX + 300)
    Status = WebhookDelivery.Status
    orphaned = WebhookDelivery.objects.filter(
        status=Status.WAITING, job__status__in=Job.FINAL, job__finished_at__lt=stale
    )
    orphaned.update(status=Status.PENDING)  # no attempt yet: picked up just below
    lost = WebhookDelivery.objects.filter(status=Status.PENDING).filter(
        Q(last_attempt_at__lt=stale) | Q(last_attempt_at__isnull=True, job__finished_at__lt=stale)
    )
    for pk, attempts in lost.values_list("pk", "attempts")[:500]:
        count += _enqueue(pk, attempts=attempts)
    return count
