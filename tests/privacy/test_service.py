"""The service entry point: detection in worker processes, batched, never on the event loop."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest

from secure_aiaas.errors import PrivacyError
from secure_aiaas.privacy import Scrubber, ScrubberService, TextTooLongError, load_policy
from tests.privacy.conftest import POLICY

TEXTS = [
    "Dear Maria Lopez, your card 4111 1111 1111 1111 is on file.",
    "hey it's joão silva, call me on +351 912 345 678",
    "Release 4.2.1 fixes the export crash.",
    '{"customer": {"name": "ana lima", "email": "ana@example.pt"}}',
]


@pytest.fixture(scope="module")
def service() -> Iterator[ScrubberService]:
    loop = asyncio.new_event_loop()
    svc = loop.run_until_complete(ScrubberService.start(load_policy(POLICY), processes=2))
    svc._test_loop = loop  # type: ignore[attr-defined]
    yield svc
    loop.run_until_complete(svc.close())
    loop.close()


def run(service: ScrubberService, coro: object) -> object:
    return service._test_loop.run_until_complete(coro)  # type: ignore[attr-defined]


def test_detection_runs_in_other_processes(service: ScrubberService) -> None:
    assert len(service.worker_pids) == 2 and os.getpid() not in service.worker_pids


def test_same_results_as_the_in_process_scrubber(
    service: ScrubberService, scrubber: Scrubber
) -> None:
    remote = run(service, service.scrub_texts(TEXTS, tenant="t"))
    local = scrubber.scrub_texts(TEXTS, tenant="t")
    assert [r.text for r in remote] == [r.text for r in local]  # type: ignore[attr-defined]


def test_concurrent_requests_keep_their_own_placeholders(service: ScrubberService) -> None:
    async def many() -> list[object]:
        return await asyncio.gather(
            *(
                service.scrub_conversation([f"Dear {name},", f"Thanks {name}!"], tenant="t")
                for name in ["Ines Moreau", "Kwame Mensah", "Aiko Tanaka", "Lars Berg"] * 5
            )
        )

    results = run(service, many())
    names = ["Ines Moreau", "Kwame Mensah", "Aiko Tanaka", "Lars Berg"] * 5
    for name, convo in zip(names, results):  # type: ignore[call-overload]
        assert convo.placeholders["<PERSON_1>"] == name
        assert [r.text for r in convo.results] == ["Dear <PERSON_1>,", "Thanks <PERSON_1>!"]


def test_event_loop_keeps_running_during_a_large_request(service: ScrubberService) -> None:
    # Seconds of detection (a loop that waited on it would tick a handful of times).
    big = ["Dear Maria Lopez, " + "the quick brown fox jumps over the lazy dog. " * 100] * 4

    async def measure() -> tuple[int, int]:
        ticks = 0
        done = False

        async def ticker() -> None:
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        await service.scrub_texts(big, tenant="t")
        done = True
        await task
        return ticks, 0

    ticks, _ = run(service, measure())  # type: ignore[misc]
    assert ticks > 100  # the loop ran the ticker all along while the workers worked


def test_json_and_limits(service: ScrubberService) -> None:
    res = run(service, service.scrub_json({"card": 4111111111111111, "ok": True}, tenant="t"))
    assert "4111" not in str(res.value)  # type: ignore[attr-defined]
    with pytest.raises(TextTooLongError):
        run(service, service.scrub_text("a" * (service.limits.max_text_chars + 1), tenant="t"))


def test_a_killed_worker_refuses_then_recovers(service: ScrubberService) -> None:
    import time

    victim = service.worker_pids[0]
    os.kill(victim, signal.SIGKILL)
    time.sleep(1.0)  # the pool notices the death
    # The request that meets the broken pool fails closed (503), never unscrubbed ...
    with pytest.raises(PrivacyError):
        run(service, service.scrub_text("Dear Maria Lopez,", tenant="t"))
    # ... and the pool is started again, in the background; refused until it answers.
    run(service, asyncio.wait_for(_replaced(service), 60))
    result = run(service, service.scrub_text("Dear Maria Lopez,", tenant="t"))
    assert "Maria" not in result.text  # type: ignore[attr-defined]
    assert victim not in service.worker_pids and len(service.worker_pids) == 2


async def _replaced(service: ScrubberService) -> None:
    while not service.ready:
        await asyncio.sleep(0.1)


def test_a_replacement_that_fails_to_start_is_started_again(
    service: ScrubberService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first replacement can meet the killed forkserver before its death is seen (seen
    under load): the service must not stay refusing for good after one failed start."""
    from secure_aiaas.privacy import service as service_module

    real = service_module._start_workers
    attempts: list[int] = []

    async def failing_once(config: object, processes: int) -> object:
        attempts.append(processes)
        if len(attempts) == 1:
            raise PrivacyError()
        return await real(config, processes)  # type: ignore[arg-type]

    monkeypatch.setattr(service_module, "_start_workers", failing_once)
    os.kill(service.worker_pids[0], signal.SIGKILL)
    time.sleep(1.0)  # the pool notices the death
    with pytest.raises(PrivacyError):
        run(service, service.scrub_text("Dear Maria Lopez,", tenant="t"))
    run(service, asyncio.wait_for(_replaced(service), 60))
    assert len(attempts) == 2
    result = run(service, service.scrub_text("Dear Maria Lopez,", tenant="t"))
    assert "Maria" not in result.text  # type: ignore[attr-defined]


def test_closed_service_refuses() -> None:
    async def scenario() -> None:
        svc = await ScrubberService.start(load_policy(POLICY), processes=1, pii_model=None)
        await svc.close()
        with pytest.raises(PrivacyError):
            await svc.scrub_text("Dear Maria Lopez", tenant="t")

    asyncio.run(scenario())


def test_unloadable_model_refuses_at_start() -> None:
    with pytest.raises(PrivacyError):
        asyncio.run(
            ScrubberService.start(
                load_policy(POLICY),
                processes=1,
                model_name="en_core_web_nonexistent",
                pii_model=None,
            )
        )


def test_detection_does_not_depend_on_other_texts_in_the_batch(scrubber: Scrubber) -> None:
    """Batches mix requests of several tenants: one text's result must not change with them."""
    target = "can you send it to marta kowalczyk, she's in gdańsk now"
    others = [
        "Quarterly revenue grew by 4 percent.",
        "hey it's joão silva " * 30,
        '{"a": "b"}',
        "x" * 2000,
    ]
    alone = scrubber.detect([target], tenant="t")[0]
    for i in range(len(others)):
        mixed = scrubber.detect(others[:i] + [target] + others[i:], tenant="t")[i]
        assert [(s.entity_type, s.start, s.end) for s in mixed] == [
            (s.entity_type, s.start, s.end) for s in alone
        ]
