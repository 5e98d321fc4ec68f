"""One real server with models and HE (one worker, tiny queues): queue isolation under a
flood, priorities' effect on nothing else, metrics content, labels free of user input, and
the operators' resource view."""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_breast_cancer, load_digits

from secure_aiaas.crypto.he_wire import CONTENT_TYPE
from secure_aiaas.sdk import EncryptedClient
from secure_aiaas.sdk.client import _EncryptedBase, _v2_body
from tests.conftest import (
    REPO,
    Server,
    api_routes,
    provision,
    run_cli,
    service_env,
    start_server,
    stop_server,
)
from tests.scheduling.conftest import SCHEDULING_KEYS, SCHEDULING_TENANTS

pytestmark = pytest.mark.slow
HE_MAX_PENDING = 8
QUEUE = 4


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, trained_models_dir: Path) -> Iterator[Server]:
    from secure_aiaas.crypto import init_keys

    tmp = tmp_path_factory.mktemp("sched-server")
    init_keys(tmp / "keys")
    shutil.copytree(REPO / "policies", tmp / "policies")
    env = service_env(
        tmp,
        tmp / "keys",
        tmp / "policies",
        SAIAAS_MODELS_DIR=str(trained_models_dir),
        SAIAAS_HE__WORKERS="1",
        SAIAAS_HE__MAX_PENDING=str(HE_MAX_PENDING),
        # One tenant floods the global queue on purpose here.
        SAIAAS_HE__MAX_PENDING_PER_TENANT=str(4 * HE_MAX_PENDING),
        SAIAAS_INFERENCE__MAX_QUEUE_SIZE=str(QUEUE),
    )
    api_keys = provision(env, SCHEDULING_TENANTS, SCHEDULING_KEYS)
    # Limits are set before the server starts: beta outranks medco in the compute queues,
    # gamma may send one request a minute. No CLI write while this server runs: a second
    # engine on registry.db (the HE context store) re-opens the file in `make_engine`, which
    # drops the process's POSIX locks, and an exiting CLI then deletes the live WAL.
    for tenant, limits in {"beta": ("--priority", "5"), "gamma": ("--rpm", "1")}.items():
        result = run_cli(env, "tenant", "set-limits", tenant, *limits)
        assert result.returncode == 0, result.stderr
    server = start_server(env, tmp / "server.log")
    server.api_keys = api_keys
    try:
        yield server
    finally:
        stop_server(server)


def encrypted_bodies(
    srv: Server, who: str, packing: str = "batched", samples: int = 569
) -> list[bytes]:
    """Encrypted request frames for breast-cancer-lr under a context registered by `who`."""
    x, _ = load_breast_cancer(return_X_y=True)
    with EncryptedClient(srv.base_url, srv.api_keys[who]) as client:
        session = client.session("breast-cancer-lr")
    return [body for _, body in _EncryptedBase._requests(session, x[:samples], packing)]


@pytest.fixture(scope="module")
def he_bodies(srv: Server) -> list[bytes]:
    return encrypted_bodies(srv, "medco-he")


def he_post(client: httpx.Client | httpx.AsyncClient, body: bytes) -> Any:
    return client.post(
        "/v1/he/models/breast-cancer-lr/infer", content=body, headers={"Content-Type": CONTENT_TYPE}
    )


def digits_body(rows: int) -> dict[str, Any]:
    x, _ = load_digits(return_X_y=True)
    return _v2_body(np.resize(x, (rows, 64)).astype(np.float32), "input")


async def _flood(
    base: str, key: str, send: Any, stop: threading.Event, concurrency: int
) -> list[httpx.Response]:
    """Closed-loop flood: `concurrency` callers resend at once until told to stop."""
    answers: list[httpx.Response] = []
    async with httpx.AsyncClient(
        base_url=base, timeout=60, headers={"Authorization": f"Bearer {key}"}
    ) as client:

        async def caller() -> None:
            while not stop.is_set():
                answers.append(await send(client))
                await asyncio.sleep(0.01)

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    return answers


def run_flood(
    srv: Server, key: str, send: Any, concurrency: int, until_full: Any
) -> tuple[threading.Event, threading.Thread, list[Any]]:
    stop, out = threading.Event(), []
    thread = threading.Thread(
        target=lambda: out.extend(asyncio.run(_flood(srv.base_url, key, send, stop, concurrency)))
    )
    thread.start()
    with srv.client("secadmin") as admin:
        for _ in range(600):
            if until_full(admin.get("/v1/admin/resources").json()):
                break
            threading.Event().wait(0.05)
        else:
            stop.set()
            thread.join()
            pytest.fail("the flood never filled the queue")
    return stop, thread, out


