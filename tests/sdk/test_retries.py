"""Bounded retries on 429/503, Retry-After honoured, unsafe requests spared (real HTTP)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from secure_aiaas.errors import AuthenticationError, OverloadedError, RateLimitedError
from secure_aiaas.sdk import NO_RETRY, AsyncClient, Client, RetryPolicy
from secure_aiaas.sdk._http import Http
from secure_aiaas.testing import API_KEY, Refusal
from tests.conftest import free_port
from tests.sdk.conftest import StandIn

FAST = RetryPolicy(attempts=3, backoff_s=0.0)


def test_429_then_success_is_retried_after_retry_after(standin: StandIn) -> None:
    standin.script.refuse("/v1/whoami", Refusal(429, {"Retry-After": "1"}, "rate_limited"))
    with Client(standin.url, API_KEY, retry=FAST) as client:
        started = time.monotonic()
        assert client.whoami()["tenant"] == "acme"
        waited = time.monotonic() - started
    assert standin.script.hits("/v1/whoami") == 2
    assert waited >= 0.9  # the service asked for a second


def test_503_without_retry_after_backs_off_and_succeeds(standin: StandIn) -> None:
    standin.script.refuse("/v1/whoami", Refusal(503), Refusal(503))
    with Client(standin.url, API_KEY, retry=FAST) as client:
        assert client.whoami()["subject"] == "alice"
    assert standin.script.hits("/v1/whoami") == 3


def test_attempts_are_bounded_and_the_last_error_raised(standin: StandIn) -> None:
    standin.script.refuse("/v1/whoami", *[Refusal(503, {"Retry-After": "0"})] * 5)
    with Client(standin.url, API_KEY, retry=FAST) as client, \
            pytest.raises(OverloadedError) as caught:  # fmt: skip
        client.whoami()
    assert standin.script.hits("/v1/whoami") == 3
    assert vars(caught.value)["request_id"] == "req-r"


def test_a_retry_after_beyond_max_wait_is_raised_at_once(standin: StandIn) -> None:
    standin.script.refuse("/v1/whoami", Refusal(429, {"Retry-After": "120"}, "rate_limited"))
    started = time.monotonic()
    with Client(standin.url, API_KEY, retry=RetryPolicy(max_wait_s=5)) as client, \
            pytest.raises(RateLimitedError) as caught:  # fmt: skip
        client.whoami()
    assert time.monotonic() - started < 5
    assert caught.value.retry_after == 120.0
    assert standin.script.hits("/v1/whoami") == 1


def test_no_retry_policy(standin: StandIn) -> None:
    standin.script.refuse("/v1/whoami", Refusal(503, {"Retry-After": "0"}))
    with Client(standin.url, API_KEY, retry=NO_RETRY) as client, pytest.raises(OverloadedError):
        client.whoami()
    assert standin.script.hits("/v1/whoami") == 1


def test_other_errors_are_not_retried(standin: StandIn) -> None:
    with Client(standin.url, "wrong-key", retry=FAST) as client, \
            pytest.raises(AuthenticationError):  # fmt: skip
        client.whoami()
    assert standin.script.hits("/v1/whoami") == 1


@pytest.mark.parametrize(("status", "tries"), [(429, 2), (503, 1)])
def test_a_non_idempotent_request_is_retried_only_on_429(
    standin: StandIn, status: int, tries: int
) -> None:
    # A 429 is answered before any work; a 503 may come after the context was stored.
    standin.script.refuse("/echo", Refusal(status, {"Retry-After": "0"}))

    async def main() -> int:
        http = Http(standin.url, API_KEY, timeout=5, transport=None, retry=FAST)
        try:
            response = await http.send("POST", "/echo", content=b"x", idempotent=False)
            return response.status_code
        except (RateLimitedError, OverloadedError):
            return status
        finally:
            await http.aclose()

    expected = 200 if status == 429 else status
    assert asyncio.run(main()) == expected
    assert standin.script.hits("/echo") == tries


def test_connection_refused_is_retried_then_raised() -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    with Client(f"http://127.0.0.1:{port}", API_KEY,
                retry=RetryPolicy(attempts=3, backoff_s=0.2)) as client, \
            pytest.raises(httpx.ConnectError):  # fmt: skip
        client.whoami()
    assert time.monotonic() - started >= 0.2 * 0.75 + 0.4 * 0.75  # two waits, jitter included


def test_async_client_retries_alike(standin: StandIn) -> None:
    standin.script.refuse("/v2/models/m", Refusal(429, {"Retry-After": "0"}))

    async def main() -> int:
        async with AsyncClient(standin.url, API_KEY, retry=FAST) as client:
            return len((await client.metadata("m"))["inputs"])

    assert asyncio.run(main()) == 1
    assert standin.script.hits("/v2/models/m") == 2


def test_retry_policy_is_validated() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    assert RetryPolicy(attempts=2).wait_s(2, None) is None
    assert RetryPolicy(max_wait_s=1).wait_s(1, 1.0) == 1.0
    assert RetryPolicy(max_wait_s=1).wait_s(1, 1.5) is None
