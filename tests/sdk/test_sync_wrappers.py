"""The sync clients are thin wrappers of the async core, and work where a loop runs."""

from __future__ import annotations

import ast
import asyncio
import inspect
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from secure_aiaas.errors import InputError
from secure_aiaas.sdk import AsyncClient, AsyncEncryptedClient, Client, EncryptedClient
from secure_aiaas.sdk._portal import DELEGATES_TO, run
from secure_aiaas.testing import API_KEY
from tests.sdk.conftest import StandIn

PAIRS = [(Client, AsyncClient), (EncryptedClient, AsyncEncryptedClient)]
# Hand-written sync members: lifecycle, and chat (its stream becomes a sync iterator).
HAND_WRITTEN = {"__init__", "__enter__", "__exit__", "close", "chat"}


def _public_coroutines(cls: type) -> set[str]:
    return {name for name, member in inspect.getmembers(cls, inspect.iscoroutinefunction)
            if not name.startswith("_") and name != "aclose"}  # fmt: skip


@pytest.mark.parametrize(("sync", "core"), PAIRS)
def test_every_async_method_has_a_delegating_sync_twin(sync: type, core: type) -> None:
    for name in _public_coroutines(core):
        method = vars(sync).get(name)
        assert method is not None, f"{sync.__name__}.{name} is missing"
        if name not in HAND_WRITTEN:
            assert getattr(method, DELEGATES_TO) is getattr(core, name), name


@pytest.mark.parametrize(("sync", "core"), PAIRS)
def test_sync_classes_build_no_requests(sync: type, core: type) -> None:
    """Every sync member is a `blocking` delegate or a hand-written method whose body only
    hands over to ``self._core`` (no HTTP, no bodies, no parsing)."""
    members = {name: member for klass in reversed(sync.__mro__)
               if klass.__module__.startswith("secure_aiaas.sdk")
               for name, member in vars(klass).items()}  # fmt: skip
    assert {"close", "__enter__", "__exit__"} <= members.keys()
    for name, member in members.items():
        if name.startswith("__") and name not in HAND_WRITTEN or not callable(member):
            continue
        if hasattr(member, DELEGATES_TO):
            continue
        assert name in HAND_WRITTEN, f"{sync.__name__}.{name} is neither delegate nor allowed"
        tree = ast.parse(textwrap.dedent(inspect.getsource(member)))
        names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        attrs = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        assert not names & {"httpx", "Http", "json", "np"}, (name, names)
        assert not attrs & {
            "send",
            "post",
            "get",
            "model_validate",
            "model_validate_json",
            "model_dump",
            "model_dump_json",
            "_http",
        }, (name, attrs)


def test_sync_client_inside_a_running_event_loop(standin: StandIn) -> None:
    # What Jupyter does: the notebook's code runs while an event loop runs in that thread.
    async def notebook_cell() -> dict[str, Any]:
        with Client(standin.url, API_KEY) as client:
            return client.whoami()

    assert asyncio.run(notebook_cell())["tenant"] == "acme"


def test_sync_client_from_many_threads(standin: StandIn) -> None:
    with Client(standin.url, API_KEY) as client, ThreadPoolExecutor(8) as pool:
        rows = [np.full((2, 3), i, dtype=np.float32) for i in range(24)]
        sums = list(pool.map(lambda x: client.infer("m", x), rows))
    for i, out in enumerate(sums):
        np.testing.assert_allclose(out, [[3 * i], [3 * i]])
    # The input name is looked up once per model, not once per call.
    assert standin.script.hits("/v2/models/m") <= 8


def test_calling_sync_code_from_the_sdk_loop_is_refused() -> None:
    async def inner() -> None:
        run(asyncio.sleep(0))

    with pytest.raises(RuntimeError, match="await the async one"):
        run(inner())
    assert threading.active_count() >= 1


def test_plaintext_calls_through_the_sync_client(standin: StandIn) -> None:
    with Client(standin.url, API_KEY) as client:
        models = client.models()
        out = client.infer("m", [[1.0, 2.0, 3.0]])
        name = client.infer("m", [[1.0, 2.0, 3.0]], input_name="given", output="input_name")
        vectors = client.embeddings(["a", "bcd"], model="text-embed")
        scrubbed = client.scrub(["x", "y"])
        scrubbed_json = client.scrub_json(None)
    assert models.data[0].id == "echo"
    np.testing.assert_allclose(out, [[6.0]])
    assert name.tolist() == ["given"]
    assert vectors == [[1.0, 1.0], [3.0, 1.0]]  # reordered by index
    assert scrubbed.results is not None and len(scrubbed.results) == 2
    assert scrubbed.entity_counts == {"X": 2}
    assert scrubbed_json.json_value == {"scrubbed": None}  # `json: null` was sent, not dropped


@pytest.mark.parametrize("name", ["../../etc/evil", "a/b", "a?b=c", "UPPER", "", "x" * 65])
def test_model_names_are_checked_before_any_use(
    standin: StandIn, tmp_path: Path, name: str
) -> None:
    # Model names go into URL paths and the encrypted client's secret-key file name.
    with Client(standin.url, API_KEY) as client, pytest.raises(InputError):
        client.infer(name, [[1.0]], input_name="rows")
    with EncryptedClient(standin.url, API_KEY, key_dir=tmp_path / "keys",
                         passphrase="correct horse") as he:  # fmt: skip
        with pytest.raises(InputError):
            he.predict(name, [[1.0]])
        with pytest.raises(InputError):
            he.session(name)
    assert standin.script.seen == []
    assert not (tmp_path / "keys").exists() and list(tmp_path.parent.glob("evil*")) == []


def test_an_unclosed_sync_client_does_not_hold_up_exit(standin: StandIn) -> None:
    script = (
        "import sys; from secure_aiaas.sdk import Client; "
        f"c = Client({standin.url!r}, {API_KEY!r}); print(c.whoami()['tenant'])"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert done.stdout.strip() == "acme"


def test_an_interrupted_call_cancels_its_request(standin: StandIn) -> None:
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        with Client(standin.url, API_KEY) as client:
            signal.setitimer(signal.ITIMER_REAL, 0.3)
            started = time.monotonic()
            with pytest.raises(KeyboardInterrupt):
                client.chat("sleepy", [{"role": "user", "content": "hi"}])  # 3 s on the server
            assert time.monotonic() - started < 2

            async def pending() -> int:
                await asyncio.sleep(0.05)  # let the cancellation land
                return len(asyncio.all_tasks()) - 1  # all but this one

            assert run(pending()) == 0
            assert client.whoami()["tenant"] == "acme"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
