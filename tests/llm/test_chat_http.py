"""Chat and completions through the whole secure path, on a real server: the unmodified
`openai` client in both modes, the audit records of a streamed, a disconnected and a refused
request, token quotas, and sensitive tenants (a tiny random model keeps it fast; the
built-in model answers a real question in `tests/llm/test_builtin.py`)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from secure_aiaas.inference import ModelRegistry
from secure_aiaas.llm.registry import register_causal_lm
from tests.conftest import (
    STANDARD_KEYS,
    STANDARD_TENANTS,
    Server,
    private_server,
    stop_server,
)
from tests.llm.tiny import save_tiny
from tests.support.audit import request_records

NAME = "tiny-chat"
SECRET = "Maria Lopez-Garcia"
KEYS = {**STANDARD_KEYS, "pat": ("platform", "pat", "user")}  # platform: no quotas


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("chat")
    models = tmp / "models"
    register_causal_lm(ModelRegistry(models), save_tiny(tmp / "src"), name=NAME)
    server = private_server(
        tmp,
        KEYS,
        SAIAAS_MODELS_DIR=str(models),
        SAIAAS_HE__ENABLED="false",
        SAIAAS_LLM__DEFAULT_MAX_TOKENS="24",
    )
    try:
        # Limits are read from the registry on each request: set after the start, too.
        assert server.cli("tenant", "set-limits", "acme", "--key-tpm", "400").returncode == 0
        yield server
    finally:
        stop_server(server)


def _client(server: Server, who: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.base_url + "/v1", api_key=server.api_keys[who], max_retries=0
    )


MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": f"Write to {SECRET} at maria@example.com"},
]


def test_openai_client_non_streamed(chat_server: Server) -> None:
    client = _client(chat_server, "alice")
    raw = client.chat.completions.with_raw_response.create(
        model=NAME, messages=MESSAGES, max_tokens=8, temperature=0
    )  # type: ignore[arg-type]
    reply = raw.parse()
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage is not None and reply.usage.completion_tokens <= 8
    assert reply.usage.prompt_tokens > 0
    (record,) = request_records(chat_server, raw.headers["x-request-id"])
    assert record["decision"] == "allow" and record["object"] == f"llm:{NAME}"
    llm = record["details"]["llm"]
    assert llm["completion_tokens"] == reply.usage.completion_tokens
    assert record["details"]["pii"]["PERSON"] >= 1  # the prompt was scrubbed first
    assert SECRET not in json.dumps(record) and "maria@example.com" not in json.dumps(record)


def test_openai_client_streamed_and_its_two_records(chat_server: Server) -> None:
    client = _client(chat_server, "alice")
    with client.chat.completions.with_streaming_response.create(
        model=NAME,
        messages=MESSAGES,
        max_tokens=12,
        stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    ) as raw:
        request_id = raw.headers["x-request-id"]
        chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = [c.usage for c in chunks if c.usage is not None]
    assert usage and usage[0].completion_tokens <= 12
    attempt, outcome = request_records(chat_server, request_id)
    assert attempt["decision"] == "attempt" and attempt["seq"] < outcome["seq"]
    assert outcome["status"] == 200
    assert outcome["details"]["llm"]["completion_tokens"] == usage[0].completion_tokens
    assert outcome["details"]["llm"]["finish_reason"] in ("stop", "length")
    assert text not in json.dumps(outcome) or not text.strip()


def test_completions_both_modes(chat_server: Server) -> None:
    client = _client(chat_server, "alice")
    plain = client.completions.create(model=NAME, prompt="Hello", max_tokens=5)
    assert plain.choices[0].text is not None and plain.usage is not None
    streamed = list(
        client.completions.create(model=NAME, prompt="Hello", max_tokens=5, stream=True)
    )
    assert streamed


def test_token_quota_refuses_with_retry_after_in_openai_shape(chat_server: Server) -> None:
    client = _client(chat_server, "alice")  # acme: 400 tokens a minute per key
    with pytest.raises(openai.RateLimitError) as info:
        for _ in range(40):
            client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=24)
    error = info.value
    assert error.response.headers["retry-after"]
    assert error.body["code"] in ("key_tpm", "rate_limited") or error.code == "rate_limited"  # type: ignore[index]


def test_sensitive_tenants_are_denied_unless_allowed_with_a_strict_profile(
    chat_server: Server,
) -> None:
    client = _client(chat_server, "medco-user")
    with pytest.raises(openai.PermissionDeniedError):
        client.chat.completions.create(model=NAME, messages=MESSAGES, max_tokens=4)
    policy = chat_server.policy_dir / "policy.csv"
    privacy = chat_server.policy_dir / "privacy.yaml"
    saved_policy, saved_privacy = policy.read_text(), privacy.read_text()
    version = _policy_version(chat_server)
    try:
        policy.write_text(saved_policy + f"p, user, medco, llm:{NAME}, generate, allow\n")
        time.sleep(1.5)
        # Allowed by the policy, but the default profile restores answers: still refused.
        with pytest.raises(openai.PermissionDeniedError) as info:
            client.chat.completions.with_raw_response.create(
                model=NAME, messages=MESSAGES, max_tokens=4
            )
        rid = info.value.response.headers["x-request-id"]
        (record,) = request_records(chat_server, rid)
        assert record["decision"] == "deny" and "strict privacy profile" in record["rule"]
        privacy.write_text(
            saved_privacy.replace(
                "assignments:\n",
                'assignments:\n  - tenant: medco\n    model: "*"\n    profile: strict\n',
            )
        )
        time.sleep(1.5)
        raw = client.chat.completions.with_raw_response.create(
            model=NAME, messages=MESSAGES, max_tokens=4
        )
        (record,) = request_records(chat_server, raw.headers["x-request-id"])
        assert record["decision"] == "allow"
        assert record["details"]["privacy_profile"] == "strict"
    finally:
        _replace(policy, saved_policy)
        _replace(privacy, saved_privacy)
        # The module's other tests need the shipped policy back in force, not in flight.
        deadline = time.monotonic() + 30
        while _policy_version(chat_server) != version:
            assert time.monotonic() < deadline, "the restored policy was not reloaded"
            time.sleep(0.1)


def _policy_version(server: Server) -> str:
    ready = httpx.get(server.base_url + "/v2/health/ready", timeout=10).json()
    return str(ready["checks"]["policy"]["version"])


def _replace(path: Path, content: str) -> None:
    """Write as an editor that saves atomically does: never a half-written file to read."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(content)
    partial.replace(path)


