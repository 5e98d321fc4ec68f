"""The published policy: sealed, immutable versions in the shared database.

The files in ``policies/`` stay what security admins edit and review; ``secure-aiaas policy
publish`` validates them and stores them here, and replicas (``SAIAAS_POLICY__SOURCE=
published``) enforce what is here. Three tables, append-only (the database refuses UPDATE,
DELETE and TRUNCATE):

* ``policy_publications``: one row per distinct version (the digest `parse_policy` gives the
  exact bytes), with the file names and ``policy_publication_files`` holding their bytes;
* ``policy_activations``: one row per publish, numbered; the highest is the current version.
  Publishing the version that is already current adds nothing; publishing an older version
  again (a rollback) adds an activation, not a copy.

A replica never trusts the rows: each one carries an HMAC seal under a key derived from the
deployment's data key (which writers to the database alone do not hold), the files are
validated again by `parse_policy` and must hash to the stored version, and a replica refuses
a current activation older than one it has already enforced (rows deleted, a database
restored over a newer one). A refused publication is handled as a refused file edit: the
last good policy keeps deciding for ``stale_after_s``, then every request is refused.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    insert,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from secure_aiaas.crypto.keystore import derive_tenant_key
from secure_aiaas.errors import StoreUnavailableError
from secure_aiaas.policy.loader import PolicySource, PolicyValidationError, parse_policy
from secure_aiaas.storage import create_tables, is_sqlite, make_engine

_SEQ = BigInteger().with_variant(Integer, "sqlite")
metadata = MetaData()
publications_table = Table(
    "policy_publications",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("model_file", String(255), nullable=False),
    Column("policy_file", String(255), nullable=False),
    Column("published_at", String(40), nullable=False),
    Column("publisher", String(512), nullable=False),
    Column("seal", String(64), nullable=False),
)
publication_files_table = Table(
    "policy_publication_files",
    metadata,
    Column("version", String(64), ForeignKey("policy_publications.version"), primary_key=True),
    Column("position", Integer, primary_key=True, autoincrement=False),
    Column("name", String(255), nullable=False),
    Column("content", LargeBinary, nullable=False),
)
activations_table = Table(
    "policy_activations",
    metadata,
    Column("seq", _SEQ, primary_key=True, autoincrement=False),
    Column("version", String(64), ForeignKey("policy_publications.version"), nullable=False),
    Column("previous", String(64)),
    Column("activated_at", String(40), nullable=False),
    Column("publisher", String(512), nullable=False),
    Column("seal", String(64), nullable=False),
)
_TABLES = ("policy_publications", "policy_publication_files", "policy_activations")
_SQLITE_TRIGGERS = tuple(
    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
    "BEGIN SELECT RAISE(ABORT, 'published policies are append-only'); END"
    for table in _TABLES
    for op in ("UPDATE", "DELETE")
)
_PG_TRIGGERS = (
    "SELECT pg_advisory_xact_lock(hashtext('saiaas-policy-schema'))",
    """CREATE OR REPLACE FUNCTION saiaas_policy_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'published policies are append-only (% on %)', TG_OP, TG_TABLE_NAME;
