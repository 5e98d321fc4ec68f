"""Per-tenant and per-key request quotas and per-tenant concurrency, in Redis or in memory.

Rates use a *sliding-window counter* per minute (the current minute's count plus the previous
minute's, weighted by how much of it still overlaps the last 60 s): O(1) memory per limit, no
boundary burst of twice the limit as with a plain fixed window. Concurrency uses leases: a
sorted set of tokens scored by their expiry, so a replica that dies mid-request cannot leak
slots for longer than ``lease_ttl_s`` (the TTL safety net).

With Redis, one Lua script checks every limit of the request and, only if all pass, takes
them: one round trip, atomic across replicas, and a refused request consumes nothing. Redis'
own clock (``TIME``) is used, so replicas' clocks need not agree. If Redis is configured but
unreachable the request is refused (503, `QuotaUnavailableError`): never unlimited.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

import structlog

from secure_aiaas.errors import OverloadedError, RateLimitedError
from secure_aiaas.types import Principal, TenantLimits

log = structlog.get_logger(__name__)

WINDOW_S = 60
# Codes returned by the check (also the audited/metric reason for a refusal).
REASONS = {1: "tenant_rpm", 2: "key_rpm", 3: "tenant_concurrency"}
TOKEN_REASONS = {1: "tenant_tpm", 2: "key_tpm", 3: "tenant_streams"}


class QuotaExceededError(RateLimitedError):
    """429 + Retry-After; ``limit`` names which limit refused (audited, a metric label)."""

    def __init__(self, limit: str, retry_after: float) -> None:
        super().__init__(retry_after=retry_after)
        self.limit = limit


class QuotaUnavailableError(OverloadedError):
    """The shared quota store is configured but unreachable: refuse (503), never unlimited."""

    code = "quota_unavailable"
    public_message = "quota store unavailable; request refused"


class Admission:
    """A request's place within its tenant's limits; `release` frees its concurrency slot."""

    def __init__(self, release: Callable[[], Awaitable[None]] | None = None) -> None:
        self._release = release

    async def release(self) -> None:
        """Free the slot (idempotent; errors are logged: the lease expires on its own)."""
        release, self._release = self._release, None
        if release is None:
            return
        try:
            await release()
        except Exception as exc:  # noqa: BLE001 (the TTL safety net frees the slot anyway)
            log.warning("quota.release_failed", error=type(exc).__name__)


UNLIMITED = Admission()


class TokenGrant:
    """A generation admitted within its tenant's token and stream limits.

    ``settle(used)`` charges the tokens it really used (prompt + completion) and frees its
    stream slot; call it once the generation ended, however it ended (idempotent).
    """

    def __init__(self, settle: Callable[[int], Awaitable[None]] | None = None) -> None:
        self._settle = settle

    async def settle(self, used_tokens: int) -> None:
        settle, self._settle = self._settle, None
        if settle is None:
            return
        try:
            await settle(max(0, int(used_tokens)))
        except Exception as exc:  # noqa: BLE001 (the lease TTL frees the slot anyway)
            log.warning("quota.settle_failed", error=type(exc).__name__)


UNMETERED = TokenGrant()


class Quotas(Protocol):
    backend: str

    async def admit(self, principal: Principal) -> Admission: ...

    async def admit_tokens(self, principal: Principal, needed: int) -> TokenGrant: ...

    async def close(self) -> None: ...


def _token_limited(limits: TenantLimits) -> bool:
    return any(
        v is not None
        for v in (limits.tokens_per_minute, limits.key_tokens_per_minute, limits.max_streams)
    )


def _token_wait(cur: float, prev: float, limit: int, frac: float, needed: int) -> float:
    """Seconds until the sliding estimate leaves room for ``needed`` more tokens."""
    if cur + needed > limit:
        need = 1.0 if cur <= 0 else max(0.0, 1 - (limit - needed) / cur)
        return (1 - frac) * WINDOW_S + need * WINDOW_S
    need = 1 - (limit - cur - needed) / prev
    return max(0.0, need - frac) * WINDOW_S


def _limited(limits: TenantLimits) -> bool:
    return any(
        v is not None
        for v in (limits.requests_per_minute, limits.key_requests_per_minute, limits.max_concurrent)
    )


def _retry_after(cur: float, prev: float, limit: int, frac: float) -> float:
    """Seconds until the sliding estimate leaves room for one more request."""
    if cur + 1 > limit:  # not before the next minute, and then prev := cur
        need = 1.0 if cur <= 0 else max(0.0, 1 - (limit - 1) / cur)
        return (1 - frac) * WINDOW_S + need * WINDOW_S
    need = 1 - (limit - cur - 1) / prev
    return max(0.0, need - frac) * WINDOW_S


# ----------------------------------------------------------------------------- Redis
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[6])
local slot = math.floor(now / window)
local frac = (now - slot * window) / window
local limits = {tonumber(ARGV[1]), tonumber(ARGV[2])}
for i = 1, 2 do
  local limit = limits[i]
  if limit > 0 then
    local cur = tonumber(redis.call('GET', KEYS[i] .. ':' .. slot) or '0')
    local prev = tonumber(redis.call('GET', KEYS[i] .. ':' .. (slot - 1)) or '0')
    if prev * (1 - frac) + cur + 1 > limit then
      local wait
      if cur + 1 > limit then
        local need = 1
        if cur > 0 then need = math.max(0, 1 - (limit - 1) / cur) end
        wait = (1 - frac) * window + need * window
      else
        wait = math.max(0, (1 - (limit - cur - 1) / prev) - frac) * window
      end
      return {i, math.max(1, math.ceil(wait))}
    end
  end
end
local conc = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
if conc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= conc then return {3, 1} end
  redis.call('ZADD', KEYS[3], now + ttl, ARGV[5])
  redis.call('EXPIRE', KEYS[3], math.ceil(ttl) + 1)
end
for i = 1, 2 do
  if limits[i] > 0 then
    local k = KEYS[i] .. ':' .. slot
    redis.call('INCR', k)
    redis.call('EXPIRE', k, window * 2 + 1)
  end
end
return {0, 0}
"""


