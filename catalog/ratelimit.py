"""Abuse limits: counters shared by every web process, in Redis.

One small limiter serves the API (per key, per account, per model), the account pages
(login failures, sign-ups, password-reset mails) and the try page (per IP and per user).
It lives in ``catalog`` because that app depends on nothing: billing and playground use it.

Why not django-ratelimit alone: it counts with the cache's ``incr`` and can say "over the
limit", but it cannot report how many calls remain or when the window resets, which the
API's ``RateLimit-*`` and ``Retry-After`` headers need, and it cannot check several buckets
(key, account, model) in one atomic step. So the counting is one Lua script run by Redis:

* A bucket is a fixed window anchored at its first hit: ``INCR`` + ``PEXPIRE`` on the first
  one. ``limit`` hits pass in any ``window`` seconds counted from that first hit; the key's
  TTL is the exact time until the bucket empties, which is ``Retry-After``.
* ``hit`` admits a request only when *every* bucket it names has room, and then counts it in
  all of them. A refused request counts nowhere, so a client that keeps retrying while
  limited does not extend its own punishment, and one bucket's refusals never drain another.
* Redis runs a script atomically, so N processes (or machines) hitting the same bucket at
  once admit at most ``limit`` between them.

With no Redis URL (``VITRINE_LIMITS_REDIS_URL`` empty) the counters live in this process's
memory: correct for one process (``runserver``), not across several.

When Redis is unreachable the limiter fails open (logs a warning and admits): limits guard
against abuse, and an outage of the limiter should not take the whole API down with it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

KEY_PREFIX = "vitrine:limit:"

_SCRIPT = """
-- KEYS: the buckets; ARGV: limit_1, window_ms_1, ..., limit_n, window_ms_n, mode
-- mode: 'hit' (count in all if every bucket has room), 'add' (count unconditionally),
-- 'peek' (read only), 'release' (take one back from each non-empty bucket, its window kept).
-- Returns {allowed, count_1..count_n, pttl_1..pttl_n}.
local n = #KEYS
local mode = ARGV[2 * n + 1]
local counts = {}
local allowed = 1
for i = 1, n do
  counts[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  if counts[i] >= tonumber(ARGV[2 * i - 1]) then allowed = 0 end
end
if mode == 'add' or (mode == 'hit' and allowed == 1) then
  for i = 1, n do
    counts[i] = redis.call('INCR', KEYS[i])
    if counts[i] == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[2 * i]) end
  end
end
if mode == 'release' then
  allowed = 1
  for i = 1, n do
    if counts[i] > 0 then counts[i] = redis.call('DECR', KEYS[i]) end
  end
