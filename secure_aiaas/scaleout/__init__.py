"""Running the existing app on Ray Serve (`secure-aiaas serve --engine ray`).

Each ingress replica is the whole app (`create_app`): authentication, policy, scrubbing,
models and audit. Replicas share nothing in memory, so every piece of state that must agree
across them lives in PostgreSQL (audit, tenants and keys, published policy, HE contexts) and
Redis (quotas, policy notices); `shared_state_problems` refuses a configuration that would
keep any of it per process.

Names are resolved lazily (PEP 562): the refusals are checked, and the local engine runs,
without Ray installed.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from secure_aiaas.scaleout.preflight import shared_state_problems

if TYPE_CHECKING:  # the type checker sees the real names; at run time they load on use
    from secure_aiaas.scaleout.engine import serve_on_ray
    from secure_aiaas.scaleout.ingress import (
        APP_NAME,
        app_from_environment,
        ingress_application,
    )

_EXPORTS = {
    "serve_on_ray": "engine",
    "APP_NAME": "ingress",
    "app_from_environment": "ingress",
    "ingress_application": "ingress",
}

__all__ = [
    "APP_NAME",
    "app_from_environment",
    "ingress_application",
    "serve_on_ray",
    "shared_state_problems",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
