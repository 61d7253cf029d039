"""What a call says about its caller: bearer token, client IP, user agent."""

from __future__ import annotations

import ipaddress
from typing import Any

import grpc

from identity.domain.models import ClientInfo

_MAX_USER_AGENT = 512


def _metadata(context: grpc.aio.ServicerContext[Any, Any], key: str) -> str | None:
    for k, value in context.invocation_metadata() or ():
        if k == key and isinstance(value, str):
            return value
    return None


def bearer_token(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The token of `authorization: Bearer <token>`: the scheme (any case), one space, and
    the token exactly as sent. Whitespace is never trimmed from a token, here or in
    ValidateToken or a CheckPermission subject: a token with any is refused (TOKEN_INVALID),
    as is one over the token size limit. The metadata as a whole is capped by the
    transport (server.MAX_METADATA_BYTES)."""
    header = _metadata(context, "authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token or None


def _peer_ip(peer: str) -> str | None:
    # "ipv4:127.0.0.1:5555", "ipv6:[::1]:5555", "unix:..."
    kind, _, address = peer.partition(":")
    if kind == "ipv4":
        return address.rsplit(":", 1)[0]
    if kind == "ipv6":
        return address.rsplit(":", 1)[0].strip("[]")
    return None


def _valid_ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def client_ip(context: grpc.aio.ServicerContext[Any, Any], trusted_hops: int) -> str | None:
    """The TCP peer, unless a trusted proxy says otherwise.

    With N trusted hops, the client is the Nth address from the right of
    x-forwarded-for (each trusted proxy appends the address it saw). With no
    trusted hop the header is ignored, so a client cannot pick its own address."""
    peer = _peer_ip(context.peer() or "")
    if trusted_hops <= 0:
        return peer
    forwarded = _metadata(context, "x-forwarded-for")
    if not forwarded:
        return peer
    hops = [part.strip() for part in forwarded.split(",") if part.strip()]
    if len(hops) < trusted_hops:
        return peer
    return _valid_ip(hops[-trusted_hops]) or peer


def client_info(context: grpc.aio.ServicerContext[Any, Any], trusted_hops: int) -> ClientInfo:
    user_agent = _metadata(context, "user-agent") or ""
    return ClientInfo(ip=client_ip(context, trusted_hops), user_agent=user_agent[:_MAX_USER_AGENT])
