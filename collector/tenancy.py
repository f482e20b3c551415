"""A tenant's two names: the name its keys are minted for (``acme``) and a stable UUID derived from it.

API document 003 identifies a tenant by UUID (``X-Tenant-ID: 2489e9ad-...``). The UUID is a UUIDv5 of
the name under :data:`NAMESPACE`, so every collector computes the same one, no table stores it and no
migration was needed; it never changes while the name does not. ``X-Tenant-ID`` may carry either.
"""

from __future__ import annotations

import uuid

NAMESPACE = uuid.UUID("5d1f1c1e-6a8b-4f7e-9a51-3e2b7c0d4a96")  # sidetrail's own; fixed forever


def tenant_uuid(name: str) -> str:
    """The tenant's UUID, lower-case text: ``uuid5(NAMESPACE, name)``."""
    return str(uuid.uuid5(NAMESPACE, name))


def names_tenant(claimed: str, tenant: str) -> bool:
    """Whether ``claimed`` (an ``X-Tenant-ID`` value) is ``tenant``'s name or its UUID (any case)."""
    return claimed == tenant or claimed.lower() == tenant_uuid(tenant)
