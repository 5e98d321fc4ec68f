"""Identifier rules shared by auth, policy, audit and the CLI (a leaf: imports nothing local).

Subjects and roles are separate namespaces. A subject is whoever holds an API key; a role is
what a policy line grants. The Casbin model never compares a subject with a role by name: the
enforcer sees subjects as ``subject:<name>`` (a colon can never appear in a role), so a key
issued to a subject called ``security-admin`` gains nothing from the name. On top of that,
names that *look* like a role (``Security_Admin``, ``securityadmin``) or use a reserved
prefix are refused when a key is issued and when a policy is checked, so a reviewer reading
the trail can never mistake one for the other.

Global roles act across tenants (the policy grants them only in the domain
``tenant:operator``); they can be held only by keys of an operator tenant.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

TENANT_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
ROLE_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
SUBJECT_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$"
# Model names as the registry stores them (see inference.manifest.NAME_PATTERN).
MODEL_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"

TENANT_RE = re.compile(TENANT_PATTERN)
ROLE_RE = re.compile(ROLE_PATTERN)
SUBJECT_RE = re.compile(SUBJECT_PATTERN)
MODEL_RE = re.compile(MODEL_PATTERN)

# Roles the shipped policy grants; a policy may define more (any role named in a line).
BUILTIN_ROLES: frozenset[str] = frozenset(
    {
        "user",
        "tenant-admin",
        "he-user",
        "auditor",
        "security-admin",
        "metrics-reader",
    }
)
# Roles that act across tenants: only keys of an operator tenant may hold them.
GLOBAL_ROLES: frozenset[str] = frozenset({"security-admin", "metrics-reader"})

# How the enforcer sees a subject (never equal to a role name: roles cannot hold ':').
SUBJECT_PREFIX = "subject:"
# Domain classes a policy line may name besides a tenant and "*".
OPERATOR_DOMAIN = "tenant:operator"
CUSTOMER_DOMAIN = "tenant:customer"
TRUST_DOMAINS: frozenset[str] = frozenset({"trust:trusted", "trust:sensitive"})
DOMAIN_CLASSES: frozenset[str] = TRUST_DOMAINS | {OPERATOR_DOMAIN, CUSTOMER_DOMAIN}

# Subjects that would read like the service itself in the trail.
_RESERVED_SUBJECTS = frozenset(
    {
        "anonymous",
        "unknown",
        "system",
        "root",
        "saiaas",
        "operator",
        "admin",
        "everyone",
        "all",
        "any",
        "none",
        "null",
    }
)
_RESERVED_PREFIX = re.compile(
    r"^(role|subject|system|saiaas|operator|tenant|trust|os|cli)"
    r"([._@-]|$)"
)
_SEPARATORS = re.compile(r"[._@\-\s]+")


def fold(name: str) -> str:
    """The form two names are compared in: NFKC, case-folded, separators removed."""
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", name).casefold())


def subject_problem(subject: str, roles: Iterable[str] = ()) -> str | None:
    """Why ``subject`` may not name a key holder (None: it may).

    Args:
        subject: the proposed subject name.
        roles: role names besides the built-in ones (e.g. every role the policy names).
    """
    if not SUBJECT_RE.match(subject):
        return "subject: use letters, digits and . _ @ - (max 128, starting with a letter or digit)"
    folded = fold(subject)
    role_names = {fold(r) for r in (*BUILTIN_ROLES, *roles)}
    if folded in role_names:
        return (
            f"subject {subject!r} collides with a role name; subjects and roles are "
            "separate namespaces"
        )
    if folded in _RESERVED_SUBJECTS or _RESERVED_PREFIX.match(subject.casefold()):
        return f"subject {subject!r} uses a reserved name or prefix"
    return None


def role_problem(role: str) -> str | None:
    """Why ``role`` is not a well-formed role name (None: it is)."""
    if not ROLE_RE.match(role):
        return "role: use 1-63 lowercase letters, digits or '-'"
    return None
