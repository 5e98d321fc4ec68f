"""sdk: HTTP clients and client-side CKKS (the only home of secret keys).

    from secure_aiaas.sdk import Client, EncryptedClient
    EncryptedClient(base_url, api_key).predict("digits-mlp", x)

One async core (`AsyncClient`, `AsyncEncryptedClient`, over `httpx.AsyncClient`); the sync
clients (`Client`, `EncryptedClient`) run it on a private event-loop thread. Imports no server
module and no torch: only `secure_aiaas.errors`, `.schemas`, `.names`, `.crypto.he_params`,
`.crypto.he_wire` and third-party packages (httpx, anyio, pydantic, numpy, tenseal,
cryptography).
"""

from __future__ import annotations

from secure_aiaas.sdk._http import NO_RETRY, RetryPolicy
from secure_aiaas.sdk.client import ChatStream, Client, EncryptedClient
from secure_aiaas.sdk.encrypted import AsyncEncryptedClient
from secure_aiaas.sdk.he import PlanView, SecretContext
from secure_aiaas.sdk.plaintext import AsyncChatStream, AsyncClient

__all__ = [
    "NO_RETRY",
    "AsyncChatStream",
    "AsyncClient",
    "AsyncEncryptedClient",
    "ChatStream",
    "Client",
    "EncryptedClient",
    "PlanView",
    "RetryPolicy",
    "SecretContext",
]
