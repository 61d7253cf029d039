"""What a call says about its caller: bearer token, client IP, user agent."""

from __future__ import annotations

import ipaddress
from typing import Any

import grpc

from identity.domain.models import ClientInfo

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

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


def _address(value: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None


def _trusted(address: IPAddress, proxies: tuple[IPNetwork, ...]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in proxies)


def client_ip(context: grpc.aio.ServicerContext[Any, Any], proxies: tuple[IPNetwork, ...]) -> str | None:
    """The TCP peer, unless that peer is a trusted proxy.

    Only a peer inside one of the ``proxies`` networks is believed about
    x-forwarded-for. Each proxy appends the address it saw, so the header is read
    from the right: the first address that is not itself a trusted proxy is the
    client. An unreadable entry stops the walk at the last address known good;
    from any other peer the header is ignored, so a client cannot pick its address."""
    peer = _peer_ip(context.peer() or "")
    peer_address = _address(peer) if peer else None
    if peer_address is None or not proxies or not _trusted(peer_address, proxies):
        return peer
    forwarded = _metadata(context, "x-forwarded-for")
    current = peer_address
    for hop in reversed((forwarded or "").split(",")):
        address = _address(hop)
        if address is None:
            break
        current = address
        if not _trusted(address, proxies):
            break
    return str(current)


def client_info(context: grpc.aio.ServicerContext[Any, Any], proxies: tuple[IPNetwork, ...]) -> ClientInfo:
    user_agent = _metadata(context, "user-agent") or ""
    return ClientInfo(ip=client_ip(context, proxies), user_agent=user_agent[:_MAX_USER_AGENT])
