"""sdk: HTTP clients and client-side CKKS (the only home of secret keys).

    from secure_aiaas.sdk import Client, EncryptedClient
    EncryptedClient(base_url, api_key).predict("digits-mlp", x)

Imports no server module: only `secure_aiaas.errors`, `secure_aiaas.crypto.he_params`,
`secure_aiaas.crypto.he_wire` and third-party packages (httpx, numpy, tenseal, cryptography).
"""

from __future__ import annotations

from secure_aiaas.sdk.client import AsyncEncryptedClient, Client, EncryptedClient
from secure_aiaas.sdk.he import PlanView, SecretContext

__all__ = ["AsyncEncryptedClient", "Client", "EncryptedClient", "PlanView", "SecretContext"]
