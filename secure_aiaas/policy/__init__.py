"""Authorization: Casbin RBAC with tenants as domains, validated and hot-reloaded."""

from secure_aiaas.policy.engine import LoadedPolicy, PolicyEngine
from secure_aiaas.policy.loader import PolicyValidationError, read_policy

__all__ = ["LoadedPolicy", "PolicyEngine", "PolicyValidationError", "read_policy"]
