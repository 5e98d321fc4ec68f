"""What the service's own process loads at start-up: only what it serves.

Detection runs in the scrubber's worker processes, so the service's process needs neither
spaCy nor Presidio's analyzer; with no models registered it needs no torch either. Each of
them costs seconds of every start (restarts after a crash included) and hundreds of MB.
"""

from __future__ import annotations

from pathlib import Path

from tests.conftest import Server


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_a_service_without_models_loads_neither_torch_nor_spacy(shared_server: Server) -> None:
    maps = mapped_files(shared_server.process.pid)
    assert "libtorch" not in maps
    assert "/spacy/" not in maps and "/thinc/" not in maps
    # ...and still scrubs (anonymization runs here, detection in the workers).
    with shared_server.client("alice") as client:
        response = client.post(
            "/v1/privacy/scrub", json={"texts": ["Mail wilhelmina.okonkwo@example.net today"]}
        )
    assert response.status_code == 200, response.text
    assert "wilhelmina" not in response.text
    assert "libtorch" not in mapped_files(shared_server.process.pid)
    # The resource view still names the device models would be placed on.
    import torch

    with shared_server.client("secadmin") as admin:
        view = admin.get("/v1/admin/resources")
    assert view.status_code == 200, view.text
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert view.json()["plaintext"]["device"] == expected


def test_a_service_with_models_loads_torch(model_server: Server) -> None:
    # The check above can fail: the same probe sees torch where models are served.
    assert "libtorch" in mapped_files(model_server.process.pid)
