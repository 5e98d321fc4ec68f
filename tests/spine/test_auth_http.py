"""Authentication over a real server: bearer keys, identical 401s, no keys in query strings."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import Server, key_id_of, own_key


@pytest.fixture
def server(shared_server: Server) -> Server:
    """These tests read, or revoke keys of their own: the test process's shared server."""
    return shared_server


def _body_without_request_id(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    body.pop("request_id")
    return body


def test_valid_key_gets_whoami(server: Server) -> None:
    with server.client("alice") as client:
        response = client.get("/v1/whoami")
    assert response.status_code == 200
    assert response.json() == {
        "tenant": "acme",
        "trust": "trusted",
        "subject": "alice",
        "roles": ["user"],
        "key_id": response.json()["key_id"],
        "operator": False,
    }
    assert response.headers["x-request-id"]


def test_unknown_revoked_malformed_and_missing_keys_get_the_same_401(server: Server) -> None:
    revoked, subject = own_key(server, "acme", "user")
    assert server.cli("apikey", "revoke", key_id_of(server, subject), "--json").returncode == 0

    attempts = {
        "revoked": {"Authorization": f"Bearer {revoked}"},
        "unknown": {"Authorization": "Bearer saiaas_" + "A" * 43},
        "malformed": {"Authorization": "Bearer not-a-key"},
        "wrong-scheme": {"Authorization": f"Basic {server.api_keys['acme-admin']}"},
        "missing": {},
    }
    bodies = []
    for headers in attempts.values():
        response = httpx.get(server.base_url + "/v1/whoami", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        bodies.append(_body_without_request_id(response))
    assert all(body == bodies[0] for body in bodies)
    # The other keys still work, of the same tenant and role too: revocation is per key.
    with server.client("alice") as client:
        assert client.get("/v1/whoami").status_code == 200


def test_key_in_query_string_is_refused(server: Server) -> None:
    key = server.api_keys["alice"]
    for query in (f"api_key={key}", f"token={key}", f"x={key}"):
        response = httpx.get(f"{server.base_url}/v1/whoami?{query}")
        assert response.status_code == 400
        assert response.json()["code"] == "credentials_in_query"
    # Even together with a valid header: a key in a URL is a leaked key.
    with server.client("acme-admin") as client:
        assert client.get(f"/v1/whoami?api_key={key}").status_code == 400


def test_api_keys_are_stored_only_as_hmac(server: Server) -> None:
    import sqlite3

    raw = (server.data_dir / "registry.db").read_bytes()
    wal = server.data_dir / "registry.db-wal"
    blob = raw + (wal.read_bytes() if wal.exists() else b"")
    for key in server.api_keys.values():
        assert key.encode() not in blob
    with sqlite3.connect(server.data_dir / "registry.db") as conn:
        digests = [row[0] for row in conn.execute("select digest from api_keys")]
    assert digests and all(len(d) == 64 for d in digests)
    listed = server.cli("apikey", "list", "--json")
    for key in server.api_keys.values():
        assert key not in listed.stdout


def test_apikey_create_prints_one_json_object_once(server: Server) -> None:
    result = server.cli(
        "apikey", "create", "--tenant", "acme", "--subject", "gina", "--role", "user", "--json"
    )
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["api_key"].startswith("saiaas_") and created["key_id"].startswith("k_")
    response = httpx.get(
        server.base_url + "/v1/whoami", headers={"Authorization": f"Bearer {created['api_key']}"}
    )
    assert response.json()["subject"] == "gina"


def test_tenant_cli_round_trip(server: Server) -> None:
    created = server.cli("tenant", "create", "newco", "--trust", "sensitive", "--json")
    assert json.loads(created.stdout)["trust"] == "sensitive"
    listed = json.loads(server.cli("tenant", "list", "--json").stdout)
    assert {"newco", "acme", "medco"} <= {t["name"] for t in listed["tenants"]}
    bad = server.cli("tenant", "create", "Bad Name!", "--trust", "trusted")
    assert bad.returncode != 0 and "tenant name" in bad.stderr


def test_a_revoked_key_stops_working_within_1s_even_while_it_is_in_use(server: Server) -> None:
    """The principal cache must not outlive a revocation by more than a second: a client
    hammering with the key keeps its cache entry warm the whole time."""
    import threading
    import time

    api_key, subject = own_key(server, "acme", "user")
    key_id = key_id_of(server, subject)
    answers: list[tuple[float, int]] = []
    stop = threading.Event()

    def hammer() -> None:
        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
            while not stop.is_set():
                sent = time.monotonic()  # when it was asked, not when a busy machine answered
                answers.append((sent, client.get("/v1/whoami").status_code))

    worker = threading.Thread(target=hammer)
    worker.start()
    try:
        time.sleep(0.5)
        assert server.cli("apikey", "revoke", key_id, "--json").returncode == 0
        revoked_at = time.monotonic()  # the revocation committed before the command returned
        time.sleep(2.5)
    finally:
        stop.set()
        worker.join()
    before = [status for at, status in answers if at < revoked_at - 5]
    after = [status for at, status in answers if at >= revoked_at + 1.0]
    assert not before or set(before) == {200}
    assert after and set(after) == {401}, "the key was still accepted a second after its revocation"
    first_refusal = next(at for at, status in answers if status == 401)
    # Once refused, never accepted again (no replica of a stale cache answering later).
    assert all(status == 401 for at, status in answers if at >= first_refusal)
