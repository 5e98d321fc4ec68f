"""Redis pub/sub notices of a new published policy: a wake-up, never the policy itself.

``policy publish`` announces the new version on ``<key_prefix>:policy:published``; each
replica's subscriber wakes its engine's watcher, which reads the current version from the
database as on any periodic check. The notice carries only the version and replicas never
act on its content, so a forged or replayed notice costs one cheap query and changes
nothing. Notices that are missed (Redis down, a replica reconnecting) only delay the reload
to the next periodic check; after every (re)subscription the watcher checks at once.

Plain redis-py pub/sub rather than a Casbin watcher package: ``casbin-redis-watcher`` pins a
redis version this project excludes, and the PostgreSQL watchers need ``pycasbin>=2``, which
installs over ``casbin``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    import redis

log = structlog.get_logger(__name__)


def notice_channel(key_prefix: str) -> str:
    """The channel of one deployment (several may share a Redis: see the key prefix)."""
    return f"{key_prefix}:policy:published"


def _client(redis_url: str, timeout_s: float) -> redis.Redis:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    # No retries inside redis-py: the caller decides (the subscriber reconnects itself and
    # then checks the database, so nothing published meanwhile is missed for long).
    return redis.Redis.from_url(
        redis_url,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


class Announcer:
    """The publishing side: made before the publication is committed (importing redis-py
    and connecting take longer than the notice itself), used right after it."""

    def __init__(self, redis_url: str, channel: str, *, timeout_s: float = 2.0) -> None:
        from redis.exceptions import RedisError

        self.channel = channel
        self._client = _client(redis_url, timeout_s)
        try:
            self._client.ping()
        except (RedisError, OSError):
            pass  # announce() reports it

    def announce(self, version: str) -> int | None:
        """Tell the replicas that ``version`` is published.

        Returns:
            How many subscribers heard it, or None when Redis could not be reached (the
            replicas then pick the version up at their next periodic check).
        """
        from redis.exceptions import RedisError

        try:
            return int(self._client.publish(self.channel, json.dumps({"version": version})))
        except (RedisError, OSError):
            return None

    def close(self) -> None:
        self._client.close()


def announce(redis_url: str, channel: str, version: str, *, timeout_s: float = 2.0) -> int | None:
    """`Announcer.announce` once (a connection of its own)."""
    announcer = Announcer(redis_url, channel, timeout_s=timeout_s)
    try:
        return announcer.announce(version)
    finally:
        announcer.close()


class RedisNotices:
    """Subscribes to the channel in a thread and calls ``on_notice`` for each message."""

    def __init__(
        self, redis_url: str, channel: str, *, timeout_s: float = 2.0, retry_s: float = 1.0
    ) -> None:
        self._url = redis_url
        self.channel = channel
        self._timeout = timeout_s
        self._retry = retry_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = False
        self.heard = 0  # notices received (for operators' debugging and tests)

    def start(self, on_notice: Callable[[], None]) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, args=(on_notice,), name="policy-notices", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self, on_notice: Callable[[], None]) -> None:
        from redis.exceptions import RedisError

        down = False
        while not self._stop.is_set():
            client = _client(self._url, self._timeout)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                self.listening = True
                if down:
                    log.info("policy.notices_resumed", channel=self.channel)
                down = False
                on_notice()  # anything published while we were not listening
                while not self._stop.is_set():
                    # Polls with a short timeout so that stop() is prompt.
                    if pubsub.get_message(timeout=0.5) is not None:
                        self.heard += 1
                        on_notice()
            except (RedisError, OSError) as exc:
                self.listening = False
                if not down:  # once per outage; the periodic check carries on meanwhile
                    log.warning(
                        "policy.notices_unavailable", channel=self.channel, error=type(exc).__name__
                    )
                down = True
                self._stop.wait(self._retry)
            finally:
                self.listening = False
                pubsub.close()
                client.close()
