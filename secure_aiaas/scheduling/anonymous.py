"""Budgets for requests that carry no valid key, so anonymous floods cannot fill the trail.

Every request is audited, but a record per refused anonymous request would let anyone turn
requests into disk writes (~700 fsync'd bytes each). So requests without a valid key are
admitted to an individual record only within two budgets: per client address (a moving
window per minute) and for the whole replica (records per second, derived from a configured
byte budget). Requests over a budget get 429 and are *counted* instead (`RefusalTally`), and
the tally is written as one aggregate record per interval: count, window and a keyed hash of
each address, never the address itself. The trail stays complete; its growth is bounded.

Budgets live in Redis when it is configured (shared by replicas, through the `limits`
library) and in memory otherwise. If Redis fails, the in-memory budget takes over for the
time being: the bound holds per replica instead of across them, and nothing is let through
unrecorded.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import Counter
from dataclasses import dataclass

import structlog
from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

log = structlog.get_logger(__name__)

# A conservative size of one anonymous record on disk (row, indexes, WAL), for the budget.
RECORD_BYTES = 1024


@dataclass(frozen=True)
class AnonymousBudget:
    per_address_per_minute: int = 60
    # Bytes per second the trail may grow by anonymous records (per replica).
    audit_bytes_per_s: int = 16 * 1024

    @property
    def records_per_s(self) -> int:
        return max(1, self.audit_bytes_per_s // RECORD_BYTES)


class AnonymousLimiter:
    """Decides whether an unauthenticated request gets its own audit record."""

    def __init__(
        self,
        budget: AnonymousBudget,
        *,
        redis_url: str | None = None,
        key_prefix: str = "saiaas",
        timeout_s: float = 0.5,
    ) -> None:
        self.budget = budget
        self._per_address = RateLimitItemPerMinute(budget.per_address_per_minute)
        self._global = RateLimitItemPerSecond(budget.records_per_s)
        self._memory = MovingWindowRateLimiter(MemoryStorage())
        self._shared: MovingWindowRateLimiter | None = None
        self.backend = "memory"
        if redis_url:
            storage: Storage = RedisStorage(
                "async+" + redis_url,
                implementation="redispy",
                wrap_exceptions=True,
                key_prefix=f"{key_prefix}:anon",
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
            )
            self._shared = MovingWindowRateLimiter(storage)
            self.backend = "redis"
        self._degraded = False

    async def admit(self, address_key: str) -> bool:
        """True: record this request individually; False: over a budget (429, counted)."""
        limiter = self._shared
        if limiter is not None:
            try:
                allowed = await self._hit(limiter, address_key)
            except Exception as exc:  # noqa: BLE001 - Redis gone: the local budget holds
                if not self._degraded:
                    log.warning("anonymous_limit.redis_unavailable", error=type(exc).__name__)
                    self._degraded = True
            else:
                if self._degraded:
                    log.info("anonymous_limit.redis_recovered")
                    self._degraded = False
                return allowed
        return await self._hit(self._memory, address_key)

    async def _hit(self, limiter: MovingWindowRateLimiter, address_key: str) -> bool:
        if not await limiter.hit(self._per_address, "address", address_key):
            return False
        return await limiter.hit(self._global, "replica")


class RefusalTally:
    """Counts refused anonymous requests per keyed address hash until the next flush."""

    # Addresses named in one aggregate record; the rest are summed (the record stays small).
    MAX_ADDRESSES = 64

    def __init__(self, hash_key: bytes) -> None:
        self._key = hash_key
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._since = time.time()

    def address_key(self, address: str) -> str:
        """A keyed hash of a client address: correlates refusals, reveals no address."""
        return hmac.new(self._key, address.encode(), hashlib.sha256).hexdigest()[:16]

    def count(self, address_key: str) -> None:
        with self._lock:
            self._counts[address_key] += 1

    def take(self) -> tuple[dict[str, object], Counter[str], float] | None:
        """The tally since the last call: details of one aggregate record, plus what
        `give_back` needs if that record cannot be written (None: nothing counted)."""
        now = time.time()
        with self._lock:
            counts, self._counts = self._counts, Counter()
            since, self._since = self._since, now
        if not counts:
            return None
        top = dict(counts.most_common(self.MAX_ADDRESSES))
        details: dict[str, object] = {
            "refused": sum(counts.values()),
            "window_s": round(now - since, 3),
            "addresses": top,
            "other_addresses": len(counts) - len(top),
            "other_refused": sum(counts.values()) - sum(top.values()),
        }
        return details, counts, since

    def give_back(self, counts: Counter[str], since: float) -> None:
        """Return a tally whose record could not be written: it rides in the next one."""
        with self._lock:
            self._counts.update(counts)
            self._since = min(self._since, since)
