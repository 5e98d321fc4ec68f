"""Plaintext inference over real HTTP with the real trained models (KServe v2 + OpenAI)."""

from __future__ import annotations

import concurrent.futures

import httpx
import numpy as np
import pytest
from sklearn.datasets import load_digits

from tests.conftest import Server
from tests.support.audit import request_records


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y


def v2_body(x: np.ndarray, name: str = "input") -> dict[str, object]:
    return {
        "inputs": [
            {
                "name": name,
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.reshape(-1).tolist(),
            }
        ]
    }


def test_v2_infer_with_raw_pixels(model_server: Server, digits) -> None:  # type: ignore[no-untyped-def]
    X, y = digits
    with model_server.client("alice") as client:
        response = client.post("/v2/models/digits-mlp/infer", json=v2_body(X[:200]))
        assert response.status_code == 200, response.text
        body = response.json()
    assert body["model_name"] == "digits-mlp" and body["model_version"] == "1"
    outputs = {o["name"]: o for o in body["outputs"]}
    labels = np.array(outputs["label"]["data"])
    assert outputs["logits"]["shape"] == [200, 10]
    assert (labels == y[:200]).mean() >= 0.95


def test_versioned_routes_and_metadata(model_server: Server, digits) -> None:  # type: ignore[no-untyped-def]
    X, _ = digits
    with model_server.client("alice") as client:
        meta = client.get("/v2/models/breast-cancer-lr").json()
        assert meta["inputs"][0]["shape"] == [-1, 30] and meta["versions"] == ["1"]
        assert client.get("/v2/models/digits-mlp/versions/1/ready").json()["ready"] is True
        ok = client.post("/v2/models/digits-mlp/versions/1/infer", json=v2_body(X[:2]))
        assert ok.status_code == 200
        missing = client.post("/v2/models/digits-mlp/versions/9/infer", json=v2_body(X[:2]))
        assert missing.status_code == 404 and "error" in missing.json()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"inputs": [{"name": "input", "shape": [1, 63], "datatype": "FP32", "data": [0] * 63}]},
            "inputs[0].shape",
        ),
        (
            {
                "inputs": [
                    {"name": "input", "shape": [1, 64], "datatype": "BYTES", "data": ["a"] * 64}
                ]
            },
            "inputs[0].datatype",
        ),
        (
            {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": [0] * 10}]},
            "inputs[0].data",
        ),
        (
            {
                "inputs": [
                    {"name": "pixels", "shape": [1, 64], "datatype": "FP32", "data": [0] * 64}
                ]
            },
            "inputs[0].name",
        ),
        ({"wrong": []}, "inputs"),
    ],
)
def test_v2_validation_errors_name_the_field(
    model_server: Server, body: dict[str, object], field: str
) -> None:
    with model_server.client("alice") as client:
        response = client.post("/v2/models/digits-mlp/infer", json=body)
    assert 400 <= response.status_code < 500
    assert response.json()["error"].startswith(field), response.json()
    with model_server.client("alice") as client:  # and the server keeps serving
        assert client.get("/v2/models/digits-mlp/ready").status_code == 200


def test_sensitive_tenant_is_denied_plaintext_and_audited(
    model_server: Server,  # type: ignore[no-untyped-def]
    digits,
) -> None:
    X, _ = digits
    with model_server.client("medco-user") as client:
        response = client.post("/v2/models/digits-mlp/infer", json=v2_body(X[:1]))
    assert response.status_code == 403
    (record,) = request_records(model_server, response.headers["x-request-id"])
    assert record["decision"] == "deny" and record["tenant"] == "medco"
    assert record["rule"] == "*, trust:sensitive, model:*, infer, deny"
    assert record["object"] == "model:digits-mlp"


def test_inference_is_audited_with_model_and_version(model_server: Server, digits) -> None:  # type: ignore[no-untyped-def]
    X, _ = digits
    with model_server.client("alice") as client:
        response = client.post(
            "/v2/models/breast-cancer-lr/infer", json=v2_body(np.zeros((3, 30), np.float32))
        )
    assert response.status_code == 200
    (record,) = request_records(model_server, response.headers["x-request-id"])
    details = record["details"]
    assert details["model"] == "breast-cancer-lr" and details["model_version"] == "1"
    assert details["rows"] == 3 and record["route"] == "/v2/models/{name}/infer"


