"""Tenants and API keys, in the shared registry database (SQLite or PostgreSQL).

An API key is 256 random bits shown once at creation; the store keeps only its
HMAC-SHA256 under the server's HMAC key. Every replica reads the same rows, so a key
created or revoked on one replica is honoured by all of them on the next request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from secure_aiaas.errors import (
    AuthenticationError,
    InputError,
    NotFoundError,
    StoreUnavailableError,
)
from secure_aiaas.names import (
    BUILTIN_ROLES,
    GLOBAL_ROLES,
    TENANT_RE,
    role_problem,
    subject_problem,
)
from secure_aiaas.storage import create_tables, is_sqlite, make_engine
from secure_aiaas.types import TRUST_LEVELS, Principal, TenantLimits

KEY_PREFIX = "saiaas_"
# 32 random bytes, URL-safe base64 without padding: 43 characters.
_KEY_RE = re.compile(r"^saiaas_[A-Za-z0-9_-]{43}$")

metadata = MetaData()
tenants_table = Table(
    "tenants",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("trust", String(16), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("requests_per_minute", Integer),
    Column("key_requests_per_minute", Integer),
    Column("max_concurrent", Integer),
    Column("priority", Integer, nullable=False, server_default="0"),
    # An operator tenant runs the service: only its keys may hold global roles.
    Column("operator", Boolean, nullable=False, server_default="0"),
    Column("tokens_per_minute", Integer),
    Column("key_tokens_per_minute", Integer),
    Column("max_streams", Integer),
)
# Columns added after the first release, created on an older store by `create_schema`.
_ADDED_COLUMNS = {
    "operator": "BOOLEAN NOT NULL DEFAULT false",
    "tokens_per_minute": "INTEGER",
    "key_tokens_per_minute": "INTEGER",
    "max_streams": "INTEGER",
}
api_keys_table = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("digest", String(64), nullable=False, unique=True),
    Column("tenant", String(64), ForeignKey("tenants.name"), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("role", String(64), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("revoked_at", String(40)),
)


@dataclass(frozen=True)
class Tenant:
    name: str
    trust: str
    created_at: str
    limits: TenantLimits = TenantLimits()
    operator: bool = False


def _tenant(row: Any) -> Tenant:
    return Tenant(
        name=row.name,
        trust=row.trust,
        created_at=row.created_at,
        limits=_limits(row),
        operator=bool(row.operator),
    )


def _limits(row: Any) -> TenantLimits:
    return TenantLimits(
        requests_per_minute=row.requests_per_minute,
        key_requests_per_minute=row.key_requests_per_minute,
        max_concurrent=row.max_concurrent,
        priority=int(row.priority or 0),
        tokens_per_minute=row.tokens_per_minute,
        key_tokens_per_minute=row.key_tokens_per_minute,
        max_streams=row.max_streams,
    )


@dataclass(frozen=True)
class ApiKeyInfo:
    key_id: str
    tenant: str
    subject: str
    role: str
    created_at: str
    revoked_at: str | None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Registry:
    """Tenants and API keys. ``hmac_key`` comes from the key store, never from settings."""

    def __init__(self, url: str, hmac_key: bytes, *, timeout_s: float = 2.0) -> None:
        self._engine = make_engine(url, timeout_s=timeout_s)
        self._hmac_key = hmac_key
        # An embedded SQLite file (no network round trip behind a lookup).
        self.local = is_sqlite(url)
        # Compared against when a key is unknown, so both paths do the same work.
        self._dummy_digest = self.digest("saiaas_" + "0" * 43)
        # Built once: SQLAlchemy memoizes compilation per statement object (hot path).
        self._lookup = (
            select(
                api_keys_table,
                tenants_table.c.trust,
                tenants_table.c.requests_per_minute,
                tenants_table.c.key_requests_per_minute,
                tenants_table.c.max_concurrent,
                tenants_table.c.priority,
                tenants_table.c.operator,
                tenants_table.c.tokens_per_minute,
                tenants_table.c.key_tokens_per_minute,
                tenants_table.c.max_streams,
            )
            .join(tenants_table, tenants_table.c.name == api_keys_table.c.tenant)
            .where(api_keys_table.c.digest == bindparam("digest"))
        )

    def create_schema(self) -> None:
        create_tables(metadata, self._engine)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Stores created before a column existed get it."""
        try:
            columns = {c["name"] for c in inspect(self._engine).get_columns("tenants")}
            missing = [(n, t) for n, t in _ADDED_COLUMNS.items() if n not in columns]
            if missing:
                with self._engine.begin() as conn:
                    for name, sql_type in missing:
                        conn.execute(text(f"ALTER TABLE tenants ADD COLUMN {name} {sql_type}"))
        except SQLAlchemyError as exc:
            raise StoreUnavailableError() from exc

    def dispose(self) -> None:
        self._engine.dispose()

    def digest(self, api_key: str) -> str:
        return hmac.new(self._hmac_key, api_key.encode(), hashlib.sha256).hexdigest()

    # -- tenants --------------------------------------------------------------------------
    def create_tenant(self, name: str, trust: str, *, operator: bool = False) -> Tenant:
        if not TENANT_RE.match(name):
            raise InputError("tenant name: use 1-63 lowercase letters, digits or '-'")
        if trust not in TRUST_LEVELS:
            raise InputError(f"trust: must be one of {', '.join(TRUST_LEVELS)}")
        tenant = Tenant(name=name, trust=trust, created_at=_now(), operator=operator)
        try:
            with self._engine.begin() as conn:
                conn.execute(
                    insert(tenants_table).values(
                        name=name,
                        trust=trust,
                        created_at=tenant.created_at,
                        priority=0,
                        operator=operator,
                    )
                )
        except IntegrityError as exc:
            raise InputError(f"tenant {name!r} already exists") from exc
        return tenant

    def list_tenants(self) -> list[Tenant]:
        try:
            with self._engine.connect() as conn:
                rows = conn.execute(select(tenants_table).order_by(tenants_table.c.name)).all()
        except SQLAlchemyError as exc:
            raise StoreUnavailableError() from exc
        return [_tenant(r) for r in rows]

    def get_tenant(self, name: str) -> Tenant:
        try:
            with self._engine.connect() as conn:
                row = conn.execute(
                    select(tenants_table).where(tenants_table.c.name == name)
                ).first()
        except SQLAlchemyError as exc:
            raise StoreUnavailableError() from exc
        if row is None:
            raise NotFoundError(f"tenant {name!r} not found")
        return _tenant(row)

    def set_limits(self, name: str, limits: TenantLimits) -> Tenant:
        """Store a tenant's compute limits (read by every replica on the next request)."""
        for value in (
            limits.requests_per_minute,
            limits.key_requests_per_minute,
            limits.max_concurrent,
            limits.tokens_per_minute,
            limits.key_tokens_per_minute,
            limits.max_streams,
        ):
            if value is not None and value <= 0:
                raise InputError("limits must be positive (omit a limit for none)")
        with self._engine.begin() as conn:
            result = conn.execute(
                update(tenants_table).where(tenants_table.c.name == name).values(**limits.__dict__)
            )
        if result.rowcount == 0:
            raise NotFoundError(f"tenant {name!r} not found")
        return self.get_tenant(name)

    # -- API keys -------------------------------------------------------------------------
    def create_api_key(
        self, tenant: str, subject: str, role: str, *, roles: Iterable[str] = ()
    ) -> tuple[str, ApiKeyInfo]:
        """Create a key; returns (the key itself, shown once; its stored description).

        Args:
            roles: the roles the policy defines besides the built-in ones; the key's role
                must be one of them, and the subject must not collide with any.

        Raises:
            InputError: a malformed or reserved subject, a subject named like a role, an
                unknown role, or a global role outside an operator tenant.
        """
        owner = self.get_tenant(tenant)
        known = set(BUILTIN_ROLES) | set(roles)
        problem = subject_problem(subject, known) or role_problem(role)
        if problem is not None:
            raise InputError(problem)
        if role not in known:
            raise InputError(f"role {role!r} is not defined by the policy")
        if role in GLOBAL_ROLES and not owner.operator:
            raise InputError(
                f"role {role!r} acts across tenants: only an operator tenant's "
                "keys may hold it (tenant create NAME --operator)"
            )
        api_key = KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip(
            "="
        )
        info = ApiKeyInfo(
            key_id="k_" + secrets.token_hex(8),
            tenant=tenant,
            subject=subject,
            role=role,
            created_at=_now(),
            revoked_at=None,
        )
        with self._engine.begin() as conn:
            conn.execute(
                insert(api_keys_table).values(digest=self.digest(api_key), **info.__dict__)
            )
        return api_key, info

    def revoke_api_key(self, key_id: str) -> ApiKeyInfo:
        with self._engine.begin() as conn:
            result = conn.execute(
                update(api_keys_table)
                .where(api_keys_table.c.key_id == key_id, api_keys_table.c.revoked_at.is_(None))
                .values(revoked_at=_now())
            )
        if result.rowcount == 0:
            raise NotFoundError(f"no active API key {key_id!r}")
        return next(k for k in self.list_api_keys() if k.key_id == key_id)

    def list_api_keys(self, tenant: str | None = None) -> list[ApiKeyInfo]:
        stmt = select(api_keys_table).order_by(api_keys_table.c.created_at, api_keys_table.c.key_id)
        if tenant is not None:
            stmt = stmt.where(api_keys_table.c.tenant == tenant)
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        return [
            ApiKeyInfo(
                key_id=r.key_id,
                tenant=r.tenant,
                subject=r.subject,
                role=r.role,
                created_at=r.created_at,
                revoked_at=r.revoked_at,
            )
            for r in rows
        ]

    # -- authentication -------------------------------------------------------------------
    def authenticate(self, api_key: str) -> Principal:
        """Resolve a presented key to its principal, or raise AuthenticationError.

        Unknown, revoked and malformed keys raise the same error; the lookup is by the HMAC
        (unpredictable to the caller) and the final comparison is constant-time.
        """
        well_formed = bool(_KEY_RE.match(api_key))
        digest = self.digest(api_key if well_formed else "saiaas_" + "0" * 43)
        try:
            with self._engine.connect() as conn:
                row = conn.execute(self._lookup, {"digest": digest}).first()
        except SQLAlchemyError as exc:
            raise StoreUnavailableError() from exc
        stored = row.digest if row is not None else self._dummy_digest
        matches = hmac.compare_digest(stored, digest)
        if not (well_formed and row is not None and matches and row.revoked_at is None):
            raise AuthenticationError()
        return Principal(
            tenant=row.tenant,
            trust=row.trust,
            subject=row.subject,
            role=row.role,
            key_id=row.key_id,
            limits=_limits(row),
            operator=bool(row.operator),
        )

    def ping(self) -> bool:
        try:
            with self._engine.connect() as conn:
                conn.execute(select(tenants_table.c.name).limit(1)).all()
            return True
        except SQLAlchemyError:
            return False
