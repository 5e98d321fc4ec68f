"""`secure-aiaas models ...` through typer's CliRunner against real registries."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from secure_aiaas.cli.models import app
from secure_aiaas.inference import ModelRegistry

runner = CliRunner()


def _json(args: list[str], code: int = 0) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)  # exactly one JSON object on stdout


def test_list_and_show(trained_dir: Path) -> None:
    listed = _json(["list", "--data-dir", str(trained_dir)])
    assert [(m["name"], m["version"]) for m in listed["models"]] == [
        ("breast-cancer-lr", "1"), ("digits-mlp", "1"), ("text-embed", "1"),
    ]  # fmt: skip
    shown = _json(["show", "digits-mlp", "--verify", "--data-dir", str(trained_dir)])
    assert shown["verified"] is True
    assert shown["metrics"]["test_accuracy"] >= 0.95
    text = runner.invoke(app, ["list", "--data-dir", str(trained_dir)])
    assert "digits-mlp" in text.stdout and "yes" in text.stdout


def test_data_dir_from_environment(trained_dir: Path) -> None:
    result = runner.invoke(app, ["list", "--json"], env={"SAIAAS_DATA_DIR": str(trained_dir)})
    assert len(json.loads(result.stdout)["models"]) == 3


def test_errors_are_one_json_object(data_dir: Path) -> None:
    error = _json(["show", "nope", "--data-dir", str(data_dir)], code=1)
    assert error == {"error": "not_found", "detail": "model not found"}
    weights = data_dir / "models" / "digits-mlp" / "1" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    error = _json(["show", "digits-mlp", "--verify", "--data-dir", str(data_dir)], code=1)
    assert error["error"] == "integrity_check_failed"


@pytest.fixture
def audited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Keys and an audit store: `register` and `remove` are audited admin actions."""
    from secure_aiaas.config import get_settings
    from secure_aiaas.crypto import init_keys

    init_keys(tmp_path / "keys")
    monkeypatch.setenv("SAIAAS_KEYS_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("SAIAAS_DATA_DIR", str(tmp_path / "service"))
    get_settings.cache_clear()
    yield tmp_path / "service" / "audit.db"
    get_settings.cache_clear()


def test_register_and_remove(data_dir: Path, tmp_path: Path, audited: Path) -> None:
    source = data_dir / "models" / "digits-mlp" / "1"
    manifest = json.loads((source / "manifest.json").read_text())
    manifest.update(name="my-digits", version="3", weights_sha256="", curve_file=None)
    manifest_file = tmp_path / "manifest.json"
    manifest_file.write_text(json.dumps(manifest))
    args = ["register", "--manifest", str(manifest_file),
            "--weights", str(source / "weights.safetensors"),
            "--asset", f"he-calibration.npy={source / 'he-calibration.npy'}",
            "--data-dir", str(data_dir)]  # fmt: skip
    registered = _json(args)
    assert registered["registered"]["name"] == "my-digits"
    assert len(registered["weights_sha256"]) == 64
    assert _json(args, code=1)["detail"] == "model my-digits:3 already registered"
    removed = _json(["remove", "my-digits", "--yes", "--data-dir", str(data_dir)])
    assert removed == {"removed": {"name": "my-digits", "versions": ["3"]}}
    assert ModelRegistry(data_dir).versions("my-digits") == []
    from secure_aiaas.audit import SqlAuditStore

    store = SqlAuditStore(f"sqlite:///{audited}")
    actions = [(r["action"], r["decision"]) for r in store.iter_records()]
    store.dispose()
    assert actions == [
        ("models.register", "attempt"),
        ("models.register", "allow"),
        ("models.register", "attempt"),
        ("models.register", "error"),
        ("models.remove", "attempt"),
        ("models.remove", "allow"),
    ]


def test_remove_asks_first(data_dir: Path) -> None:
    result = runner.invoke(app, ["remove", "digits-mlp", "--data-dir", str(data_dir)], input="n\n")
    assert result.exit_code != 0
    assert ModelRegistry(data_dir).versions("digits-mlp") == ["1"]


def test_train(tmp_path: Path) -> None:
    trained = _json(["train", "breast-cancer-lr", "--no-progress", "--data-dir", str(tmp_path)])
    assert trained["trained"]["version"] == "1"
    assert trained["trained"]["metrics"]["test_accuracy"] >= 0.95
    assert (Path(trained["path"]) / "curve.png").is_file()
    assert _json(["train", "no-such", "--data-dir", str(tmp_path)], code=1)["error"] == "not_found"


@pytest.mark.parametrize("command", ["list", "show", "register", "remove", "train"])
def test_help(command: str) -> None:
    assert runner.invoke(app, [command, "--help"]).exit_code == 0