_TOKEN_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[7])
local slot = math.floor(now / window)
local frac = (now - slot * window) / window
local needed = tonumber(ARGV[3])
local limits = {tonumber(ARGV[1]), tonumber(ARGV[2])}
for i = 1, 2 do
  local limit = limits[i]
  if limit > 0 then
    local cur = tonumber(redis.call('GET', KEYS[i] .. ':' .. slot) or '0')
    local prev = tonumber(redis.call('GET', KEYS[i] .. ':' .. (slot - 1)) or '0')
    if prev * (1 - frac) + cur + needed > limit then
      local wait
      if cur + needed > limit then
        local need = 1
        if cur > 0 then need = math.max(0, 1 - (limit - needed) / cur) end
        wait = (1 - frac) * window + need * window
      else
        wait = math.max(0, (1 - (limit - cur - needed) / prev) - frac) * window
      end
      return {i, math.max(1, math.ceil(wait))}
    end
  end
end
local streams = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
if streams > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= streams then return {3, 1} end
  redis.call('ZADD', KEYS[3], now + ttl, ARGV[6])
  redis.call('EXPIRE', KEYS[3], math.ceil(ttl) + 1)
end
return {0, 0}
"""
_CHARGE_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[2])
local slot = math.floor(now / window)
local used = tonumber(ARGV[1])
for i = 1, 2 do
  if ARGV[3 + i] == '1' and used > 0 then
    local k = KEYS[i] .. ':' .. slot
    redis.call('INCRBY', k, used)
    redis.call('EXPIRE', k, window * 2 + 1)
  end
end
redis.call('ZREM', KEYS[3], ARGV[3])
return 0
"""


