"""identity.v1.PeerService: the revocation feed for peers.

Not exposed by the website gateway (it carries no HTTP rule and the gateway exposes
AuthService only): callers are peers with a service key or a verified peer certificate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, TypeAlias

import grpc

from identity.api import convert
from identity.api.errors import domain_status
from identity.api.metadata import bearer_token
from identity.domain.errors import DomainError, InvalidArgument, PermissionDenied
from identity.services.authz import AuthzService
from identity.services.ended_sessions import EndedSession, EndedSessions
from identity.v1 import peer_pb2, peer_pb2_grpc

Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]

_MAX_CURSOR_LENGTH = 20


def _cursor(raw: str) -> int:
    text = raw.strip()
    if not text:
        return 0
    if len(text) > _MAX_CURSOR_LENGTH or not text.isdigit():
        raise InvalidArgument("cursor", "cursor is not one this service issued")
    return int(text)


def _ended(entry: EndedSession) -> peer_pb2.EndedSession:
    return peer_pb2.EndedSession(
        session_id=str(entry.session_id),
        user_id=str(entry.user_id),
        end_time=convert.timestamp(entry.ended_at),
        tokens_valid_until=convert.timestamp(entry.tokens_valid_until),
        reason=entry.reason,
    )


class PeerServicer(peer_pb2_grpc.PeerServiceServicer):
    def __init__(self, *, ended: EndedSessions, authz: AuthzService, heartbeat: timedelta) -> None:
        self._ended = ended
        self._authz = authz
        self._heartbeat = heartbeat.total_seconds()

    async def _authorize(self, context: Context) -> None:
        """A service key, or a client certificate the TLS layer verified."""
        if context.peer_identities():
            return
        caller = await self._authz.caller(bearer_token(context))
        if caller.service is None:
            raise PermissionDenied("the revocation feed is for peer services (a service key)")

    async def WatchSessionRevocations(
        self, request: peer_pb2.WatchSessionRevocationsRequest, context: Context
    ) -> AsyncIterator[peer_pb2.WatchSessionRevocationsResponse]:
        try:
            after = _cursor(request.cursor)
            await self._authorize(context)
        except DomainError as error:
            await context.abort_with_status(domain_status(error))
            return
        async for batch in self._ended.subscribe(after, self._heartbeat):
            yield peer_pb2.WatchSessionRevocationsResponse(
                ended_sessions=[_ended(e) for e in batch.sessions],
                cursor=str(batch.cursor),
                current_time=convert.timestamp(batch.current_at),
            )
