"""Authorization: Casbin RBAC with tenants as domains, validated and hot-reloaded.

The policy comes from the policy directory or, across replicas, from the version published
to the shared database (`published`), announced over Redis (`notices`).
"""

from secure_aiaas.policy.build import build_policy_engine, published_store
from secure_aiaas.policy.engine import LoadedPolicy, PolicyEngine
from secure_aiaas.policy.loader import PolicyValidationError, read_policy
from secure_aiaas.policy.notices import Announcer, RedisNotices, announce, notice_channel
from secure_aiaas.policy.origins import FileOrigin, PolicyOrigin
from secure_aiaas.policy.published import (
    Activation,
    PublishedOrigin,
    PublishedPolicyStore,
    PublishResult,
    seal_key_from,
)

__all__ = [
    "Activation",
    "Announcer",
    "FileOrigin",
    "LoadedPolicy",
    "PolicyEngine",
    "PolicyOrigin",
    "PolicyValidationError",
    "PublishResult",
    "PublishedOrigin",
    "PublishedPolicyStore",
    "RedisNotices",
    "announce",
    "build_policy_engine",
    "notice_channel",
    "published_store",
    "read_policy",
    "seal_key_from",
]
