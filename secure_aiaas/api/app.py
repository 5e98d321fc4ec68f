"""`create_app(settings)`: the FastAPI application; its lifespan builds every heavy object.

Start-up refuses to serve (raises) when the keys are unsafe, the policy cannot be loaded, or
the audit store cannot be initialised: a service that cannot authorize or record must not run.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from fastapi import FastAPI

from secure_aiaas import __version__
from secure_aiaas.api.docs import ERROR_RESPONSES, install_docs
from secure_aiaas.api.errors import install_error_handlers
from secure_aiaas.api.middleware import AuditMiddleware
from secure_aiaas.api.routes import (
    add_routes,
    admin,
    audit,
    he,
    health,
    identity,
    infer,
    llm,
    openai,
    ops,
    privacy,
)
from secure_aiaas.audit import AuditLog, AuditWriter, AuditWriterProcess, SqlAuditStore
from secure_aiaas.audit.writer import WriterOptions
from secure_aiaas.auth import Registry
from secure_aiaas.config import Settings
from secure_aiaas.crypto import ServerKeys, load_keys
from secure_aiaas.crypto.keystore import derive_tenant_key, known_audit_public_keys
from secure_aiaas.errors import ConfigurationError, PrivacyError, ServiceError
from secure_aiaas.inference import BatchingConfig, ModelPool, ModelRegistry
from secure_aiaas.metrics import Metrics
from secure_aiaas.scheduling import (
    AnonymousBudget,
    AnonymousLimiter,
    RefusalTally,
    build_quotas,
    current_priority,
)

if TYPE_CHECKING:
    from secure_aiaas.he import HEPool
    from secure_aiaas.llm import ChatModelPool, EngineConfig
    from secure_aiaas.privacy import ScrubberService, TenantKeys
from secure_aiaas.pipeline import Capabilities, Pipeline
from secure_aiaas.policy import PolicyEngine, PolicyValidationError, build_policy_engine

log = structlog.get_logger(__name__)

# The API's routers, in the order their routes are matched.
API_ROUTERS = (
    health.router,
    identity.router,
    admin.router,
    infer.router,
    openai.router,
    llm.router,
    he.router,
    privacy.router,
    audit.router,
    ops.router,
)


@dataclass(frozen=True)
class Spine:
    """What every request needs: identities, policy, audit — checked and ready, not started."""

    keys: ServerKeys
    registry: Registry
    policy: PolicyEngine
    audit: AuditLog
    anonymous: AnonymousLimiter
    refusals: RefusalTally


def build_spine(settings: Settings) -> Spine:
    """Keys, registry, policy and audit store, checked (ConfigurationError otherwise)."""
    keys = load_keys(settings.keys_dir)
    registry = Registry(
        settings.resolved_database_url(),
        keys.apikey_hmac_key,
        timeout_s=settings.audit.write_timeout_s,
    )
    registry.create_schema()
    # The policy directory, or (SAIAAS_POLICY__SOURCE=published) the published version.
    policy = build_policy_engine(settings, data_key=keys.data_key)
    try:
        policy.load()
    except PolicyValidationError as exc:
        raise ConfigurationError("policy cannot be loaded: " + "; ".join(exc.errors)) from exc
    store = SqlAuditStore(settings.resolved_audit_url(), timeout_s=settings.audit.write_timeout_s)
    store.create_schema()
    audit = settings.audit
    common = WriterOptions(
        retired_public_keys=known_audit_public_keys(settings.keys_dir),
        checkpoint_every_records=audit.checkpoint_every_records,
        checkpoint_every_s=audit.checkpoint_every_s,
        max_batch=audit.max_batch,
        timeout_s=audit.write_timeout_s,
    )
    writer: AuditLog = (
        AuditWriterProcess(
            store, keys, log_level=settings.log.level, json_logs=settings.log.json_logs, **common
        )
        if audit.writer == "process"
        else AuditWriter(store, keys, **common)
    )
    sched = settings.scheduling
    anonymous = AnonymousLimiter(
        AnonymousBudget(
            per_address_per_minute=sched.anonymous_per_address_per_minute,
            audit_bytes_per_s=sched.anonymous_audit_bytes_per_s,
        ),
        redis_url=settings.redis_url,
        key_prefix=sched.key_prefix,
        timeout_s=sched.redis_timeout_s,
    )
    return Spine(
        keys=keys,
        registry=registry,
        policy=policy,
        audit=writer,
        anonymous=anonymous,
        refusals=RefusalTally(derive_tenant_key(keys.data_key, "audit-address", "*")),
    )


async def build_scrubber(settings: Settings) -> ScrubberService:
    """Detection in worker processes (spaCy, the PII model, Presidio, our rules), models
    loaded once per worker; refuses to start on an invalid profile file."""
    from secure_aiaas.privacy import ProfileStore, ScrubberService, ScrubLimits

    path = settings.policy_dir / settings.privacy.profiles_file
    try:
        store = ProfileStore(path)
    except ValueError as exc:
        raise ConfigurationError(f"privacy profiles cannot be loaded: {exc}") from exc
    limits = settings.limits
    cfg = settings.privacy
    return await ScrubberService.start(
        store,
        model_name=cfg.spacy_model,
        processes=cfg.processes or _cores_per_worker(settings),
        batch_size=cfg.batch_size,
        pii_model=cfg.pii_model,
        graph_cache_dir=cfg.cache_dir or settings.data_dir / "cache",
        limits=ScrubLimits(
            max_text_chars=limits.max_text_chars,
            max_request_chars=limits.max_request_chars,
            max_texts=limits.max_texts,
            max_json_depth=limits.json_max_depth,
            max_json_leaves=limits.max_json_leaves,
        ),
    )


def tenant_privacy_keys(data_key: bytes) -> Callable[[str], TenantKeys]:
    """Per-tenant keys for the keyed-hash and encrypt operators, derived from the data key."""
    from secure_aiaas.crypto.keystore import derive_tenant_key
    from secure_aiaas.privacy import TenantKeys

    def keys_for(tenant: str) -> TenantKeys:
        return TenantKeys(
            hash_key=derive_tenant_key(data_key, "privacy-hash", tenant),
            encryption_key=derive_tenant_key(data_key, "privacy-encrypt", tenant),
        )

    return keys_for


def build_model_pool(
    settings: Settings,
    metrics: Metrics | None = None,
    *,
    pool_type: Callable[..., ModelPool] | None = None,
) -> ModelPool:
    """The plaintext models, not started; ``pool_type`` builds the pool from `ModelPool`'s
    arguments (default `ModelPool`; the Ray engine passes one whose forward passes run in
    deployments of their own)."""
    cfg = settings.inference
    return (pool_type or ModelPool)(
        ModelRegistry(settings.resolved_models_dir()),
        models=cfg.models or None,
        device=None if cfg.device == "auto" else cfg.device,
        batching=BatchingConfig(
            max_batch_size=cfg.max_batch_size,
            max_delay_s=cfg.max_delay_s,
            max_queue_size=cfg.max_queue_size,
        ),
        num_threads=cfg.num_threads,
        on_batch=metrics.observe_batch if metrics is not None else None,
        priority_of=current_priority,
    )


def build_he_pool(
    settings: Settings,
    models: ModelPool,
    metrics: Metrics | None = None,
    *,
    pool_type: Callable[..., HEPool] | None = None,
) -> HEPool:
    """Start the HE workers and publish a plan for every served HE-compatible model.

    ``pool_type`` builds the pool from `HEPool`'s keyword arguments (default `HEPool`; the
    Ray engine passes one that evaluates in a separate deployment).
    """
    from secure_aiaas.he import HELimits, HEPool, SqlContextStore, compile_model

    cfg = settings.he
    contexts = SqlContextStore(
        settings.resolved_database_url(), timeout_s=settings.audit.write_timeout_s
    )
    contexts.create_schema()
    pool = (pool_type or HEPool)(
        store_dir=settings.data_dir / "he",
        workers=cfg.workers or _cores_per_worker(settings),
        limits=HELimits(
            max_context_bytes=cfg.max_context_bytes,
            max_contexts=cfg.max_contexts,
            max_pending=cfg.max_pending,
            max_contexts_per_tenant=cfg.max_contexts_per_tenant,
            max_context_bytes_per_tenant=cfg.max_context_bytes_per_tenant,
            max_pending_per_tenant=cfg.max_pending_per_tenant,
        ),
        contexts=contexts,
        data_key=load_keys(settings.keys_dir).data_key,
        context_ttl_s=cfg.context_ttl_s,
        priority_of=current_priority,
        on_call=metrics.observe_he if metrics is not None else None,
    )
    compatible = [manifest for manifest in models.manifests() if manifest.he_compatible]
    # Every call to a worker needs a published plan: with no model to evaluate encrypted,
    # none is started (most test servers and plaintext-only deployments).
    pool.start(warm=bool(compatible))
    for manifest in compatible:
        try:
            # Plain data from the registry: numpy stages and the calibration stored at training.
            stages = models.registry.he_stages(manifest.name, manifest.version)
            calibration = models.registry.he_calibration(manifest.name, manifest.version)
            if calibration is None:
                log.warning("he.calibration_missing", model=manifest.id)
            pool.add_model(compile_model(stages, manifest.name, calibration=calibration))
        except ServiceError as exc:
            log.error("he.model_refused", model=manifest.id, reason=exc.public_message)
            continue
        log.info("he.model_published", model=manifest.id)
    return pool


async def _flush_refusals(pipeline: Pipeline, every_s: float) -> None:
    """Write the anonymous refusals tally as one record per interval."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await pipeline.flush_refusals()
        except ServiceError:
            log.error("audit.refusals_flush_failed")  # kept: retried with the next tally