def test_he_flood_does_not_starve_plaintext(srv: Server, he_bodies: list[bytes]) -> None:
    stop, thread, answers = run_flood(
        srv,
        srv.api_keys["medco-he"],
        lambda c: he_post(c, he_bodies[0]),
        12,
        lambda view: view["he"]["pending"] >= HE_MAX_PENDING,
    )
    try:
        with srv.client("alice") as alice:
            plain = [
                alice.post("/v2/models/digits-mlp/infer", json=digits_body(8)).status_code
                for _ in range(5)
            ]
            with srv.client("secadmin") as admin:
                still_busy = admin.get("/v1/admin/resources").json()["he"]["pending"]
    finally:
        stop.set()
        thread.join()
    assert plain == [200] * 5
    assert still_busy >= 1  # the plaintext calls were served while HE was saturated
    statuses = {r.status_code for r in answers}
    assert statuses <= {200, 503} and {200, 503} <= statuses
    refused = next(r for r in answers if r.status_code == 503)
    assert refused.json()["code"] == "overloaded" and "Retry-After" in refused.headers


def test_plaintext_flood_does_not_starve_he(srv: Server, he_bodies: list[bytes]) -> None:
    big = digits_body(64 * QUEUE)  # one such request fills the plaintext queue

    stop, thread, answers = run_flood(
        srv,
        srv.api_keys["bob"],
        lambda c: c.post("/v2/models/digits-mlp/infer", json=big),
        6,
        lambda view: any(m["rejected_total"] > 0 for m in view["plaintext"]["models"]),
    )
    try:
        with httpx.Client(
            base_url=srv.base_url,
            timeout=60,
            headers={"Authorization": f"Bearer {srv.api_keys['medco-he']}"},
        ) as he:
            encrypted = [he_post(he, body).status_code for body in he_bodies[:3]]
    finally:
        stop.set()
        thread.join()
    assert encrypted == [200] * len(encrypted)
    statuses = {r.status_code for r in answers}
    assert statuses <= {200, 503} and 503 in statuses


def test_higher_priority_tenant_overtakes_queued_he_work(srv: Server) -> None:
    """medco (priority 0) queues HE work; beta (priority 5) runs before that backlog."""
    # Single packing: one evaluation per sample, so each call keeps the worker busy a while.
    medco_body = encrypted_bodies(srv, "medco-he", "single", 8)[0]
    beta_body = encrypted_bodies(srv, "beta-he", "single", 1)[0]
    backlog_size = HE_MAX_PENDING - 1  # leaves room for beta's call

    async def scenario() -> int:
        def client(who: str) -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url=srv.base_url,
                timeout=60,
                headers={"Authorization": f"Bearer {srv.api_keys[who]}"},
            )

        async with (
            client("medco-he") as medco,
            client("beta-he") as beta,
            client("secadmin") as admin,
        ):
            backlog = [asyncio.create_task(he_post(medco, medco_body)) for _ in range(backlog_size)]
            for _ in range(1000):  # until one runs and the rest wait
                if (await admin.get("/v1/admin/resources")).json()["he"][
                    "waiting"
                ] >= backlog_size - 2:
                    break
                await asyncio.sleep(0.005)
            else:
                pytest.fail("the backlog never queued")
            assert (await he_post(beta, beta_body)).status_code == 200
            done = sum(t.done() for t in backlog)

            assert all(r.status_code == 200 for r in await asyncio.gather(*backlog))
            return done

    done_before_beta = asyncio.run(scenario())
    # First come, first served would finish the whole backlog before beta's call (all but
    # one response at least, whose delivery might race beta's).
    assert done_before_beta < backlog_size - 1


def scrape(srv: Server) -> str:
    with srv.client("scraper") as scraper:
        response = scraper.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return sum(
        v
        for (n, ls), v in found.items()
        if n == name and all((k, val) in ls for k, val in labels.items())
    )


def test_metrics_require_their_role(srv: Server) -> None:
    assert httpx.get(srv.base_url + "/metrics").status_code == 401
    with srv.client("alice") as alice:
        denied = alice.get("/metrics")
        assert denied.status_code == 403, denied.text
        assert alice.get("/v1/admin/resources").status_code == 403
    with srv.client("scraper") as scraper:
        assert scraper.get("/v1/admin/resources").status_code == 403  # metrics only
    with srv.client("secadmin") as admin:
        assert admin.get("/metrics").status_code == 200