def test_models_lists_chat_models_for_those_allowed(chat_server: Server) -> None:
    ids = {m.id for m in _client(chat_server, "alice").models.list()}
    assert NAME in ids
    assert NAME not in {m.id for m in _client(chat_server, "medco-he").models.list()}


def test_bad_requests_are_openai_shaped_4xx(chat_server: Server) -> None:
    headers = {"Authorization": f"Bearer {chat_server.api_keys['alice']}"}
    with httpx.Client(base_url=chat_server.base_url, headers=headers) as client:
        for body in (
            {"model": NAME, "messages": []},
            {"model": NAME, "messages": MESSAGES, "n": 3},
            {"model": "no-such-model", "messages": MESSAGES},
            {"model": NAME, "messages": MESSAGES, "max_tokens": 10**9},
        ):
            response = client.post("/v1/chat/completions", json=body)
            assert 400 <= response.status_code < 500, response.text
            assert set(response.json()["error"]) >= {"message", "type", "code"}


def test_chat_routes_answer_only_the_roles_the_policy_allows(chat_server: Server) -> None:
    """The authorization matrix's rule for the chat routes, on a server with a chat model."""
    from tests.security.test_authorization_matrix import EXPECTED, Who

    trust = {**STANDARD_TENANTS}
    bodies = {
        "/v1/chat/completions": {"model": NAME, "messages": MESSAGES[1:], "max_tokens": 1},
        "/v1/completions": {"model": NAME, "prompt": "hi", "max_tokens": 1},
    }
    failures = []
    with httpx.Client(base_url=chat_server.base_url, timeout=60) as client:
        for path, body in bodies.items():
            rule = EXPECTED[("POST", path)]
            for label, (tenant, subject, role) in KEYS.items():
                who = Who(label, tenant, subject, role)
                assert who.trust == trust[tenant]
                response = client.post(
                    path,
                    json=body,
                    headers={"Authorization": f"Bearer {chat_server.api_keys[label]}"},
                )
                allowed = rule(who)
                if allowed and response.status_code not in (200, 429):  # 429: acme's token quota
                    failures.append(f"{label} {path}: {response.status_code}, expected allowed")
                if not allowed and response.status_code != 403:
                    failures.append(f"{label} {path}: {response.status_code}, expected 403")
    assert not failures, "\n".join(failures)


def test_sdk_client_chat_both_modes(chat_server: Server) -> None:
    """The SDK's `Client.chat` against the real route: streamed and not, the same answer."""
    from secure_aiaas.sdk import Client

    messages = [{"role": "user", "content": "Say hello."}]
    with Client(chat_server.base_url, chat_server.api_keys["pat"]) as client:
        completion = client.chat(NAME, messages, max_tokens=8, seed=1, temperature=0)
        streamed = client.chat(NAME, messages, max_tokens=8, seed=1, temperature=0, stream=True)
        deltas = list(streamed)
    assert completion.finish_reason in ("stop", "length") and completion.usage is not None
    assert "".join(deltas) == completion.text  # same seed, greedy: the same answer
    assert streamed.finish_reason == completion.finish_reason
