"""Session fixtures for the HE tests: tiny versions of the built-in models, trained in seconds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from secure_aiaas.inference.layers import Square, Standardize


@dataclass
class Trained:
    model: nn.Sequential
    x_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _fit(model: nn.Module, x: np.ndarray, y: np.ndarray, loss: nn.Module, epochs: int) -> None:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    for _ in range(epochs):
        opt.zero_grad()
        loss(model(xt), yt).backward()
        opt.step()
    model.eval()


def train_digits(epochs: int = 300) -> Trained:
    """digits-mlp: Standardize(0, 1/16) -> Linear(64,32) -> Square -> Linear(32,10)."""
    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    torch.manual_seed(0)
    model = nn.Sequential(
        Standardize(torch.zeros(64), torch.full((64,), 1 / 16)),
        nn.Linear(64, 32),
        Square(),
        nn.Linear(32, 10),
    )
    _fit(model, x_tr, y_tr.astype(np.int64), nn.CrossEntropyLoss(), epochs)
    return Trained(model, x_tr, x_te, y_te)


def train_breast_cancer(epochs: int = 300) -> Trained:
    """breast-cancer-lr: Standardize(mean, 1/std) -> Linear(30,1); the output is the logit."""
    x, y = load_breast_cancer(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    mean, std = x_tr.mean(0), x_tr.std(0)
    torch.manual_seed(0)
    model = nn.Sequential(
        Standardize(torch.tensor(mean), torch.tensor(1 / std)), nn.Linear(30, 1), nn.Flatten(0)
    )
    _fit(model, x_tr, y_tr.astype(np.float32), nn.BCEWithLogitsLoss(), epochs)
    return Trained(nn.Sequential(*list(model)[:2]), x_tr, x_te, y_te)


def plaintext(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor(x, dtype=torch.float32)).double().numpy()


@pytest.fixture(scope="session")
def digits() -> Trained:
    return train_digits()


@pytest.fixture(scope="session")
def breast_cancer() -> Trained:
    return train_breast_cancer()


# --------------------------------------------------------------------------- pool + HTTP harness
@pytest.fixture(scope="session")
def compiled(digits: Trained, breast_cancer: Trained) -> dict[str, object]:
    from secure_aiaas.he import compile_model
    from secure_aiaas.inference import export_stages

    return {
        "digits-mlp": compile_model(
            export_stages(digits.model), "digits-mlp", calibration=digits.x_train
        ),
        "breast-cancer-lr": compile_model(
            export_stages(breast_cancer.model),
            "breast-cancer-lr",
            calibration=breast_cancer.x_train,
        ),
    }


@pytest.fixture(scope="session")
def he_pool(tmp_path_factory: pytest.TempPathFactory, compiled: dict[str, object]):  # type: ignore[no-untyped-def]
    from secure_aiaas.he import HEPool

    pool = HEPool(store_dir=tmp_path_factory.mktemp("he-contexts"), workers=2)
    pool.start()
    for model in compiled.values():
        pool.add_model(model)  # type: ignore[arg-type]
    yield pool
    pool.close()


def contract_handler(pool, owner: str = "tenant-a"):  # type: ignore[no-untyped-def]
    """An async httpx handler implementing docs/sdk.md's HTTP contract on the real pool.

    Stands in for the routes another engineer writes; the crypto and the pool are real.
    """
    import httpx

    from secure_aiaas.errors import ServiceError

    status = {
        "PayloadTooLargeError": 413,
        "CiphertextError": 422,
        "InputError": 422,
        "NotFoundError": 404,
        "OverloadedError": 503,
    }

    async def handle(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != "Bearer test-key":
            return httpx.Response(
                401, json={"error": "missing or invalid API key", "code": "unauthenticated"}
            )
        path = request.url.path
        try:
            if request.method == "GET" and path.startswith("/v1/he/models/"):
                plan = pool.plan(path.rsplit("/", 1)[1])
                return httpx.Response(
                    200, text=plan.to_json(), headers={"content-type": "application/json"}
                )
            if request.method == "POST" and path == "/v1/he/contexts":
                cid = await pool.register_context(
                    request.url.params["model"], await request.aread(), owner=owner
                )
                return httpx.Response(201, json={"context_id": cid})
            if request.method == "DELETE" and path.startswith("/v1/he/contexts/"):
                pool.delete_context(path.rsplit("/", 1)[1], owner=owner)
                return httpx.Response(204)
            if request.method == "POST" and path.endswith("/infer"):
                model = path.split("/")[-2]
                body = await pool.infer(model, await request.aread(), owner=owner)
                return httpx.Response(200, content=body)
        except ServiceError as exc:
            code = status.get(type(exc).__name__, 500)
            return httpx.Response(code, json={"error": exc.public_message, "code": exc.code})
        return httpx.Response(404, json={"error": "not found", "code": "not_found"})

    return handle
