"""Events the audit system records about itself (key created or revoked, export started, retention run).

Each is written to the affected tenant's own trail, so a tenant can see who touched its keys and data.
"""

from __future__ import annotations

import secrets
from typing import Any

from core.event import make_event_id, now_ms


def self_event(tenant_id: str, action: str, actor_id: str, actor_type: str, **metadata: Any) -> dict[str, Any]:
    """An event the audit system records about itself, in the tenant's own trail (already validated form)."""
    created = now_ms()
    return {
        "id": make_event_id(created, secrets.token_bytes(16)),
        "tenant_id": tenant_id,
        "created_at": created,
        "received_at": created,
        "action": action,
        "outcome": "success",
        "actor_id": actor_id,
        "actor_type": actor_type,
        "actor_name": None,
        "actor_email": None,
        "resource_type": "sidetrail",
        "resource_id": None,
        "method": None,
        "path": None,
        "status_code": None,
        "client_ip": None,
        "user_agent": None,
        "request_id": None,
        "source": {"name": "sidetrail-collector"},
        "metadata": metadata,
    }
