"""The plaintext SDK against the real server (real policy, Presidio, models, audit store)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_digits

from secure_aiaas.errors import AuthenticationError, AuthorizationError, NotFoundError
from secure_aiaas.sdk import Client
from tests.conftest import Server

pytestmark = pytest.mark.slow


def test_identity_models_and_metadata(model_server: Server) -> None:
    with Client(model_server.base_url, model_server.api_keys["alice"]) as client:
        me = client.whoami()
        listed = {card.id for card in client.models().data}
        meta = client.metadata("digits-mlp")
    assert me["tenant"] == "acme" and me["subject"] == "alice" and me["trust"] == "trusted"
    assert {"digits-mlp", "breast-cancer-lr", "text-embed"} <= listed
    assert meta["name"] == "digits-mlp" and meta["inputs"][0]["shape"][-1] == 64


def test_infer_and_named_output(model_server: Server) -> None:
    x, y = load_digits(return_X_y=True)
    with Client(model_server.base_url, model_server.api_keys["alice"]) as client:
        logits = client.infer("digits-mlp", x[:20].astype(np.float32))
        labels = client.infer("digits-mlp", x[:20].astype(np.float32), output="label")
    assert logits.shape == (20, 10)
    assert labels.reshape(-1).tolist() == logits.argmax(1).tolist()
    assert (logits.argmax(1) == y[:20]).mean() >= 0.9


def test_embeddings_in_order(model_server: Server) -> None:
    texts = ["the cat sat on the mat", "a kitten rested on a rug", "quarterly tax filing"]
    with Client(model_server.base_url, model_server.api_keys["alice"]) as client:
        vectors = np.asarray(client.embeddings(texts, model="text-embed"))
        one = np.asarray(client.embeddings(texts[2], model="text-embed"))
    assert vectors.shape[0] == 3
    norms = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert norms[0] @ norms[1] > norms[0] @ norms[2]
    np.testing.assert_allclose(one[0], vectors[2], atol=1e-5)


def test_scrub_text_texts_and_json(model_server: Server) -> None:
    mail = "jane.doe@example.com"
    with Client(model_server.base_url, model_server.api_keys["alice"]) as client:
        single = client.scrub(f"Write to {mail} today")
        several = client.scrub([f"mail {mail}", f"again {mail}"])
        as_json = client.scrub_json({"contact": mail, "n": 3})
    assert single.results is not None and mail not in single.results[0].text
    assert single.entity_counts.get("EMAIL_ADDRESS") == 1
    assert several.results is not None and len(several.results) == 2
    assert mail not in str(as_json.json_value) and as_json.json_value is not None


def test_audit_events_export_and_public_key(model_server: Server, tmp_path: Path) -> None:
    from secure_aiaas.audit.offline import load_public_keys, verify_export

    with Client(model_server.base_url, model_server.api_keys["acme-auditor"]) as auditor:
        page = auditor.audit_events(limit=5)
        key = auditor.audit_public_key()
        archive = tmp_path / "export.tar.gz"
        manifest_sha = auditor.audit_export(archive)
        with pytest.raises(AuthorizationError):
            auditor.audit_events(tenant="medco")
    assert page.tenant == "acme" and 0 < len(page.records) <= 5
    assert all(r["tenant"] == "acme" for r in page.records)
    assert len(manifest_sha) == 64 and not (tmp_path / "export.tar.gz.part").exists()
    with tarfile.open(archive, mode="r:gz") as tar:
        tar.extractall(tmp_path / "dl", filter="data")
    (tmp_path / "audit.pem").write_text(key.pem_bundle)
    report = verify_export(tmp_path / "dl" / "audit-export",
                           load_public_keys([tmp_path / "audit.pem"]))  # fmt: skip
    assert report.ok, report.findings


def test_errors_carry_the_request_id(model_server: Server) -> None:
    with Client(model_server.base_url, "not-a-key") as client, \
            pytest.raises(AuthenticationError) as caught:  # fmt: skip
        client.whoami()
    assert vars(caught.value)["status_code"] == 401
    assert vars(caught.value)["request_id"]
    with Client(model_server.base_url, model_server.api_keys["alice"]) as client, \
            pytest.raises(NotFoundError):  # fmt: skip
        client.metadata("no-such-model")