end
local result = {allowed}
for i = 1, n do result[#result + 1] = counts[i] end
for i = 1, n do
  local ttl = redis.call('PTTL', KEYS[i])
  if ttl == -1 then  -- a count without expiry (should not happen): give it its window
    redis.call('PEXPIRE', KEYS[i], ARGV[2 * i])
    ttl = tonumber(ARGV[2 * i])
  end
  result[#result + 1] = ttl
end
return result
"""


@dataclass(frozen=True)
class Bucket:
    """At most ``limit`` hits per ``window`` seconds for one (scope, identity)."""

    scope: str  # e.g. "api-key", "login-user"
    identity: str  # e.g. the key id, an IP, a normalised email (hashed before use)
    limit: int
    window: int  # seconds

    @property
    def key(self) -> str:
        # Hashed: emails and IPs do not sit in Redis in clear, and any identity fits a key.
        digest = hashlib.sha256(self.identity.encode()).hexdigest()[:32]
        return f"{KEY_PREFIX}{self.scope}:{digest}"


@dataclass(frozen=True)
class Decision:
    """The outcome for the most constrained bucket a request named."""

    allowed: bool
    limit: int
    remaining: int
    reset: int  # seconds until that bucket empties (0: it is empty)
    retry_after: int  # seconds to wait before a retry can pass; 0 when allowed
    scope: str = ""

    def headers(self) -> dict[str, str]:
        """IETF draft ``RateLimit-*`` fields, plus ``Retry-After`` when refused."""
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


def _seconds(ms: int) -> int:
    return max(0, math.ceil(ms / 1000))


def _decide(buckets: tuple[Bucket, ...], allowed: bool, counts, ttls_ms) -> Decision:
    rows = [
        (b, int(c), max(0, int(t)))  # PTTL -2: no such key, an empty bucket
        for b, c, t in zip(buckets, counts, ttls_ms, strict=True)
    ]
    if not allowed:
        # Every full bucket must empty before a retry can pass: wait for the slowest.
        full = [(b, c, t) for b, c, t in rows if c >= b.limit]
        bucket, _, ttl = max(full, key=lambda row: row[2])
        wait = max(1, _seconds(ttl))
        return Decision(False, bucket.limit, 0, wait, wait, bucket.scope)
    bucket, count, ttl = min(rows, key=lambda row: (row[0].limit - row[1], -row[2]))
    remaining = max(0, bucket.limit - count)
    return Decision(True, bucket.limit, remaining, _seconds(ttl), 0, bucket.scope)


# --- stores ------------------------------------------------------------------------------
class _MemoryStore:
    """One process's counters, for running without Redis (and for most tests)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, float]] = {}  # key -> (count, expires, monotonic)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()

    def run(self, buckets: tuple[Bucket, ...], mode: str):
        now = time.monotonic()
        with self._lock:
            state = []
            for b in buckets:
                count, expires = self._counts.get(b.key, (0, now))
                state.append((0, now) if expires <= now else (count, expires))
            allowed = all(count < b.limit for b, (count, _) in zip(buckets, state, strict=True))
            if mode == "add" or (mode == "hit" and allowed):
                for i, b in enumerate(buckets):
                    count, expires = state[i]
                    state[i] = (count + 1, expires if count else now + b.window)
                    self._counts[b.key] = state[i]
            if mode == "release":
                allowed = True
                for i, b in enumerate(buckets):
                    count, expires = state[i]
                    if count:
                        state[i] = (count - 1, expires)
                        self._counts[b.key] = state[i]
            counts = [count for count, _ in state]
            ttls = [int((expires - now) * 1000) if count else -2 for count, expires in state]
        return allowed, counts, ttls


class _RedisStore:
    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.script = self.client.register_script(_SCRIPT)
        self.slot_script = self.client.register_script(_SLOT_SCRIPT)

    def run(self, buckets: tuple[Bucket, ...], mode: str):
        args: list = []
        for b in buckets:
            args += [b.limit, b.window * 1000]
        result = self.script(keys=[b.key for b in buckets], args=[*args, mode])
        n = len(buckets)
        return bool(result[0]), result[1 : 1 + n], result[1 + n :]


memory_store = _MemoryStore()


@lru_cache(maxsize=8)
def _redis_store(url: str) -> _RedisStore:
    return _RedisStore(url)


def _store():
    url = settings.VITRINE_LIMITS_REDIS_URL
    return _redis_store(url) if url else memory_store


def _run(buckets: tuple[Bucket, ...], mode: str) -> Decision:
    if not buckets:
        return Decision(True, 0, 0, 0, 0)
    try:
        allowed, counts, ttls = _store().run(buckets, mode)
    except redis.RedisError as exc:  # fail open, loudly (see the module docstring)
        logger.warning("rate limiter unavailable, admitting: %s", exc)
        b = min(buckets, key=lambda b: b.limit)
        return Decision(True, b.limit, b.limit, b.window, 0, b.scope)
    return _decide(buckets, allowed, counts, ttls)


def minutes(seconds: int) -> int:
    """A Retry-After as the whole minutes a message names (at least one)."""
    return max(1, -(-seconds // 60))


def hit(*buckets: Bucket) -> Decision:
    """Admit and count one request if every bucket has room; otherwise count nothing."""
    return _run(buckets, "hit")


def add(*buckets: Bucket) -> Decision:
    """Count one event in every bucket whatever their state (e.g. a failed login)."""
    return _run(buckets, "add")


def peek(*buckets: Bucket) -> Decision:
    """Would a request pass now? Counts nothing."""
    return _run(buckets, "peek")


def release(*buckets: Bucket) -> Decision:
    """Take back one hit from each bucket (its window unchanged): a request admitted by
    ``hit`` as a would-be failure that turned out not to be one (a right password)."""
    return _run(buckets, "release")


def clear(*buckets: Bucket) -> None:
    """Forget the counts of these buckets (e.g. an operator unlocking an account)."""
    store = _store()
    if isinstance(store, _MemoryStore):
        with store._lock:
            for b in buckets:
                store._counts.pop(b.key, None)
    elif buckets:
        store.client.delete(*[b.key for b in buckets])


# --- who is asking ----------------------------------------------------------------------
def client_ip(request) -> str:
    """The caller's IP address.

    ``REMOTE_ADDR`` unless ``VITRINE_TRUSTED_PROXY_COUNT`` is N > 0: then the web process sits
    behind N proxies that each append to ``X-Forwarded-For``, and the address the outermost
    trusted proxy saw is the N-th from the right. Entries left of it are client-supplied and
    never trusted (a client can put anything there).
    """
    proxies = settings.VITRINE_TRUSTED_PROXY_COUNT
    remote = request.META.get("REMOTE_ADDR", "") or "unknown"
    if proxies <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) < proxies:
        return forwarded[0] if forwarded else remote
    return forwarded[-proxies]


def client_network(request) -> str:
    """The caller as a per-IP limit counts it: its IPv4 address, or its IPv6 address's /64.

    One IPv6 subscriber (a home line, a VPS, a phone) is given a whole /64 and picks any of
    its 2^64 addresses at will, so counting by the address gave each client unlimited free
    tries, sign-ups and reset requests; a /64 is the smallest block a subscriber is given
    (RFC 6177). An IPv4 address wrapped in IPv6 (``::ffff:a.b.c.d``) is that IPv4 address.
    """
    ip = client_ip(request)
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(address) >> 64 << 64, 64)))
    return ip


