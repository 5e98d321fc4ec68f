"""The trail holds only what the service vouches for: personal data sent in path segments,
query values and headers to every route appears in no audit record, log line or export."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import httpx

from secure_aiaas.api.app import create_app
from secure_aiaas.audit import SqlAuditStore
from secure_aiaas.config import Settings
from tests.conftest import Server, api_routes

CANARIES = [
    "jane.doe@example.com",
    "Maria-Lopez-Canary",
    "+44-20-7946-0958",
    "GB82WEST12345698765432",
    "4111111111111111",
]
LONG = "z" * 600


def _paths() -> list[tuple[str, str]]:
    routes = api_routes(create_app(Settings()))
    return [(m, r.path) for r in routes for m in getattr(r, "methods", ()) if m != "HEAD"]  # type: ignore[attr-defined]


def _fill(path: str, value: str) -> str:
    for name in ("{name}", "{version}", "{context_id}"):
        path = path.replace(name, value)
    return path


def test_personal_data_in_paths_queries_and_headers_never_reaches_the_trail(
    model_server: Server, tmp_path: Path
) -> None:
    who = ["alice", "medco-he", "acme-auditor", "secadmin", None]
    with httpx.Client(base_url=model_server.base_url, timeout=60) as client:
        for method, path in _paths():
            for value in [*CANARIES, LONG, "nul%00byte"]:
                for label in who:
                    headers = {
                        "User-Agent": CANARIES[1],
                        "X-Forwarded-For": CANARIES[0],
                        "Referer": f"https://x.test/?email={CANARIES[0]}",
                        "X-Customer": CANARIES[3],
                    }
                    if label:
                        headers["Authorization"] = f"Bearer {model_server.api_keys[label]}"
                    query = {"tenant": value, "model": value, "subject": value, "q": CANARIES[2]}
                    response = client.request(
                        method, _fill(path, value), params=query, headers=headers
                    )
                    assert response.status_code < 500, (method, path, response.text)
        # One export by the security admin: everything recorded, as an auditor would get it.
        exported = client.post(
            "/v1/audit/exports",
            json={"format": "jsonl"},
            headers={"Authorization": f"Bearer {model_server.api_keys['secadmin']}"},
        )
        assert exported.status_code == 200
    with tarfile.open(fileobj=io.BytesIO(exported.content), mode="r:gz") as tar:
        tar.extractall(tmp_path / "export", filter="data")
    export_text = "".join(
        p.read_text(errors="replace") for p in (tmp_path / "export").rglob("*") if p.is_file()
    )
    store = SqlAuditStore(f"sqlite:///{model_server.data_dir / 'audit.db'}")
    try:
        trail = "\n".join(str(r) for r in store.iter_records())
    finally:
        store.dispose()
    logs = model_server.logs()
    for canary in [*CANARIES, LONG[:300]]:
        assert canary not in trail, canary
        assert canary not in logs, canary
        assert canary not in export_text, canary
    assert "model:~unknown-" in trail  # what stands in for the names nobody vouched for
