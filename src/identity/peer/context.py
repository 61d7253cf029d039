"""The verified caller of the current RPC, shared by the grpc.aio and the sync interceptors
and by @require_permission."""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

from identity.peer.permissions import AsyncPermissionClient, PermissionClient
from identity.peer.principal import PeerPrincipal

principal_var: ContextVar[PeerPrincipal | None] = ContextVar("identity_peer_principal", default=None)
permissions_var: ContextVar[AsyncPermissionClient | PermissionClient | None] = ContextVar(
    "identity_peer_permissions", default=None
)
HEALTH_METHODS = ("/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch")


def current_principal() -> PeerPrincipal:
    """The verified caller of the current RPC (inside a method behind a PeerAuthInterceptor)."""
    principal = principal_var.get()
    if principal is None:
        raise LookupError("no verified caller: is PeerAuthInterceptor installed on this server?")
    return principal


def bearer(metadata: Iterable[tuple[str, Any]] | None) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and isinstance(value, str) and value[:7].lower() == "bearer ":
            return value[7:].strip() or None
    return None
