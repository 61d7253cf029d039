"""SyncPeerAuthInterceptor and @require_permission on a sync grpc.server, in process: the
token is verified on every call, the permission asked of RbacService (a small stand-in
server here), and nothing of one call's caller reaches the next call on the same thread."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.protobuf import wrappers_pb2

from identity.peer import (
    KeySet,
    PermissionClient,
    RetryPolicy,
    SyncPeerAuthInterceptor,
    TokenVerifier,
    current_principal,
    require_permission,
)
from identity.v1 import rbac_pb2, rbac_pb2_grpc
from tests.unit.test_peer_sdk import AUDIENCE, ISSUER, KEY, SID, UID, Feed, Source, jwk, token


class Rbac(rbac_pb2_grpc.RbacServiceServicer):
    granted = {"catalog.films.publish"}
    unavailable = False

    def CheckPermission(self, request: Any, context: Any) -> Any:
        if self.unavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, "down")
        allowed = request.permission in self.granted and request.subject.user_id == UID
        reason = rbac_pb2.DECISION_REASON_GRANTED if allowed else rbac_pb2.DECISION_REASON_NOT_GRANTED
        return rbac_pb2.CheckPermissionResponse(allowed=allowed, reason=reason)


class Catalogue:
    def Who(self, request: Any, context: Any) -> wrappers_pb2.StringValue:
        return wrappers_pb2.StringValue(value=current_principal().user_id)

    def Open(self, request: Any, context: Any) -> wrappers_pb2.StringValue:
        try:
            return wrappers_pb2.StringValue(value=current_principal().user_id)
        except LookupError:
            return wrappers_pb2.StringValue(value="nobody")

    @require_permission("catalog.films.publish")
    def Publish(self, request: Any, context: Any) -> wrappers_pb2.StringValue:
        return wrappers_pb2.StringValue(value="published")

    @require_permission("catalog.films.delete")
    def Delete(self, request: Any, context: Any) -> wrappers_pb2.StringValue:
        return wrappers_pb2.StringValue(value="deleted")


def _handler(method: Any) -> grpc.RpcMethodHandler[Any, Any]:
    return grpc.unary_unary_rpc_method_handler(
        method,
        request_deserializer=wrappers_pb2.StringValue.FromString,
        response_serializer=wrappers_pb2.StringValue.SerializeToString,
    )


@pytest.fixture
def peer() -> Iterator[tuple[grpc.Channel, Feed, Rbac]]:
    rbac = Rbac()
    identity = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    rbac_pb2_grpc.add_RbacServiceServicer_to_server(rbac, identity)
    identity_port = identity.add_insecure_port("127.0.0.1:0")
    identity.start()
    identity_channel = grpc.insecure_channel(f"127.0.0.1:{identity_port}")
    feed = Feed()
    verifier = TokenVerifier(KeySet(Source([jwk(KEY, "k1")])), issuer=ISSUER, audiences=[AUDIENCE], feed=feed)
    permissions = PermissionClient(identity_channel, service_key="sk_x", retry=RetryPolicy(backoff=0.001))
    # One worker: consecutive calls run on the same thread.
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=1),
        interceptors=[SyncPeerAuthInterceptor(verifier, permissions, public_methods=["/t.Catalogue/Open"])],
    )
    catalogue = Catalogue()
    methods = {name: _handler(getattr(catalogue, name)) for name in ("Who", "Open", "Publish", "Delete")}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.Catalogue", methods),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel, feed, rbac
    channel.close()
    server.stop(0)
    identity_channel.close()
    identity.stop(0)


def call(channel: grpc.Channel, method: str, bearer: str | None) -> tuple[grpc.StatusCode, str]:
    stub = channel.unary_unary(
        f"/t.Catalogue/{method}",
        request_serializer=wrappers_pb2.StringValue.SerializeToString,
        response_deserializer=wrappers_pb2.StringValue.FromString,
    )
    metadata = (("authorization", f"Bearer {bearer}"),) if bearer else ()
    try:
        return grpc.StatusCode.OK, stub(wrappers_pb2.StringValue(), metadata=metadata, timeout=5).value
    except grpc.RpcError as error:
        return error.code(), error.details() or ""


def test_tokens_are_verified_on_every_call(peer) -> None:
    channel, feed, _ = peer
    assert call(channel, "Who", token()) == (grpc.StatusCode.OK, UID)
    assert call(channel, "Who", None)[0] == grpc.StatusCode.UNAUTHENTICATED
    assert call(channel, "Who", token(key=KEY, kid="other"))[0] == grpc.StatusCode.UNAUTHENTICATED
    feed.ended.add(SID)
    code, details = call(channel, "Who", token())
    assert code == grpc.StatusCode.UNAUTHENTICATED and "SESSION_REVOKED" in details
    feed.ended.clear()
    feed._fresh = False
    assert call(channel, "Who", token())[0] == grpc.StatusCode.UNAVAILABLE


def test_no_caller_outlives_its_call(peer) -> None:
    channel, _, _ = peer
    assert call(channel, "Who", token()) == (grpc.StatusCode.OK, UID)
    assert call(channel, "Open", None) == (grpc.StatusCode.OK, "nobody")


def test_require_permission(peer) -> None:
    channel, _, rbac = peer
    assert call(channel, "Publish", token()) == (grpc.StatusCode.OK, "published")
    assert call(channel, "Delete", token())[0] == grpc.StatusCode.PERMISSION_DENIED
    rbac.unavailable = True
    assert call(channel, "Publish", token())[0] == grpc.StatusCode.UNAVAILABLE
