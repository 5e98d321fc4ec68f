"""What must be shared before a second replica may start (checked before Ray starts).

Two replicas on per-process state disagree silently: each keeps its own SQLite audit chain
(two chains, neither complete), its own tenants and keys, its own quota counters (a tenant
gets its limit once per replica), its own copy of the policy files (a revoked role lingers
wherever the files were not edited). Refusing is the only safe answer.
"""

from __future__ import annotations

from secure_aiaas.config import Settings


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def shared_state_problems(settings: Settings) -> list[str]:
    """What to configure before the Ray engine may start; empty when nothing is missing.

    Args:
        settings: the service settings, `scaleout` section included.

    Returns:
        One sentence per problem, naming the setting that fixes it.
    """
    problems: list[str] = []
    scale = settings.scaleout
    largest_batch = max(settings.inference.max_batch_size, settings.llm.max_batch_size)
    if scale.max_ongoing_requests < largest_batch:
        problems.append(
            f"SAIAAS_SCALEOUT__MAX_ONGOING_REQUESTS ({scale.max_ongoing_requests}) must be at "
            f"least the largest batch size ({largest_batch}): a replica admitting fewer "
            "requests than a batch holds never fills one"
        )
    if scale.ingress_max_replicas == 1:
        return problems
    replicas = f"{scale.ingress_max_replicas} ingress replicas"
    if _is_sqlite(settings.resolved_database_url()):
        problems.append(
            f"{replicas} need SAIAAS_DATABASE_URL=postgresql://…: tenants, API keys and "
            "HE contexts on SQLite are per machine"
        )
    if _is_sqlite(settings.resolved_audit_url()):
        problems.append(
            f"{replicas} need SAIAAS_AUDIT_URL=postgresql://…: one audit chain for all "
            "replicas, not one SQLite chain each"
        )
    if not settings.redis_url:
        problems.append(
            f"{replicas} need SAIAAS_REDIS_URL: without it quotas and the anonymous budget "
            "are kept per process (each replica would grant a tenant its whole limit)"
        )
    if settings.policy.source != "published":
        problems.append(
            f"{replicas} need SAIAAS_POLICY__SOURCE=published (then `secure-aiaas policy "
            "publish`): policy files are read per machine, a change would not reach them all"
        )
    return problems
