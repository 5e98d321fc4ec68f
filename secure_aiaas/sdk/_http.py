"""The SDK's one HTTP session: bodies from models, replies into models, errors, retries.

Every request of every client goes through `Http.send`, so authentication, error mapping and
retries behave the same everywhere. Retries are bounded (`RetryPolicy`): a 429 or 503 reply is
tried again after its ``Retry-After`` (or an exponential, jittered backoff when it has none),
never waiting longer than ``max_wait_s`` for one retry; a failed connection (nothing sent) is
tried again the same way. A request that changes state on the server (``idempotent=False``:
the context upload) is retried on 429 only, which the service answers before doing any work;
a 503 may come after the work was done.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar
from urllib.parse import quote

import anyio
import anyio.to_thread
import httpx
from pydantic import BaseModel, ValidationError

from secure_aiaas import __version__
from secure_aiaas.errors import InputError
from secure_aiaas.names import MODEL_RE
from secure_aiaas.sdk._errors import error_from_reply, invalid_response, retry_after_s

M = TypeVar("M", bound=BaseModel)
_REFUSED_BEFORE_WORK = frozenset({429})
_CONNECT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a client retries a refused request.

    Args:
        attempts: tries in all, the first included (1 turns retries off).
        backoff_s: the first wait when the reply has no ``Retry-After``; doubled per retry,
            with ±25 % jitter.
        max_wait_s: the longest single wait; a longer ``Retry-After`` is not waited for (the
            error is raised at once, its ``retry_after`` set).
        statuses: the replies retried (429 and 503: rate-limited, overloaded, not ready).
    """

    attempts: int = 3
    backoff_s: float = 0.5
    max_wait_s: float = 20.0
    statuses: frozenset[int] = field(default=frozenset({429, 503}))

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff_s < 0 or self.max_wait_s < 0:
            raise ValueError("attempts >= 1, backoff_s >= 0 and max_wait_s >= 0")

    def wait_s(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before try ``attempt + 1``; None: give up."""
        if attempt >= self.attempts:
            return None
        if retry_after is None:
            wait = self.backoff_s * 2.0 ** (attempt - 1) * random.uniform(0.75, 1.25)
            return min(wait, self.max_wait_s)
        return retry_after if retry_after <= self.max_wait_s else None


NO_RETRY = RetryPolicy(attempts=1)


def model_name(name: str) -> str:
    """`name` if it is a model name the registry could hold; it goes into URL paths and, for
    the encrypted client, into a file name, so anything else (``../x``, ``a?b``) is refused."""
    if not isinstance(name, str) or not MODEL_RE.fullmatch(name):
        raise InputError("model: not a valid model name")
    return name


def path_segment(value: str) -> str:
    """`value` percent-encoded as one URL path segment (an id the service handed out)."""
    return quote(value, safe="")


def parse(model: type[M], response: httpx.Response) -> M:
    """A successful reply read as `model` (a reply that is not one is an error, not data)."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        raise invalid_response() from exc


class Http:
    """An authenticated `httpx.AsyncClient` with the SDK's error mapping and retries."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None,
        retry: RetryPolicy,
    ) -> None:
        self.retry = retry
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={
                "Authorization": f"Bearer {api_key}",
                "User-Agent": f"secure-aiaas-sdk/{__version__}",
            },
            timeout=timeout,
            transport=transport,
        )

    async def send(
        self,
        method: str,
        path: str,
        *,
        body: BaseModel | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
        params: Mapping[str, str | int] | None = None,
        idempotent: bool = True,
        stream: bool = False,
    ) -> httpx.Response:
        """One request, retried as `RetryPolicy` says; raises the mapped error on a >= 400.

        ``body`` is sent as JSON: only the fields that were set, by their wire names. With
        ``stream`` the successful reply is returned unread (the caller closes it).
        """
        headers: dict[str, str] = {}
        if body is not None:
            content = body.model_dump_json(by_alias=True, exclude_unset=True).encode()
            content_type = "application/json"
        if content_type is not None:
            headers["Content-Type"] = content_type
        query = {k: str(v) for k, v in params.items()} if params else None
        attempt = 1
        while True:
            request = self._client.build_request(
                method, path, content=content, params=query, headers=headers
            )
            try:
                response = await self._client.send(request, stream=stream)
            except _CONNECT_ERRORS:
                wait = self.retry.wait_s(attempt, None)
                if wait is None:
                    raise
            else:
                if response.status_code < 400:
                    return response
                await response.aread()
                await response.aclose()
                error = error_from_reply(response.status_code, response.headers, response.content)
                wait = self._wait_after(
                    response.status_code, retry_after_s(response.headers), attempt, idempotent
                )
                if wait is None:
                    raise error
            await anyio.sleep(wait)
            attempt += 1

    def _wait_after(
        self, status: int, retry_after: float | None, attempt: int, idempotent: bool
    ) -> float | None:
        if status not in self.retry.statuses:
            return None
        if not idempotent and status not in _REFUSED_BEFORE_WORK:
            return None
        return self.retry.wait_s(attempt, retry_after)

    async def get(self, path: str, reply: type[M], /, **params: str | int | None) -> M:
        """``GET path?params`` (None values left out), the reply read as `reply`."""
        query = {k: v for k, v in params.items() if v is not None}
        return parse(reply, await self.send("GET", path, params=query))

    async def post(self, path: str, body: BaseModel, reply: type[M]) -> M:
        """``POST path`` with `body` as JSON, the reply read as `reply`."""
        return parse(reply, await self.send("POST", path, body=body))

    async def aclose(self) -> None:
        await self._client.aclose()


class HttpClient:
    """What every async client shares: its `Http` session, closed by ``aclose`` or
    ``async with``."""

    _http: Http

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _ThreadedByteStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.SyncByteStream) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = iter(self._stream)
        while (chunk := await anyio.to_thread.run_sync(next, chunks, None)) is not None:
            yield chunk

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._stream.close)


class ThreadedTransport(httpx.AsyncBaseTransport):
    """A synchronous transport (given to a sync client) driven from worker threads."""

    def __init__(self, transport: httpx.BaseTransport) -> None:
        self._transport = transport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        sync_request = httpx.Request(
            request.method, request.url, headers=request.headers, content=content,
            extensions=request.extensions,
        )  # fmt: skip
        response = await anyio.to_thread.run_sync(self._transport.handle_request, sync_request)
        stream: Any = response.stream
        if isinstance(stream, httpx.SyncByteStream):
            stream = _ThreadedByteStream(stream)
        return httpx.Response(
            response.status_code, headers=response.headers, stream=stream,
            extensions=response.extensions,
        )  # fmt: skip

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._transport.close)


def async_transport(
    transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None,
) -> httpx.AsyncBaseTransport | None:
    """What a sync client's ``transport`` argument becomes under the async core."""
    if isinstance(transport, httpx.BaseTransport):
        return ThreadedTransport(transport)
    return transport