def test_model_access_is_policy(model_server: Server) -> None:
    path = model_server.policy_dir / "policy.csv"
    original = path.read_text()
    try:
        path.write_text(original + "p, subject:alice, acme, model:breast-cancer-lr, infer, deny\n")
        with model_server.client("alice") as client:
            import time

            deadline = time.monotonic() + 3
            status = 0
            while time.monotonic() < deadline:
                status = client.post(
                    "/v2/models/breast-cancer-lr/infer", json=v2_body(np.zeros((1, 30), np.float32))
                ).status_code
                if status == 403:
                    break
                time.sleep(0.1)
            assert status == 403
            listed = [m["id"] for m in client.get("/v1/models").json()["data"]]
            assert "breast-cancer-lr" not in listed and "digits-mlp" in listed
    finally:
        path.write_text(original)


def test_concurrent_requests_are_batched(model_server: Server, digits) -> None:  # type: ignore[no-untyped-def]
    X, y = digits
    key = model_server.api_keys["alice"]

    def one(i: int) -> int:
        r = httpx.post(
            f"{model_server.base_url}/v2/models/digits-mlp/infer",
            json=v2_body(X[i : i + 1]),
            headers={"Authorization": f"Bearer {key}"},
        )
        return int(r.json()["outputs"][2]["data"][0])

    with model_server.client("alice") as plain:
        reply = plain.post("/v2/models/digits-mlp/infer", json=v2_body(X[:128])).json()
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        labels = list(pool.map(one, range(128)))
    # One request at a time or 32 at once (batched together): the same answers.
    assert labels == reply["outputs"][2]["data"]


def test_tritonclient_drives_the_server_unmodified(model_server: Server, digits) -> None:  # type: ignore[no-untyped-def]
    import tritonclient.http as triton

    X, y = digits
    client = triton.InferenceServerClient(model_server.base_url.removeprefix("http://"))

    def auth() -> dict[str, str]:  # tritonclient adds its own headers to the dict it is given
        return {"Authorization": f"Bearer {model_server.api_keys['alice']}"}

    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits-mlp", headers=auth())
    assert client.get_model_metadata("digits-mlp", headers=auth())["inputs"][0]["shape"] == [-1, 64]
    with model_server.client("alice") as plain:
        reply = plain.post("/v2/models/digits-mlp/infer", json=v2_body(X[:50])).json()
    expected = np.array(reply["outputs"][2]["data"])
    assert np.mean(expected == y[:50]) >= 0.9
    for binary in (True, False):
        tensor = triton.InferInput("input", [50, 64], "FP32")
        tensor.set_data_from_numpy(X[:50], binary_data=binary)
        result = client.infer(
            "digits-mlp",
            [tensor],
            headers=auth(),
            outputs=[triton.InferRequestedOutput("label", binary_data=binary)],
        )
        assert np.array_equal(result.as_numpy("label"), expected)
    with pytest.raises(triton.InferenceServerException):
        client.infer("digits-mlp", [tensor], headers={"Authorization": "Bearer nope"})
    client.close()


def test_openai_client_embeddings_unmodified(model_server: Server) -> None:
    import openai

    client = openai.OpenAI(
        base_url=model_server.base_url + "/v1",
        api_key=model_server.api_keys["alice"],
        max_retries=0,
    )
    texts = [
        "The cat sits on the mat.",
        "A cat is sitting on a mat.",
        "Quarterly revenue grew by four percent.",
    ]
    result = client.embeddings.create(model="text-embed", input=texts)
    vectors = np.array([d.embedding for d in result.data])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    assert result.usage.prompt_tokens > 0
    as_float = client.embeddings.create(model="text-embed", input=texts[0], encoding_format="float")
    assert np.allclose(as_float.data[0].embedding, vectors[0], atol=1e-5)
    assert "text-embed" in [m.id for m in client.models.list()]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            base_url=model_server.base_url + "/v1", api_key="bad", max_retries=0
        ).embeddings.create(model="text-embed", input="x")
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="digits-mlp", input="x")


def test_embeddings_validation(model_server: Server) -> None:
    with model_server.client("alice") as client:
        bad = client.post("/v1/embeddings", json={"model": "text-embed", "input": [1, 2]})
        assert bad.status_code == 422 and bad.json()["error"].startswith("input[0]")
        no_model = client.post("/v1/embeddings", json={"input": "x"})
        assert no_model.status_code == 422 and no_model.json()["error"].startswith("model")
    with model_server.client("medco-user") as client:
        assert (
            client.post("/v1/embeddings", json={"model": "text-embed", "input": "x"}).status_code
            == 403
        )


def test_readiness_waits_for_models(model_server: Server) -> None:
    ready = httpx.get(model_server.base_url + "/v2/health/ready").json()
    assert ready["checks"]["models"] is True