async def _final_flush(pipeline: Pipeline) -> None:
    try:
        await pipeline.flush_refusals()
    except ServiceError:
        log.error("audit.refusals_flush_failed")


def chat_engine_config(settings: Settings) -> EngineConfig:
    """The chat engines' bounds from ``settings.llm``."""
    from secure_aiaas.llm import EngineConfig

    cfg = settings.llm
    return EngineConfig(
        max_batch_size=cfg.max_batch_size,
        max_queue_size=cfg.max_queue_size,
        max_context_tokens=cfg.max_context_tokens,
        repetition_penalty=cfg.repetition_penalty,
    )


async def build_chat_pool(
    settings: Settings,
    metrics: Metrics | None,
    *,
    pool_type: Callable[..., ChatModelPool] | None = None,
) -> ChatModelPool:
    """Every registered chat model loaded (verified) with its continuously batching engine;
    ``pool_type`` as in `build_model_pool` (the Ray engine's generates in deployments)."""
    from secure_aiaas.llm import ChatModelPool

    cfg = settings.llm
    pool = (pool_type or ChatModelPool)(
        ModelRegistry(settings.resolved_models_dir()),
        models=cfg.models or None,
        device=None if cfg.device == "auto" else cfg.device,
        dtype=None if cfg.dtype == "auto" else cfg.dtype,
        config=chat_engine_config(settings),
        observer_for=metrics.llm_observer if metrics is not None else None,
        priority_of=current_priority,
        default_max_tokens=cfg.default_max_tokens,
    )
    await pool.start()
    return pool


