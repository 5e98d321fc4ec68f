"""PII scrubbing over real HTTP with the real spaCy model: routes, canaries, fail-closed."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from secure_aiaas.privacy import restore
from tests.conftest import (
    STANDARD_KEYS,
    STANDARD_TENANTS,
    Server,
    provision,
    service_env,
    start_server,
    stop_server,
)
from tests.support.audit import audit_url, stored_records

# Values that must never appear in any log line, audit record or error body.
CANARIES = {
    "name": "Wilhelmina Okonkwo-Tran",
    "email": "wilhelmina.okonkwo@example.net",
    "phone": "+44 20 7946 0958",
    "iban": "DE89 3704 0044 0532 0130 00",
    "card": "4111 1111 1111 1111",
}
CANARY_TEXT = (
    f"Customer {CANARIES['name']} ({CANARIES['email']}, {CANARIES['phone']}) asked to "
    f"refund card {CANARIES['card']} to IBAN {CANARIES['iban']}."
)


def all_audit_text(server: Server) -> str:
    return json.dumps(stored_records(audit_url(server)))


def test_scrub_route_returns_scrubbed_text_and_entities_not_values(model_server: Server) -> None:
    with model_server.client("alice") as client:
        response = client.post(
            "/v1/privacy/scrub", json={"texts": [CANARY_TEXT, "v14.6.1 took two years"]}
        )
    assert response.status_code == 200
    body = response.json()
    scrubbed = body["results"][0]["text"]
    for value in CANARIES.values():
        assert value not in scrubbed
        assert value not in json.dumps(body)
    types = {e["type"] for e in body["results"][0]["entities"]}
    assert {"PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "IBAN_CODE", "CREDIT_CARD"} <= types
    for entity in body["results"][0]["entities"]:
        assert set(entity) == {"type", "start", "end", "score"}
    assert body["results"][1] == {"text": "v14.6.1 took two years", "entities": []}
    record = next(
        r
        for r in json.loads(all_audit_text(model_server))
        if r["request_id"] == response.headers["x-request-id"]
    )
    assert json.loads(record["details"])["pii"]["PERSON"] >= 1


def test_json_is_scrubbed_field_by_field_keys_kept(model_server: Server) -> None:
    with model_server.client("alice") as client:
        body = client.post(
            "/v1/privacy/scrub",
            json={
                "json": {
                    "customer": {"full_name": CANARIES["name"], "contact": CANARIES["email"]},
                    "items": [3, "two years"],
                }
            },
        ).json()
    assert set(body["json"]["customer"]) == {"full_name", "contact"}
    assert CANARIES["name"] not in json.dumps(body) and body["json"]["items"] == [3, "two years"]


def test_canaries_never_reach_logs_audit_or_error_bodies(model_server: Server) -> None:
    bodies = []
    with model_server.client("alice") as alice, model_server.client("medco-user") as medco:
        calls = [
            alice.post("/v1/privacy/scrub", json={"text": CANARY_TEXT}),
            alice.post("/v1/embeddings", json={"model": "text-embed", "input": [CANARY_TEXT]}),
            alice.post("/v1/embeddings", json={"model": "text-embed", "input": [CANARY_TEXT, 7]}),
            alice.post("/v1/embeddings", json={"model": "no-such-model", "input": CANARY_TEXT}),
            alice.post(
                "/v2/models/text-embed/infer",
                json={
                    "inputs": [
                        {"name": "text", "shape": [1], "datatype": "BYTES", "data": [CANARY_TEXT]}
                    ]
                },
            ),
            alice.post(
                "/v2/models/digits-mlp/infer",
                json={
                    "inputs": [
                        {
                            "name": CANARY_TEXT,
                            "shape": [1],
                            "datatype": "BYTES",
                            "data": [CANARY_TEXT],
                        }
                    ]
                },
            ),
            medco.post("/v1/embeddings", json={"model": "text-embed", "input": CANARY_TEXT}),
            alice.post("/v1/privacy/scrub", content=CANARY_TEXT.encode()),
            httpx.post(model_server.base_url + "/v1/privacy/scrub", json={"text": CANARY_TEXT}),
        ]
        bodies = [c.text for c in calls]
    assert calls[0].status_code == 200 and calls[1].status_code == 200
    assert all(c.status_code >= 400 for c in calls[2:4] + calls[5:])
    haystacks = {
        "logs": model_server.logs(),
        "audit": all_audit_text(model_server),
        "error bodies": "\n".join(b for b, c in zip(bodies, calls) if c.status_code >= 400),
    }
    for where, text in haystacks.items():
        for label, value in CANARIES.items():
            assert value not in text, f"{label} canary found in {where}"


def test_embeddings_see_scrubbed_text(model_server: Server) -> None:
    with model_server.client("alice") as client:

        def embed(text: str) -> list[float]:
            return client.post(
                "/v1/embeddings", json={"model": "text-embed", "input": text}
            ).json()["data"][0]["embedding"]

        # Two different people in the same sentence embed identically: names never got there.
        first = embed("Please call Wilhelmina Okonkwo-Tran tomorrow about the invoice.")
        second = embed("Please call Bartholomew Nakamura-Reyes tomorrow about the invoice.")
    assert first == second


def test_encrypt_operator_round_trip_with_the_tenants_restore_key(model_server: Server) -> None:
    path = model_server.policy_dir / "privacy.yaml"
    original = path.read_text()
    # A security admin gives acme a profile that encrypts e-mail addresses (hot reload).
    edited = original.replace(
        "assignments:\n",
        'assignments:\n  - tenant: acme\n    model: "*"\n    profile: reversible\n',
    )
    edited = edited.replace(
        "profiles:\n",
        "profiles:\n  reversible:\n    entities:\n"
        "      EMAIL_ADDRESS: 0.5\n    operator: encrypt\n",
        1,
    )
    path.write_text(edited)
    try:
        with model_server.client("acme-admin") as admin, model_server.client("alice") as alice:
            assert alice.get("/v1/privacy/restore-key").status_code == 403
            key = base64.b64decode(admin.get("/v1/privacy/restore-key").json()["key"])
            import time

            deadline = time.monotonic() + 5
            while True:
                text = alice.post("/v1/privacy/scrub", json={"text": CANARY_TEXT}).json()[
                    "results"
                ][0]["text"]
                if ":enc:" in text or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        assert CANARIES["email"] not in text and ":enc:" in text
        assert CANARIES["email"] in restore(text, key=key, tenant="acme")
        with model_server.client("medco-user") as other:  # another tenant: no key for acme
            assert other.get("/v1/privacy/restore-key").status_code == 403
        from secure_aiaas.errors import CryptoError

        with pytest.raises(CryptoError):
            restore(text, key=key, tenant="medco")
    finally:
        path.write_text(original)


@pytest.fixture
def broken_scrubber_server(tmp_path: Path, keys_dir: Path, policy_dir: Path):  # type: ignore[no-untyped-def]
    env = service_env(
        tmp_path,
        keys_dir,
        policy_dir,
        SAIAAS_PRIVACY__SPACY_MODEL="no_such_spacy_model",
        SAIAAS_INFERENCE__MODELS='["digits-mlp"]',
        SAIAAS_HE__ENABLED="false",
    )
    keys = provision(env, STANDARD_TENANTS, STANDARD_KEYS)
    srv = start_server(env, tmp_path / "server.log", wait=False)
    srv.api_keys = keys
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(srv.base_url + "/v2/health/live", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield srv
    stop_server(srv)


def test_fail_closed_when_the_scrubber_cannot_run(broken_scrubber_server: Server) -> None:
    server = broken_scrubber_server
    ready = httpx.get(server.base_url + "/v2/health/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["scrubber"] is False
    with server.client("alice") as client:
        refused = client.post("/v1/privacy/scrub", json={"text": CANARY_TEXT})
        assert refused.status_code == 503
        assert refused.json()["code"] == "privacy_unavailable"
        assert CANARIES["name"] not in refused.text
        assert client.get("/v1/whoami").status_code == 200  # the rest keeps serving
    assert CANARIES["name"] not in server.logs()
