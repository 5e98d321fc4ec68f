"""The published-policy store on SQLite and PostgreSQL: immutable, idempotent, never trusted."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from secure_aiaas.policy import PolicyEngine, PublishedOrigin, PublishedPolicyStore
from secure_aiaas.policy.loader import PolicyValidationError, read_policy
from secure_aiaas.storage import normalise_url
from tests.policy_publish.conftest import contents, publish, tamper


def _engine(store: PublishedPolicyStore) -> PolicyEngine:
    return PolicyEngine(PublishedOrigin(store))


def test_publish_makes_a_version_current_and_is_idempotent(
    store: PublishedPolicyStore, policy_dir: Path
) -> None:
    assert store.current() is None
    first = store.publish(
        contents(policy_dir), model_file="model.conf", policy_file="policy.csv", publisher="os:sam"
    )
    # The version is the one `policy check` prints for the same files.
    assert first.version == read_policy(policy_dir, "model.conf", "policy.csv").version
    assert (first.changed, first.previous, first.seq) == (True, None, 1)
    again = store.publish(
        contents(policy_dir), model_file="model.conf", policy_file="policy.csv", publisher="os:sam"
    )
    assert (again.changed, again.seq) == (False, 1)
    assert store.current() == (1, first.version)
    assert [a.seq for a in store.history()] == [1]


def test_a_rollback_is_a_new_activation_of_the_old_version(
    store: PublishedPolicyStore, policy_dir: Path
) -> None:
    v1 = publish(store, policy_dir)
    with (policy_dir / "policy.csv").open("a") as fh:
        fh.write("g, zoe, auditor, acme\n")
    v2 = publish(store, policy_dir)
    (policy_dir / "policy.csv").write_text(
        (policy_dir / "policy.csv").read_text().replace("g, zoe, auditor, acme\n", "")
    )
    back = store.publish(
        contents(policy_dir), model_file="model.conf", policy_file="policy.csv", publisher="os:sam"
    )
    assert (back.version, back.previous, back.seq, back.changed) == (v1, v2, 3, True)
    history = store.history()
    assert [(a.seq, a.version, a.current, a.intact) for a in history] == [
        (3, v1, True, True),
        (2, v2, False, True),
        (1, v1, False, True),
    ]
    engine = _engine(store)
    assert engine.load().source.version == v1


def test_an_invalid_policy_is_never_stored(store: PublishedPolicyStore, policy_dir: Path) -> None:
    v1 = publish(store, policy_dir)
    with (policy_dir / "policy.csv").open("a") as fh:
        fh.write("p, user, *, identity\n")
    with pytest.raises(PolicyValidationError):
        publish(store, policy_dir)
    assert store.current() == (1, v1)


def test_the_store_refuses_updates_and_deletes(
    store: PublishedPolicyStore, db_url: str, policy_dir: Path
) -> None:
    publish(store, policy_dir)
    engine = create_engine(normalise_url(db_url))
    try:
        for statement in (
            "UPDATE policy_publication_files SET content = content",
            "DELETE FROM policy_activations",
            "UPDATE policy_publications SET publisher = 'os:mallory'",
            "DELETE FROM policy_publications",
        ):
            with pytest.raises(SQLAlchemyError, match="append-only"):
                with engine.begin() as conn:
                    conn.execute(text(statement))
        if not db_url.startswith("sqlite"):
            with pytest.raises(SQLAlchemyError, match="append-only"):
                with engine.begin() as conn:
                    conn.execute(text("TRUNCATE policy_activations CASCADE"))
    finally:
        engine.dispose()
    assert store.current() is not None and store.history()[0].intact


def test_a_file_edited_in_the_database_is_refused(
    store: PublishedPolicyStore, db_url: str, policy_dir: Path
) -> None:
    publish(store, policy_dir)
    # A valid policy granting everything, written over the stored bytes by the DB's owner.
    tamper(
        db_url,
        "UPDATE policy_publication_files SET content = "
        + (
            "X'" + b"p, *, *, *, *, allow\n".hex() + "'"
            if db_url.startswith("sqlite")
            else "'\\x" + b"p, *, *, *, *, allow\n".hex() + "'::bytea"
        )
        + " WHERE name = 'policy.csv'",
    )
    with pytest.raises(PolicyValidationError, match="not sealed by this deployment's key"):
        _engine(store).load()
    assert store.history()[0].intact is False


def test_a_forged_publication_is_refused(
    store: PublishedPolicyStore, db_url: str, policy_dir: Path, tmp_path: Path, keys_dir: Path
) -> None:
    """Rows inserted by someone who can write the database but holds no keys: the
    triggers allow INSERT, the seal does not match."""
    from secure_aiaas.crypto import init_keys, load_keys
    from secure_aiaas.policy import seal_key_from

    init_keys(tmp_path / "other-keys")
    other = PublishedPolicyStore(
        db_url, seal_key=seal_key_from(load_keys(tmp_path / "other-keys").data_key)
    )
    try:
        v1 = publish(store, policy_dir)
        (policy_dir / "policy.csv").write_text("p, *, *, *, *, allow\n")
        forged = publish(other, policy_dir)
    finally:
        other.dispose()
    assert store.current() == (2, forged)
    with pytest.raises(PolicyValidationError, match="not sealed"):
        _engine(store).load()
    assert [a.intact for a in store.history()] == [False, True]
    assert v1 != forged


def test_a_replica_refuses_a_current_publication_older_than_it_enforced(
    store: PublishedPolicyStore, db_url: str, policy_dir: Path
) -> None:
    publish(store, policy_dir)
    engine = _engine(store)
    with (policy_dir / "policy.csv").open("a") as fh:
        fh.write("g, zoe, auditor, acme\n")
    v2 = publish(store, policy_dir)
    assert engine.load().source.version == v2
    # The newest activation removed below the API: the one before it looks current again.
    tamper(db_url, "DELETE FROM policy_activations WHERE seq = 2")
    assert engine.reload_if_changed() is False
    assert engine.version == v2 and engine.last_error is not None
    assert "older than publication 2" in engine.last_error


def test_a_replica_without_a_publication_refuses_to_load(store: PublishedPolicyStore) -> None:
    with pytest.raises(PolicyValidationError, match="run `secure-aiaas policy publish`"):
        _engine(store).load()