# --- concurrency: at most N at once -----------------------------------------------------
# A rate limit counts starts per window; some work must instead be bounded by how much of
# it is running at once (one account's webhook deliveries, whatever their rate). A slot is
# a member of a sorted set scored by when it lapses: one that is never given back (its
# process killed) lapses by itself, and no count can leak for good. Times are Redis's own
# clock (TIME), as its PEXPIREAT is: a worker whose clock was a minute behind set the key's
# expiry in the past, so Redis dropped every slot at once and no limit held; one ahead
# swept other workers' running slots away (session 43).
_SLOT_SCRIPT = """
-- KEYS[1]: the set; ARGV: (unused), lapse_ms, limit, member
redis.replicate_commands()  -- TIME before writes (Redis < 5; a no-op since 7)
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local lapses = now + tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[4]) == false
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], lapses, ARGV[4])
redis.call('PEXPIREAT', KEYS[1], lapses)
return 1
"""
_memory_slots: dict[str, dict[str, float]] = {}
_memory_slots_lock = threading.Lock()


def _slot_key(scope: str, identity: str) -> str:
    return Bucket(scope, identity, 0, 0).key


def slot_take(scope: str, identity: str, *, limit: int, lapse: float, member: str) -> bool:
    """Take one of ``limit`` slots of (scope, identity) for ``member`` for at most ``lapse``
    seconds; False when all are taken. Fails open when the limiter's Redis is away."""
    key, now = _slot_key(scope, identity), time.time()
    url = settings.VITRINE_LIMITS_REDIS_URL
    if not url:
        with _memory_slots_lock:
            held = {m: t for m, t in _memory_slots.get(key, {}).items() if t > now}
            if member not in held and len(held) >= limit:
                _memory_slots[key] = held
                return False
            _memory_slots[key] = held | {member: now + lapse}
            return True
    store = _redis_store(url)
    try:
        script = store.slot_script
        lapse_ms = max(1, int(lapse * 1000))
        return bool(script(keys=[key], args=[0, lapse_ms, limit, member]))
    except redis.RedisError as exc:
        logger.warning("concurrency limiter unavailable, admitting: %s", exc)
        return True


def slot_give(scope: str, identity: str, *, member: str) -> None:
    """Give back ``member``'s slot (it lapses anyway)."""
    key = _slot_key(scope, identity)
    url = settings.VITRINE_LIMITS_REDIS_URL
    if not url:
        with _memory_slots_lock:
            _memory_slots.get(key, {}).pop(member, None)
        return
    try:
        _redis_store(url).client.zrem(key, member)
    except redis.RedisError as exc:
        logger.warning("concurrency limiter unavailable: %s", exc)
