"""HE limits per tenant (real server, real TenSEAL): contexts and their bytes, concurrent
calls — one tenant at its limit is refused at once (429) while the others are served, and an
over-limit upload is refused before its body is read."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from secure_aiaas.crypto.he_wire import InferenceRequest, encode_request
from secure_aiaas.sdk.he import SecretContext
from tests.conftest import (
    STANDARD_KEYS,
    Server,
    private_server,
    stop_server,
)

MODEL = "breast-cancer-lr"
KEYS = {**STANDARD_KEYS, "acme-he": ("acme", "hank", "he-user")}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, trained_models_dir: Path) -> Iterator[Server]:
    srv = private_server(
        tmp_path_factory.mktemp("he-limits"),
        KEYS,
        SAIAAS_MODELS_DIR=str(trained_models_dir),
        SAIAAS_INFERENCE__MODELS=f'["{MODEL}"]',
        SAIAAS_HE__WORKERS="1",
        SAIAAS_HE__MAX_CONTEXTS_PER_TENANT="2",
        SAIAAS_HE__MAX_PENDING_PER_TENANT="2",
        SAIAAS_PRIVACY__ENABLED="false",
    )
    try:
        yield srv
    finally:
        stop_server(srv)


def _client(server: Server, who: str) -> httpx.Client:
    return server.client(who)


def _secret(server: Server, who: str) -> SecretContext:
    with _client(server, who) as client:
        return SecretContext.create(client.get(f"/v1/he/models/{MODEL}").text)


def _register(server: Server, who: str, body: bytes) -> httpx.Response:
    with _client(server, who) as client:
        return client.post(f"/v1/he/contexts?model={MODEL}", content=body)


def test_contexts_per_tenant_are_limited_without_locking_others_out(server: Server) -> None:
    body = _secret(server, "medco-he").public_context()
    made = [_register(server, "medco-he", body) for _ in range(3)]
    assert [r.status_code for r in made] == [201, 201, 429]
    assert made[2].json()["code"] == "tenant_limit"
    assert _register(server, "acme-he", body).status_code == 201  # another tenant: served
    with _client(server, "medco-he") as client:  # deleting one frees a place
        assert client.delete(f"/v1/he/contexts/{made[0].json()['context_id']}").status_code == 204
    assert _register(server, "medco-he", body).status_code == 201


def _stalled_upload(server: Server, who: str, path: str, declared: int) -> socket.socket:
    """A request whose headers arrived and whose body never comes (holds its place)."""
    host, port = server.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        (
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {server.api_keys[who]}\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"Content-Length: {declared}\r\n\r\n"
        ).encode()
        + b"\0" * 16
    )
    return sock


def _status(sock: socket.socket) -> int:
    return int(sock.recv(4096).split(b" ", 2)[1])


def test_a_tenants_third_concurrent_job_gets_429_at_once(server: Server) -> None:
    secret = _secret(server, "acme-he")
    created = _register(server, "acme-he", secret.public_context())
    assert created.status_code == 201
    frame = encode_request(
        InferenceRequest(
            created.json()["context_id"],
            "single",
            1,
            tuple(secret.encrypt_single(np.zeros((1, 30), dtype=np.float32))),
        )
    )
    path = f"/v1/he/models/{MODEL}/infer"
    held = [_stalled_upload(server, "medco-he", path, 1 << 20) for _ in range(2)]
    try:
        time.sleep(0.3)  # both requests hold their places now
        with _client(server, "medco-he") as medco, _client(server, "acme-he") as acme:
            started = time.monotonic()
            third = medco.post(path, content=b"\0" * 64)
            refused_after = time.monotonic() - started
            other = acme.post(path, content=frame)
    finally:
        for sock in held:
            sock.close()
    assert third.status_code == 429 and third.json()["code"] == "tenant_limit"
    assert "retry-after" in third.headers
    assert other.status_code == 200, other.text  # another tenant is served meanwhile
    # Refused without waiting for the two jobs in flight (they never finish here).
    assert refused_after < 2.0, refused_after


@pytest.mark.parametrize(
    ("who", "declared", "status"),
    [
        ("acme-he", 900 << 20, 413),  # over any context's size: refused at the door
        ("medco-he", 15 << 20, 429),  # a legal size, but medco holds its 2 contexts already
    ],
)
def test_an_over_limit_upload_is_refused_before_its_body_is_read(
    server: Server, who: str, declared: int, status: int
) -> None:
    sock = _stalled_upload(server, who, f"/v1/he/contexts?model={MODEL}", declared)
    try:
        sock.settimeout(5)
        assert _status(sock) == status  # answered while the body is still "to come"
    finally:
        sock.close()
