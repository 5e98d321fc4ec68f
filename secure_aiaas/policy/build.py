"""The engine a server runs, from its settings: watching the files, or the published policy."""

from __future__ import annotations

from secure_aiaas.config import Settings
from secure_aiaas.policy.engine import PolicyEngine
from secure_aiaas.policy.notices import RedisNotices, notice_channel
from secure_aiaas.policy.published import PublishedOrigin, PublishedPolicyStore, seal_key_from


def published_store(settings: Settings, data_key: bytes) -> PublishedPolicyStore:
    """The published-policy store in the shared database (the registry's)."""
    return PublishedPolicyStore(
        settings.resolved_database_url(),
        seal_key=seal_key_from(data_key),
        timeout_s=settings.audit.write_timeout_s,
    )


def build_policy_engine(settings: Settings, *, data_key: bytes) -> PolicyEngine:
    """An engine over ``settings.policy.source`` (nothing loaded or started yet).

    Args:
        settings: the service settings.
        data_key: the deployment's data key (publications are sealed under a key derived
            from it).

    Raises:
        StoreUnavailableError: published mode, and the database cannot be prepared.
    """
    cfg = settings.policy
    if cfg.source == "files":
        return PolicyEngine(
            settings.policy_dir,
            model_file=cfg.model_file,
            policy_file=cfg.policy_file,
            reload_interval_s=cfg.reload_interval_s,
            stale_after_s=cfg.stale_after_s,
        )
    store = published_store(settings, data_key)
    store.create_schema()
    notices = None
    if settings.redis_url:
        notices = RedisNotices(
            settings.redis_url,
            notice_channel(settings.scheduling.key_prefix),
            timeout_s=settings.scheduling.redis_timeout_s,
        )
    return PolicyEngine(
        PublishedOrigin(store),
        reload_interval_s=cfg.published_check_s,
        stale_after_s=cfg.stale_after_s,
        notices=notices,
    )
