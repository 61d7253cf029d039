"""Peers authenticated by mutual TLS: a client certificate standing in for a service key.

When the server asks for client certificates (IDENTITY_TLS_CLIENT_CA_FILE), gRPC has
already verified the chain by the time a call arrives. The certificate's common name
is the peer's name; it counts as that peer only while the name has a live service
key (`identity service-keys create NAME`), so peers are registered and revoked the
same way whichever credential they present, and the gateway's own client
certificate, under a name with no key, never passes for a peer. A bearer credential
in the call, when present, is used instead."""

from __future__ import annotations

from typing import Any

import grpc

from identity.domain.errors import InvalidArgument, Unauthenticated
from identity.services.permission_cache import CheckCaller
from identity.services.service_keys import ServiceKeyService, validate_key_name


def certificate_name(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The common name of the caller's verified client certificate, if any."""
    auth = context.auth_context() or {}
    if auth.get("transport_security_type") != [b"ssl"]:
        return None
    names = list(auth.get("x509_common_name") or ())
    if len(names) != 1:
        return None
    try:
        return bytes(names[0]).decode("utf-8")
    except UnicodeDecodeError:
        return None


class PeerCertificates:
    def __init__(self, service_keys: ServiceKeyService) -> None:
        self._service_keys = service_keys

    async def caller(self, context: grpc.aio.ServicerContext[Any, Any]) -> CheckCaller | None:
        """For a call without a bearer credential: the peer its certificate names, else None."""
        name = certificate_name(context)
        if name is None:
            return None
        try:
            validate_key_name(name)
        except InvalidArgument:
            raise Unauthenticated("the client certificate names no registered peer") from None
        keys = await self._service_keys.list(name)
        if not any(key.revoked_at is None for key in keys):
            raise Unauthenticated("the client certificate names no registered peer")
        return CheckCaller(service=name)
