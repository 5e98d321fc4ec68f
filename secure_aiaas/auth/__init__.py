"""Authentication: API keys → Principal, tenants and keys in the shared registry."""

from secure_aiaas.auth.registry import ApiKeyInfo, Registry, Tenant

__all__ = ["ApiKeyInfo", "Registry", "Tenant"]
