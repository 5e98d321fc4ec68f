"""he: server-side CKKS evaluation of compiled model plans (TenSEAL's SEAL API).

Public API (the HTTP layer uses only these)::

    compile_model(stages, name, calibration=...) -> CompiledModel  # numpy stages, no torch
    HEPlan.to_json() / HEPlan.from_json()                           # GET /v1/he/models/{name}
    HEPool(store_dir=..., workers=None, limits=HELimits())          # start() / close()
    await pool.register_context(model, body, owner=...) -> context_id
    pool.delete_context(context_id, owner=...)
    await pool.infer(model, body, owner=...) -> response bytes
    request_cap(plan, limits), HELimits.max_context_bytes          # cap bodies before reading
    SqlContextStore(url)   # contexts shared by replicas, sealed under the data key, expiring

Errors: `PayloadTooLargeError` (413), `CiphertextError` (422), `NotFoundError` (404),
`OverloadedError` (503), `TenantLimitError` (429: the tenant's own contexts, their bytes, or
concurrent calls), `InputError` (422, refused model at compile time).

The stages come from `inference.export_stages` (or `ModelRegistry.he_stages`) as the plain
values of `secure_aiaas.stages`; nothing here imports torch or `inference`.
"""

from __future__ import annotations

from secure_aiaas.he.contexts import ContextRecord, MemoryContextStore, SqlContextStore
from secure_aiaas.he.plan import (
    BatchedPacking,
    CompiledModel,
    FoldedStage,
    HEPlan,
    SinglePacking,
    compile_model,
)
from secure_aiaas.he.pool import HELimits, HEPool, TenantLimitError, ciphertext_cap, request_cap

__all__ = [
    "BatchedPacking",
    "ContextRecord",
    "MemoryContextStore",
    "SqlContextStore",
    "CompiledModel",
    "FoldedStage",
    "HELimits",
    "HEPlan",
    "HEPool",
    "SinglePacking",
    "TenantLimitError",
    "ciphertext_cap",
    "compile_model",
    "request_cap",
]