class RedisQuotas:
    """Quotas shared by every replica through one Redis (``redis://`` / ``rediss://`` URL)."""

    backend = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "saiaas",
        lease_ttl_s: float = 300.0,
        timeout_s: float = 0.5,
    ) -> None:
        import redis.asyncio as aioredis

        self._client = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        self._script = self._client.register_script(_SCRIPT)
        self._token_script = self._client.register_script(_TOKEN_SCRIPT)
        self._charge_script = self._client.register_script(_CHARGE_SCRIPT)
        self._prefix = prefix
        self._ttl = lease_ttl_s
        self._timeout = timeout_s

    def _keys(self, p: Principal) -> list[str]:
        # One hash tag per tenant: a Redis Cluster keeps a tenant's keys in one slot, as a
        # multi-key script requires.
        base = f"{self._prefix}:q:{{{p.tenant}}}"
        return [f"{base}:rpm", f"{base}:key:{p.key_id}:rpm", f"{base}:conc"]

    async def admit(self, principal: Principal) -> Admission:
        limits = principal.limits
        if not _limited(limits):
            return UNLIMITED  # nothing to enforce: no round trip
        from redis.exceptions import RedisError

        keys = self._keys(principal)
        token = secrets.token_hex(8)
        args: list[int | float | str] = [
            limits.requests_per_minute or 0,
            limits.key_requests_per_minute or 0,
            limits.max_concurrent or 0,
            self._ttl,
            token,
            WINDOW_S,
        ]
        try:
            async with asyncio.timeout(self._timeout * 2):
                code, wait = await self._script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            log.error("quota.store_unavailable", error=type(exc).__name__)
            raise QuotaUnavailableError(retry_after=5) from None
        if int(code):
            raise QuotaExceededError(REASONS[int(code)], float(wait))
        if not limits.max_concurrent:
            return UNLIMITED

        async def release() -> None:
            await self._client.zrem(keys[2], token)

        return Admission(release)

    async def admit_tokens(self, principal: Principal, needed: int) -> TokenGrant:
        """Room for ``needed`` tokens (prompt + the most the answer may take) and a stream
        slot; `QuotaExceededError` (429) otherwise, `QuotaUnavailableError` (503)."""
        limits = principal.limits
        if not _token_limited(limits):
            return UNMETERED
        from redis.exceptions import RedisError

        base = f"{self._prefix}:q:{{{principal.tenant}}}"
        keys = [f"{base}:tpm", f"{base}:key:{principal.key_id}:tpm", f"{base}:streams"]
        token = secrets.token_hex(8)
        _refuse_oversized(limits, needed)
        args: list[int | float | str] = [
            limits.tokens_per_minute or 0,
            limits.key_tokens_per_minute or 0,
            needed,
            limits.max_streams or 0,
            self._ttl,
            token,
            WINDOW_S,
        ]
        try:
            async with asyncio.timeout(self._timeout * 2):
                code, wait = await self._token_script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            log.error("quota.store_unavailable", error=type(exc).__name__)
            raise QuotaUnavailableError(retry_after=5) from None
        if int(code):
            raise QuotaExceededError(TOKEN_REASONS[int(code)], float(wait))
        flags = [
            "1" if limits.tokens_per_minute else "0",
            "1" if limits.key_tokens_per_minute else "0",
        ]

        async def settle(used: int) -> None:
            async with asyncio.timeout(self._timeout * 2):
                await self._charge_script(keys=keys, args=[used, WINDOW_S, token, *flags])

        return TokenGrant(settle)

    async def ping(self) -> bool:
        try:
            return bool(await self._client.ping())
        except Exception:  # noqa: BLE001 (readiness/resources only report it)
            return False

    async def close(self) -> None:
        await self._client.aclose()