def test_metrics_content(srv: Server, he_bodies: list[bytes]) -> None:
    with srv.client("alice") as alice:
        denied = alice.get("/metrics")
        assert denied.status_code == 403, denied.text
        assert alice.post("/v2/models/digits-mlp/infer", json=digits_body(3)).status_code == 200
        assert (
            alice.post(
                "/v1/embeddings",
                json={
                    "model": "text-embed",
                    "input": ["Call John Smith at john.smith@example.com"],
                },
            ).status_code
            == 200
        )
        assert (
            alice.post("/v1/privacy/scrub", json={"text": "Mail jane.doe@example.org"}).status_code
            == 200
        )
    with httpx.Client(
        base_url=srv.base_url,
        timeout=60,
        headers={"Authorization": f"Bearer {srv.api_keys['medco-he']}"},
    ) as he:
        assert he_post(he, he_bodies[0]).status_code == 200
    with srv.client("gamma-user") as gamma:
        assert [gamma.get("/v1/whoami").status_code for _ in range(2)] == [200, 429]
    found = samples(scrape(srv))
    assert (
        value(
            found,
            "saiaas_requests_total",
            route="/v2/models/{name}/infer",
            method="POST",
            decision="allow",
            status="200",
        )
        >= 1
    )
    assert (
        value(found, "saiaas_requests_total", route="/metrics", decision="deny", status="403") >= 1
    )
    assert value(found, "saiaas_request_duration_seconds_count", route="/v1/embeddings") >= 1
    assert value(found, "saiaas_quota_refusals_total", tenant="gamma", limit="tenant_rpm") == 1
    assert value(found, "saiaas_tenant_requests_total", tenant="gamma", decision="allow") == 2
    assert value(found, "saiaas_batch_rows_count", model="digits-mlp:1") >= 1
    assert value(found, "saiaas_forward_seconds_count", model="text-embed:1") >= 1
    assert value(found, "saiaas_queue_wait_seconds_count", queue="plaintext") >= 1
    assert value(found, "saiaas_queue_wait_seconds_count", queue="he") >= 1
    assert value(found, "saiaas_he_evaluation_seconds_count", task="infer") >= 1
    assert value(found, "saiaas_he_evaluation_seconds_count", task="validate") >= 1
    assert value(found, "saiaas_audit_append_seconds_count") >= 5
    assert value(found, "saiaas_pii_entities_total", entity="EMAIL_ADDRESS") >= 2
    assert ("saiaas_queue_depth", (("model", "digits-mlp:1"), ("queue", "plaintext"))) in found
    assert value(found, "saiaas_queue_capacity", queue="he") == HE_MAX_PENDING
    assert value(found, "saiaas_queue_capacity", queue="plaintext", model="digits-mlp:1") == QUEUE
    assert value(found, "saiaas_he_workers") == 1


CANARY = "zqcanary"


def test_no_user_input_in_metric_labels(srv: Server) -> None:
    from secure_aiaas.api.app import create_app
    from secure_aiaas.config import Settings
    from secure_aiaas.metrics import METHODS
    from secure_aiaas.scheduling.quotas import REASONS

    with srv.client("alice") as alice:
        alice.post(f"/v2/models/{CANARY}-model/infer", json=digits_body(1))
        alice.get(f"/v2/models/digits-mlp/versions/{CANARY}1")
        alice.get(f"/{CANARY}/unknown/path")
        alice.get(
            "/v1/whoami", params={"q": CANARY}, headers={"X-Note": CANARY, "User-Agent": CANARY}
        )
        alice.request(CANARY.upper(), "/v1/whoami")
        alice.post("/v1/privacy/scrub", json={"text": f"{CANARY} John Smith", "model": CANARY})
        alice.post("/v1/embeddings", json={"model": CANARY, "input": [CANARY]})
    httpx.get(
        srv.base_url + f"/v1/whoami?{CANARY}=1",
        headers={"Authorization": f"Bearer saiaas_{CANARY}"},
    )
    text = scrape(srv)
    assert CANARY not in text.lower()

    app = create_app(
        Settings(data_dir=srv.data_dir, keys_dir=srv.keys_dir, policy_dir=srv.policy_dir)
    )
    templates = {route.path for route in api_routes(app)} | {"unmatched"}
    allowed: dict[str, Any] = {
        "route": templates,
        "method": METHODS | {"other"},
        "decision": {"allow", "deny", "unauthenticated", "error"},
        "status": re.compile(r"^[1-5][0-9][0-9]$"),
        "tenant": set(SCHEDULING_TENANTS),
        "limit": set(REASONS.values()),
        "queue": {"plaintext", "he"},
        "model": {"", "digits-mlp:1", "breast-cancer-lr:1", "text-embed:1"},
        "task": {"infer", "validate"},
        "entity": re.compile(r"^[A-Z][A-Z0-9_]*$"),
        "le": re.compile(r"^[0-9.e+-]+|\+Inf$"),
    }
    for name, labels in samples(text):
        if not name.startswith("saiaas_"):
            continue
        for label, val in labels:
            rule = allowed.get(label)
            assert rule is not None, f"{name}: unexpected label {label}"
            ok = rule.match(val) if isinstance(rule, re.Pattern) else val in rule
            assert ok, f"{name}{{{label}={val!r}}}"


def test_resource_view(srv: Server) -> None:
    with srv.client("secadmin") as admin:
        view = admin.get("/v1/admin/resources").json()
    assert view["cpu"]["count"] >= 1
    assert view["memory"]["process_rss_bytes"] > 0
    plaintext = view["plaintext"]
    assert plaintext["device"] in ("cpu", "cuda", "cuda:0")
    assert plaintext["cuda_available"] == bool(plaintext["cuda_devices"])
    models = {m["model"]: m for m in plaintext["models"]}
    assert set(models) == {"digits-mlp:1", "breast-cancer-lr:1", "text-embed:1"}
    assert models["digits-mlp:1"]["max_queue_size"] == QUEUE
    assert view["he"]["workers"] == 1 and view["he"]["max_pending"] == HE_MAX_PENDING
    assert set(view["he"]["models"]) == {"digits-mlp", "breast-cancer-lr"}
    assert view["quotas"] == {"backend": "memory", "reachable": True}