END $$ LANGUAGE plpgsql""",
    *(
        f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION saiaas_policy_append_only()"
        for table in _TABLES
    ),
    *(
        f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION saiaas_policy_append_only()"
        for table in _TABLES
    ),
)
_PG_PUBLISH_LOCK = "SELECT pg_advisory_xact_lock(hashtext('saiaas-policy-publish'))"
_UNSEALED = (
    "publication {seq} ({version}) is not sealed by this deployment's key: it was "
    "written or edited outside `secure-aiaas policy publish`"
)


def seal_key_from(data_key: bytes) -> bytes:
    """The key publications are sealed with (every replica derives the same one)."""
    return derive_tenant_key(data_key, "policy-publication", "*")


def _seal(key: bytes, kind: str, *parts: str | bytes) -> str:
    mac = hmac.new(key, kind.encode(), hashlib.sha256)
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        mac.update(len(data).to_bytes(8, "big") + data)  # length-prefixed: no ambiguity
    return mac.hexdigest()


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class PublishResult:
    version: str
    previous: str | None
    seq: int
    changed: bool  # False: that version was already current (nothing was written)


@dataclass(frozen=True)
class Activation:
    """One publish, as `policy published` lists it."""

    seq: int
    version: str
    previous: str | None
    activated_at: str
    publisher: str
    current: bool
    intact: bool  # its seals verify and its files hash to its version


class PublishedPolicyStore:
    """Publications in SQLite or PostgreSQL (the registry database, shared by replicas)."""

    def __init__(self, url: str, *, seal_key: bytes, timeout_s: float = 2.0) -> None:
        self._sqlite = is_sqlite(url)
        self._seal_key = seal_key
        # Writer: takes the write lock at BEGIN (SQLite), so two publishes serialise.
        self._writer = make_engine(url, timeout_s=timeout_s, immediate=True)
        self._reader = make_engine(url, timeout_s=timeout_s)
        self._sql_current = (
            select(activations_table.c.seq, activations_table.c.version)
            .order_by(activations_table.c.seq.desc())
            .limit(1)
        )

    def create_schema(self) -> None:
        """Create the tables and make them append-only (idempotent; replicas may race)."""
        create_tables(metadata, self._writer)
        try:
            with self._writer.begin() as conn:
                for statement in _SQLITE_TRIGGERS if self._sqlite else _PG_TRIGGERS:
                    conn.execute(text(statement))
        except SQLAlchemyError as exc:
            raise StoreUnavailableError("policy store cannot be made append-only") from exc

    def dispose(self) -> None:
        self._writer.dispose()
        self._reader.dispose()

    # -- writes ---------------------------------------------------------------------------
    def publish(
        self, contents: dict[str, bytes], *, model_file: str, policy_file: str, publisher: str
    ) -> PublishResult:
        """Validate ``contents`` (file name → bytes) and make that version current.

        Raises:
            PolicyValidationError: the policy is invalid; nothing is written.
            StoreUnavailableError: the database cannot be written; nothing is written.
        """
        source = parse_policy(contents, model_file, policy_file)
        version, now = source.version, _utc_now()
        publisher = publisher[:512]
        try:
            with self._writer.begin() as conn:
                if not self._sqlite:
                    conn.execute(text(_PG_PUBLISH_LOCK))
                last = conn.execute(self._sql_current).first()
                previous = None if last is None else str(last.version)
                if last is not None and previous == version:
                    return PublishResult(version, previous, int(last.seq), changed=False)
                known = conn.execute(
                    select(publications_table.c.version).where(
                        publications_table.c.version == version
                    )
                ).first()
                if known is None:
                    files = [(name, contents[name]) for name in source.files]
                    conn.execute(
                        insert(publications_table).values(
                            version=version,
                            model_file=model_file,
                            policy_file=policy_file,
                            published_at=now,
                            publisher=publisher,
                            seal=self._publication_seal(
                                version, model_file, policy_file, now, publisher, files
                            ),
                        )
                    )
                    conn.execute(
                        insert(publication_files_table),
                        [
                            {"version": version, "position": i, "name": name, "content": data}
                            for i, (name, data) in enumerate(files)
                        ],
                    )
                seq = 1 if last is None else int(last.seq) + 1
                conn.execute(
                    insert(activations_table).values(
                        seq=seq,
                        version=version,
                        previous=previous,
                        activated_at=now,
                        publisher=publisher,
                        seal=self._activation_seal(seq, version, previous, now, publisher),
                    )
                )
        except IntegrityError as exc:  # a concurrent publisher on SQLite without the lock
            raise StoreUnavailableError("policy store busy; publish again") from exc
        except SQLAlchemyError as exc:
            raise StoreUnavailableError("policy store unavailable") from exc
        return PublishResult(version, previous, seq, changed=True)

    # -- reads ----------------------------------------------------------------------------
    def current(self) -> tuple[int, str] | None:
        """The current activation's number and version (one indexed row: cheap)."""
        try:
            with self._reader.connect() as conn:
                row = conn.execute(self._sql_current).first()
        except SQLAlchemyError as exc:
            raise StoreUnavailableError("policy store unavailable") from exc
        return None if row is None else (int(row.seq), str(row.version))

    def load_current(self) -> tuple[int, PolicySource]:
        """The current publication, verified and validated again.

        Raises:
            PolicyValidationError: nothing is published, or the rows are refused (seal,
                validation, digest).
            StoreUnavailableError: the database cannot be read.
        """
        try:
            with self._reader.connect() as conn:
                row = conn.execute(
                    select(activations_table).order_by(activations_table.c.seq.desc()).limit(1)
                ).first()
                if row is None:
                    raise PolicyValidationError(
                        ["no policy has been published: run `secure-aiaas policy publish`"]
                    )
                seq = int(row.seq)
                if row.seal != self._activation_seal(
                    seq, row.version, row.previous, row.activated_at, row.publisher
                ):
                    raise PolicyValidationError([_UNSEALED.format(seq=seq, version=row.version)])
                return seq, self._verified(conn, seq, str(row.version))
        except SQLAlchemyError as exc:
            raise StoreUnavailableError("policy store unavailable") from exc

    def history(self, limit: int = 100) -> list[Activation]:
        """The latest publishes, newest first, each checked as a replica would check it."""
        try:
            with self._reader.connect() as conn:
                rows = conn.execute(
                    select(activations_table).order_by(activations_table.c.seq.desc()).limit(limit)
                ).all()
                result = []
                for i, row in enumerate(rows):
                    seq = int(row.seq)
                    intact = row.seal == self._activation_seal(
                        seq, row.version, row.previous, row.activated_at, row.publisher
                    )
                    if intact:
                        try:
                            self._verified(conn, seq, str(row.version))
                        except PolicyValidationError:
                            intact = False
                    result.append(
                        Activation(
                            seq=seq,
                            version=str(row.version),
                            previous=row.previous,
                            activated_at=str(row.activated_at),
                            publisher=str(row.publisher),
                            current=i == 0,
                            intact=intact,
                        )
                    )
                return result
        except SQLAlchemyError as exc:
            raise StoreUnavailableError("policy store unavailable") from exc

    def _verified(self, conn: Connection, seq: int, version: str) -> PolicySource:
        pub = conn.execute(
            select(publications_table).where(publications_table.c.version == version)
        ).first()
        files = [
            (str(r.name), bytes(r.content))
            for r in conn.execute(
                select(publication_files_table.c.name, publication_files_table.c.content)
                .where(publication_files_table.c.version == version)
                .order_by(publication_files_table.c.position)
            )
        ]
        if pub is None or pub.seal != self._publication_seal(
            version, pub.model_file, pub.policy_file, pub.published_at, pub.publisher, files
        ):
            raise PolicyValidationError([_UNSEALED.format(seq=seq, version=version)])
        source = parse_policy(dict(files), str(pub.model_file), str(pub.policy_file))
        if source.version != version:
            raise PolicyValidationError(
                [f"publication {seq}: its files hash to {source.version}, not to {version}"]
            )
        return source

    def _publication_seal(
        self,
        version: str,
        model_file: str,
        policy_file: str,
        published_at: str,
        publisher: str,
        files: list[tuple[str, bytes]],
    ) -> str:
        parts: list[str | bytes] = [version, model_file, policy_file, published_at, publisher]
        for name, data in files:
            parts += [name, data]
        return _seal(self._seal_key, "policy-publication/v1", *parts)

    def _activation_seal(
        self, seq: int, version: str, previous: str | None, activated_at: str, publisher: str
    ) -> str:
        return _seal(
            self._seal_key,
            "policy-activation/v1",
            str(seq),
            version,
            previous or "",
            activated_at,
            publisher,
        )


class PublishedOrigin:
    """The engine's view of the store: the current publication, never an older one."""

    kind = "published"

    def __init__(self, store: PublishedPolicyStore) -> None:
        self.store = store
        self._highest_seq = 0  # the newest activation this replica has enforced

    def stamp(self) -> Hashable:
        return self.store.current()

    def read(self) -> tuple[Hashable, PolicySource]:
        seq, source = self.store.load_current()
        if seq < self._highest_seq:
            raise PolicyValidationError(
                [
                    f"the current publication ({seq}) is older than publication "
                    f"{self._highest_seq}, which this replica already enforced: the database "
                    "was rolled back or edited; publish again and restart the replicas"
                ]
            )
        self._highest_seq = seq
        return (seq, source.version), source

    def close(self) -> None:
        self.store.dispose()