# ----------------------------------------------------------------------------- memory
class MemoryQuotas:
    """The same limits within this process (no Redis configured: one replica)."""

    backend = "memory"

    def __init__(
        self, *, lease_ttl_s: float = 300.0, clock: Callable[[], float] = time.time
    ) -> None:
        self._ttl = lease_ttl_s
        self._clock = clock
        self._counts: dict[tuple[str, int], int] = {}
        self._leases: dict[str, dict[str, float]] = {}

    def _estimate(self, key: str, slot: int, frac: float) -> tuple[float, float]:
        return float(self._counts.get((key, slot), 0)), float(self._counts.get((key, slot - 1), 0))

    async def admit(self, principal: Principal) -> Admission:
        # No await between checking and taking: atomic on the event loop.
        limits = principal.limits
        if not _limited(limits):
            return UNLIMITED
        now = self._clock()
        slot = math.floor(now / WINDOW_S)
        frac = (now - slot * WINDOW_S) / WINDOW_S
        rates = [
            (f"t:{principal.tenant}", limits.requests_per_minute, 1),
            (f"k:{principal.key_id}", limits.key_requests_per_minute, 2),
        ]
        for key, limit, code in rates:
            if limit:
                cur, prev = self._estimate(key, slot, frac)
                if prev * (1 - frac) + cur + 1 > limit:
                    wait = _retry_after(cur, prev, limit, frac)
                    raise QuotaExceededError(REASONS[code], max(1.0, math.ceil(wait)))
        leases = self._leases.setdefault(principal.tenant, {})
        token = secrets.token_hex(8)
        if limits.max_concurrent:
            for stale in [t for t, expiry in leases.items() if expiry <= now]:
                del leases[stale]
            if len(leases) >= limits.max_concurrent:
                raise QuotaExceededError(REASONS[3], 1.0)
            leases[token] = now + self._ttl
        for key, limit, _ in rates:
            if limit:
                self._counts[(key, slot)] = self._counts.get((key, slot), 0) + 1
        self._prune(slot)
        if not limits.max_concurrent:
            return UNLIMITED

        async def release() -> None:
            leases.pop(token, None)

        return Admission(release)

    async def admit_tokens(self, principal: Principal, needed: int) -> TokenGrant:
        """As `RedisQuotas.admit_tokens`, within this process."""
        limits = principal.limits
        if not _token_limited(limits):
            return UNMETERED
        _refuse_oversized(limits, needed)
        now = self._clock()
        slot = math.floor(now / WINDOW_S)
        frac = (now - slot * WINDOW_S) / WINDOW_S
        rates = [
            (f"tt:{principal.tenant}", limits.tokens_per_minute, 1),
            (f"tk:{principal.key_id}", limits.key_tokens_per_minute, 2),
        ]
        for key, limit, code in rates:
            if limit:
                cur, prev = self._estimate(key, slot, frac)
                if prev * (1 - frac) + cur + needed > limit:
                    wait = _token_wait(cur, prev, limit, frac, needed)
                    raise QuotaExceededError(TOKEN_REASONS[code], max(1.0, math.ceil(wait)))
        streams = self._leases.setdefault(f"streams:{principal.tenant}", {})
        token = secrets.token_hex(8)
        if limits.max_streams:
            for stale in [t for t, expiry in streams.items() if expiry <= now]:
                del streams[stale]
            if len(streams) >= limits.max_streams:
                raise QuotaExceededError(TOKEN_REASONS[3], 1.0)
            streams[token] = now + self._ttl

        async def settle(used: int) -> None:
            at = math.floor(self._clock() / WINDOW_S)
            for key, limit, _ in rates:
                if limit and used:
                    self._counts[(key, at)] = self._counts.get((key, at), 0) + used
            streams.pop(token, None)

        return TokenGrant(settle)

    def _prune(self, slot: int) -> None:
        if len(self._counts) > 4096:  # old minutes only matter for one more minute
            for key in [k for k in self._counts if k[1] < slot - 1]:
                del self._counts[key]

    async def close(self) -> None:
        return None


def _refuse_oversized(limits: TenantLimits, needed: int) -> None:
    """A request larger than a whole minute's budget can never be admitted: say so."""
    for limit, code in ((limits.tokens_per_minute, 1), (limits.key_tokens_per_minute, 2)):
        if limit and needed > limit:
            raise QuotaExceededError(TOKEN_REASONS[code], float(WINDOW_S))


def build_quotas(
    redis_url: str | None, *, prefix: str, lease_ttl_s: float, timeout_s: float
) -> RedisQuotas | MemoryQuotas:
    """Redis-backed quotas when a URL is configured, in-memory ones otherwise."""
    if redis_url:
        return RedisQuotas(redis_url, prefix=prefix, lease_ttl_s=lease_ttl_s, timeout_s=timeout_s)
    return MemoryQuotas(lease_ttl_s=lease_ttl_s)