def _cores_per_worker(settings: Settings) -> int:
    """Child processes each pool may start by default: the cores shared by the workers."""
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    return max(1, cores // settings.server.workers)


def app_from_environment() -> FastAPI:
    """The app of one worker process (`secure-aiaas serve --workers N`): settings and
    logging from the environment the parent set up."""
    from secure_aiaas.config import get_settings
    from secure_aiaas.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log.level, json_logs=settings.log.json_logs)
    return create_app(settings)


def create_app(
    settings: Settings,
    *,
    he_pool_type: Callable[..., HEPool] | None = None,
    model_pool_type: Callable[..., ModelPool] | None = None,
    chat_pool_type: Callable[..., ChatModelPool] | None = None,
) -> FastAPI:
    """The service; ``he_pool_type`` as in `build_he_pool`, ``model_pool_type`` as in
    `build_model_pool`, ``chat_pool_type`` as in `build_chat_pool` (default: local pools)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        spine = build_spine(settings)
        spine.audit.start()
        spine.policy.start_watching()
        sched = settings.scheduling
        quotas = build_quotas(
            settings.redis_url,
            prefix=sched.key_prefix,
            lease_ttl_s=sched.lease_ttl_s,
            timeout_s=sched.redis_timeout_s,
        )
        # A registry of its own per app (tests build several in one process).
        metrics = Metrics() if settings.metrics.enabled else None
        # The scrubber's workers load in processes of their own (seconds): meanwhile this
        # process loads the models.
        scrubbing = (
            asyncio.create_task(build_scrubber(settings)) if settings.privacy.enabled else None
        )
        models = build_model_pool(settings, metrics, pool_type=model_pool_type)
        await models.start()
        he_pool = (
            await asyncio.to_thread(
                build_he_pool, settings, models, metrics, pool_type=he_pool_type
            )
            if settings.he.enabled
            else None
        )
        chat = (
            await build_chat_pool(settings, metrics, pool_type=chat_pool_type)
            if settings.llm.enabled
            else None
        )
        scrubber = None
        try:
            if scrubbing is not None:
                scrubber = await scrubbing
        except PrivacyError:
            # Serve on, but every route that takes plaintext text answers 503 (fail closed);
            # readiness reports it.
            log.error("privacy.scrubber_unavailable", model=settings.privacy.spacy_model)
        capabilities = Capabilities(
            models=models,
            he=he_pool,
            scrubber=scrubber,
            chat=chat,
            privacy_keys=tenant_privacy_keys(spine.keys.data_key),
            he_context_ttl_s=settings.he.context_ttl_s,
            expected=frozenset(
                {
                    "models",
                    *(["scrubber"] if settings.privacy.enabled else []),
                    *(["he"] if settings.he.enabled else []),
                    *(["chat"] if settings.llm.enabled else []),
                }
            ),
        )
        pipeline = Pipeline(
            registry=spine.registry,
            policy=spine.policy,
            audit=spine.audit,
            quotas=quotas,
            anonymous=spine.anonymous,
            refusals=spine.refusals,
            object_key=derive_tenant_key(spine.keys.data_key, "audit-object", "*"),
            capabilities=capabilities,
            metrics=metrics,
            principal_ttl_s=settings.auth.principal_cache_s,
        )
        app.state.pipeline = pipeline
        # The audit writer's process started with the others (it is not `alive`, so
        # requests get 503, until it has opened the store).
        if not await spine.audit.wait_started(settings.audit.write_timeout_s * 5):
            log.error("audit.writer_not_started")
        log.info(
            "service.started",
            policy_version=spine.policy.version,
            quotas=quotas.backend,
            models=[m.id for m in models.manifests()],
            model_failures=sorted(models.failures),
        )
        # What start-up loaded (torch, models, policy) lives as long as the process: move
        # it out of the collector's generations, so that a full collection under load does
        # not walk millions of start-up objects (a pause of 100+ ms in the p99 otherwise).
        gc.collect()
        gc.freeze()
        flusher = asyncio.create_task(_flush_refusals(pipeline, sched.anonymous_flush_s))
        try:
            yield
        finally:
            flusher.cancel()
            await _final_flush(pipeline)
            await models.close()
            if chat is not None:
                await chat.close()
            if scrubber is not None:
                await scrubber.close()
            if he_pool is not None:
                await asyncio.to_thread(he_pool.close)
            spine.policy.stop_watching()
            await quotas.close()
            spine.audit.close()  # drains appends and signs a final checkpoint
            spine.audit.store.dispose()
            spine.registry.dispose()
            Metrics.process_exited()
            log.info("service.stopped")

    app = FastAPI(
        title="secure_aiaas",
        version=__version__,
        lifespan=lifespan,
        description="Privacy-focused secure inference. Every route but the health "
        "probes and these docs needs `Authorization: Bearer saiaas_…`.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        responses=ERROR_RESPONSES,
        # FastAPI's native OpenTelemetry off: its spans name raw paths, which may carry
        # personal data (the audit store and our metrics name route templates only), and
        # asking the global providers on every request cost ~3 % of a request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.limits = settings.limits
    install_error_handlers(app)
    add_routes(app, *API_ROUTERS)
    install_docs(app)  # after the API's routes: a request to them is matched first
    text_bytes = settings.limits.text_body_bytes
    app.add_middleware(
        AuditMiddleware,
        pipeline_getter=lambda: app.state.pipeline,
        max_body_bytes=settings.server.max_body_bytes,
        large_body_prefixes={
            "/v1/he/": settings.he.max_body_bytes,
            "/v1/privacy/": text_bytes,
            "/v1/embeddings": text_bytes,
            "/v1/chat/": text_bytes,
            "/v1/completions": text_bytes,
        },
    )
    return app
