"""Protecting a peer's grpc.aio servicer: `PeerAuthInterceptor` verifies the caller's
bearer token on every call (UNAUTHENTICATED when refused, UNAVAILABLE when identity or the
feed cannot vouch for it) and makes the principal available to the method;
`@require_permission("catalog.films.publish")` asks identity's CheckPermission for it
(PERMISSION_DENIED when not allowed)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any, TypeVar, cast

import grpc

from identity.peer.context import HEALTH_METHODS, bearer, permissions_var, principal_var
from identity.peer.errors import IdentityError, PeerUnavailable, TokenInvalid
from identity.peer.permissions import AsyncPermissionClient, PermissionClient
from identity.peer.verifier import TokenVerifier

Context = grpc.aio.ServicerContext[Any, Any]
Method = TypeVar("Method", bound=Callable[..., Any])


class PeerAuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        verifier: TokenVerifier,
        permissions: AsyncPermissionClient | None = None,
        *,
        public_methods: Collection[str] = HEALTH_METHODS,
    ) -> None:
        self._verifier = verifier
        self._permissions = permissions
        self._public = frozenset(public_methods)

    async def _authenticate(self, context: Context) -> None:
        token = bearer(context.invocation_metadata())
        if not token:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "an access token is required")
        try:
            principal = await self._verifier.verify_async(token)
        except TokenInvalid as refused:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"access token refused: {refused.reason}")
        except PeerUnavailable:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "cannot verify the access token now")
        # Each call runs in a task of its own: what is set here dies with the call.
        principal_var.set(principal)
        permissions_var.set(self._permissions)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = getattr(handler_call_details, "method", "")
        if handler is None or method in self._public:
            return handler
        if handler.unary_unary is not None:
            # grpc.aio handlers are coroutines; the stubs type them as sync ones.
            behavior = cast(Callable[[Any, Context], Awaitable[Any]], handler.unary_unary)

            async def unary(request: Any, context: Context) -> Any:
                await self._authenticate(context)
                return await behavior(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary, handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream is not None:
            stream = cast(Callable[[Any, Context], AsyncIterator[Any]], handler.unary_stream)

            async def streaming(request: Any, context: Context) -> AsyncIterator[Any]:
                await self._authenticate(context)
                async for item in stream(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(
                streaming, handler.request_deserializer, handler.response_serializer
            )

        # Client-streaming methods are not wrapped: refuse rather than run them unchecked.
        async def refuse(request: Any, context: Context) -> Any:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not available behind PeerAuthInterceptor")

        return grpc.unary_unary_rpc_method_handler(refuse)


def require_permission(permission: str) -> Callable[[Method], Method]:
    """Decorates a servicer method (async behind PeerAuthInterceptor, or sync behind
    SyncPeerAuthInterceptor): the caller's user must hold `permission`."""

    def decorate(method: Method) -> Method:
        if not inspect.iscoroutinefunction(method):
            return _sync_guard(method, permission)

        @functools.wraps(method)
        async def guarded(self: Any, request: Any, context: Context) -> Any:
            principal, client = principal_var.get(), permissions_var.get()
            if principal is None or not isinstance(client, AsyncPermissionClient):
                # Misconfigured (no interceptor, or one without an AsyncPermissionClient): deny.
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "an access token is required")
            try:
                decision = await client.check(principal.user_id, permission)
            except PeerUnavailable:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "cannot check permissions now")
            except IdentityError:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{permission} is required")
            if not decision.allowed:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{permission} is required")
            return await method(self, request, context)

        return cast(Method, guarded)

    return decorate


def _sync_guard(method: Method, permission: str) -> Method:
    @functools.wraps(method)
    def guarded(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        principal, client = principal_var.get(), permissions_var.get()
        if principal is None or not isinstance(client, PermissionClient):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "an access token is required")
        try:
            decision = client.check(principal.user_id, permission)
        except PeerUnavailable:
            context.abort(grpc.StatusCode.UNAVAILABLE, "cannot check permissions now")
        except IdentityError:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{permission} is required")
        if not decision.allowed:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{permission} is required")
        return method(self, request, context)

    return cast(Method, guarded)
