"""Encrypted evaluation as a deployment of its own, multiplexed by tenant.

The ingress keeps everything about a request but the evaluation: authentication, policy,
the frame's decoding and size checks, the owner's context lookup, per-tenant limits, the
audit record. Only the evaluation (`HEPool.evaluate`) moves, to `HEEvaluator` replicas:
the ingress calls them with ``multiplexed_model_id=<tenant>``, and Serve routes a tenant's
calls to replicas that already serve it, so its evaluation keys (tens of MB, ~150 ms to
load) stay cached in few places instead of on every ingress replica.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

from ray import serve
from ray.exceptions import RayTaskError

from secure_aiaas.config import Settings
from secure_aiaas.crypto.he_wire import InferenceRequest
from secure_aiaas.errors import ServiceError
from secure_aiaas.he import ContextRecord, HEPool


def tenant_of(record: ContextRecord) -> str:
    """The tenant a context belongs to (its owner is ``tenant/subject``)."""
    return record.owner.split("/", 1)[0]


class HEEvaluator:
    """One HE replica: a local `HEPool` (its worker processes, key cache and plans)."""

    async def __init__(self, settings: Settings) -> None:  # type: ignore[misc]  # Serve awaits it
        from secure_aiaas.api.app import build_he_pool, build_model_pool
        from secure_aiaas.logging import configure_logging

        configure_logging(settings.log.level, json_logs=settings.log.json_logs)
        self._models = build_model_pool(settings)
        await self._models.start()  # the registry's HE stages and calibration, as the app
        self._pool = await asyncio.to_thread(build_he_pool, settings, self._models)
        self._replica = serve.get_replica_context().replica_id.unique_id
        # Contexts evaluated here: with one worker per replica (and a worker key cache
        # larger than this replica's share) each is one key load.
        self._contexts: set[str] = set()

        async def admit_tenant(tenant: str) -> str:
            # Nothing to load up front: the keys load on the tenant's first evaluation here.
            return tenant

        # Wrapped here, not at class level, to take the count from settings (Serve keeps its
        # state on the wrapped function: a plain function, not a bound method).
        self._tenant = serve.multiplexed(
            max_num_models_per_replica=settings.scaleout.he_tenants_per_replica
        )(admit_tenant)

    async def evaluate(
        self, model: str, request: InferenceRequest, record: ContextRecord
    ) -> tuple[bytes, str, int]:
        """The response frame, this replica's id and how many contexts it has loaded."""
        await self._tenant(serve.get_multiplexed_model_id())
        reply = await self._pool.evaluate(model, request, record)
        self._contexts.add(record.context_id)
        return reply, self._replica, len(self._contexts)

    async def __del__(self) -> None:
        await self._models.close()
        await asyncio.to_thread(self._pool.close)


class RemoteHEPool(HEPool):
    """The ingress's HE pool: uploads, validation and limits here; evaluation remote."""

    def __init__(self, *, evaluator: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._evaluator = evaluator
        self._evaluated_by: Counter[str] = Counter()
        self._contexts_loaded: dict[str, int] = {}

    async def evaluate(self, model: str, request: InferenceRequest, record: ContextRecord) -> bytes:
        handle = self._evaluator.options(multiplexed_model_id=tenant_of(record))
        try:
            reply, replica, loaded = await handle.evaluate.remote(model, request, record)
        except RayTaskError as exc:
            # The evaluator's own refusal (bad ciphertext, overload): the same answer as
            # from a local pool, not a 500.
            if isinstance(exc.cause, ServiceError):
                raise exc.cause from None
            raise
        self._evaluated_by[replica] += 1
        self._contexts_loaded[replica] = loaded
        return bytes(reply)

    def stats(self) -> dict[str, Any]:
        """The local pool's figures, plus which HE replicas this ingress replica used."""
        return {
            **super().stats(),
            "evaluated_by": dict(self._evaluated_by),
            "contexts_loaded": dict(self._contexts_loaded),
        }


HEDeployment: Any = serve.deployment(name="he")(HEEvaluator)
