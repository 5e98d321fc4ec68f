"""Settings (SAIAAS_ env, nothing at import time) and the key store (0600/0700, refusal)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from secure_aiaas.config import Settings
from secure_aiaas.crypto.keystore import KEY_FILES, check_permissions, load_keys
from secure_aiaas.errors import ConfigurationError
from tests.conftest import REPO, Server, run_cli, service_env, start_server


def test_settings_read_saiaas_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAIAAS_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("SAIAAS_KEYS_DIR", str(tmp_path / "k"))
    monkeypatch.setenv("SAIAAS_POLICY_DIR", str(tmp_path / "p"))
    monkeypatch.setenv("SAIAAS_AUDIT_URL", "postgresql://u@h/db")
    monkeypatch.setenv("SAIAAS_AUDIT__CHECKPOINT_EVERY_RECORDS", "7")
    s = Settings()
    assert s.data_dir == tmp_path / "d" and s.keys_dir == tmp_path / "k"
    assert s.policy_dir == tmp_path / "p"
    assert s.resolved_audit_url() == "postgresql://u@h/db"
    assert s.audit.checkpoint_every_records == 7


def test_default_audit_store_is_sqlite_under_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    assert s.resolved_audit_url() == f"sqlite:///{tmp_path.resolve() / 'audit.db'}"


def test_importing_reads_and_creates_nothing(tmp_path: Path) -> None:
    # Settings pointing at paths that don't exist, and a broken policy dir: importing every
    # module must neither fail nor create anything.
    env = {
        **os.environ,
        "SAIAAS_DATA_DIR": str(tmp_path / "nodata"),
        "SAIAAS_KEYS_DIR": str(tmp_path / "nokeys"),
        "SAIAAS_POLICY_DIR": "/nonexistent",
    }
    code = (
        "import secure_aiaas.api.app, secure_aiaas.cli, secure_aiaas.audit, "
        "secure_aiaas.policy, secure_aiaas.auth, secure_aiaas.pipeline"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=REPO, timeout=120)
    assert not (tmp_path / "nodata").exists() and not (tmp_path / "nokeys").exists()


def test_keys_init_creates_private_files_and_json(tmp_path: Path, policy_dir: Path) -> None:
    keys = tmp_path / "keys"
    env = service_env(tmp_path, keys, policy_dir)
    result = run_cli(env, "keys", "init", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)  # exactly one JSON object
    assert sorted(out["created"]) == sorted(KEY_FILES) and out["problems"] == []
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for name in KEY_FILES:
        assert stat.S_IMODE((keys / name).stat().st_mode) == 0o600
    before = {n: (keys / n).read_bytes() for n in KEY_FILES}
    again = json.loads(run_cli(env, "keys", "init", "--json").stdout)
    assert again["created"] == []  # existing keys are never replaced
    assert before == {n: (keys / n).read_bytes() for n in KEY_FILES}


def test_group_readable_key_is_refused(keys_dir: Path) -> None:
    os.chmod(keys_dir / "data.key", 0o640)
    assert any("data.key" in p for p in check_permissions(keys_dir))
    with pytest.raises(ConfigurationError):
        load_keys(keys_dir)


def test_server_refuses_to_start_with_world_readable_key(
    tmp_path: Path, keys_dir: Path, policy_dir: Path
) -> None:
    os.chmod(keys_dir / "apikey-hmac.key", 0o604)
    env = service_env(tmp_path, keys_dir, policy_dir)
    server = start_server(env, tmp_path / "server.log", wait=False)
    assert server.process.wait(timeout=60) != 0
    assert "apikey-hmac.key" in server.logs()


def test_keys_are_never_tracked_by_git() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "keys"], cwd=REPO, capture_output=True, text=True
    ).stdout.split()
    assert set(tracked) <= {"keys/.gitignore", "keys/README.md"}
    ignore = (REPO / "keys" / ".gitignore").read_text()
    assert "*" in ignore.splitlines()


def test_stores_written_by_the_service_are_private(shared_server: Server) -> None:
    with shared_server.client("alice") as client:
        assert client.get("/v1/whoami").status_code == 200
    files = [p for p in shared_server.data_dir.rglob("*") if p.is_file()]
    assert any(p.name == "audit.db" for p in files)
    for path in [shared_server.data_dir, *files]:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
