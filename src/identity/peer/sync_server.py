"""The blocking variant of PeerAuthInterceptor, for a peer served by a sync grpc.server
(a thread pool): verifies the bearer token of every call and makes the principal available
to the method and to @require_permission (with a blocking PermissionClient)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from typing import Any

import grpc

from identity.peer.context import HEALTH_METHODS, bearer, permissions_var, principal_var
from identity.peer.errors import PeerUnavailable, TokenInvalid
from identity.peer.permissions import PermissionClient
from identity.peer.verifier import TokenVerifier


class SyncPeerAuthInterceptor(grpc.ServerInterceptor):
    def __init__(
        self,
        verifier: TokenVerifier,
        permissions: PermissionClient | None = None,
        *,
        public_methods: Collection[str] = HEALTH_METHODS,
    ) -> None:
        self._verifier = verifier
        self._permissions = permissions
        self._public = frozenset(public_methods)

    def _authenticate(self, context: grpc.ServicerContext) -> None:
        token = bearer(context.invocation_metadata())
        if not token:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "an access token is required")
        try:
            principal = self._verifier.verify(token)
        except TokenInvalid as refused:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"access token refused: {refused.reason}")
        except PeerUnavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, "cannot verify the access token now")
        principal_var.set(principal)
        permissions_var.set(self._permissions)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        method = getattr(handler_call_details, "method", "")
        if handler is None or method in self._public:
            return handler
        if handler.unary_unary is not None:
            behavior = handler.unary_unary

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                # Worker threads serve one call after another: nothing may outlive the call.
                principal, permissions = principal_var.set(None), permissions_var.set(None)
                try:
                    self._authenticate(context)
                    return behavior(request, context)
                finally:
                    principal_var.reset(principal)
                    permissions_var.reset(permissions)

            return grpc.unary_unary_rpc_method_handler(
                unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream is not None:
            stream = handler.unary_stream

            def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                principal, permissions = principal_var.set(None), permissions_var.set(None)
                try:
                    self._authenticate(context)
                    yield from stream(request, context)
                finally:
                    principal_var.reset(principal)
                    permissions_var.reset(permissions)

            return grpc.unary_stream_rpc_method_handler(
                streaming, handler.request_deserializer, handler.response_serializer
            )

        def refuse(request: Any, context: grpc.ServicerContext) -> Any:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "not available behind SyncPeerAuthInterceptor")

        return grpc.unary_unary_rpc_method_handler(refuse)
