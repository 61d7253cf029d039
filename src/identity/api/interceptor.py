"""Server interceptor: a request id bound to every log line of a call, one log
line per call, and the single place where exceptions become gRPC statuses.

It also guards each method's request deserializer. grpc runs the deserializer before
any interceptor or servicer code, and a parse error there would reach the client as
UNKNOWN quoting the parser; the guard instead hands the call a marker, which the
wrapped method answers INVALID_ARGUMENT (MALFORMED_REQUEST) or, for a message over
the configured limit, RESOURCE_EXHAUSTED (REQUEST_TOO_LARGE), each with ErrorInfo."""

from __future__ import annotations

import itertools
import re
import secrets
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, cast

import grpc
import structlog
from google.protobuf.unknown_fields import UnknownFieldSet

from identity.api.drain import Drain
from identity.api.errors import domain_status, internal_status
from identity.domain.errors import (
    BackendUnavailable,
    DomainError,
    MalformedRequest,
    RequestTooLarge,
    ShuttingDown,
)

log = structlog.get_logger("identity.rpc")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Generated request ids: a random per-process prefix and a counter (unique, and far
# cheaper per call than uuid4, which reads the OS random source).
_ID_PREFIX = secrets.token_hex(8)
_id_counter = itertools.count(1)

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
Deserializer = Callable[[bytes], Any]


class _Refused:
    """What the guarded deserializer hands the call instead of a request it refused."""

    __slots__ = ("error",)

    def __init__(self, error: DomainError) -> None:
        self.error = error


def _has_field_zero(message: Any) -> bool:
    """upb refuses field number 0 in a message with fields but keeps it as an unknown field
    in one without any (LogoutRequest): refuse it there too."""
    descriptor = getattr(message, "DESCRIPTOR", None)
    if descriptor is None or descriptor.fields:
        return False
    unknown = UnknownFieldSet(message)
    return any(unknown[i].field_number == 0 for i in range(len(unknown)))


def guard_deserializer(deserializer: Deserializer | None, max_bytes: int) -> Deserializer:
    def deserialize(raw: bytes) -> Any:
        if len(raw) > max_bytes:
            return _Refused(RequestTooLarge(f"request is larger than {max_bytes} bytes"))
        if deserializer is None:
            return raw
        try:
            message = deserializer(raw)
            if raw and _has_field_zero(message):
                return _Refused(MalformedRequest())
            return message
        except Exception:  # DecodeError, and whatever else a parser may raise on hostile bytes
            return _Refused(MalformedRequest())

    return deserialize


def _request_id(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id" and isinstance(value, str) and _REQUEST_ID.match(value):
            return value
    return f"{_ID_PREFIX}{next(_id_counter):016x}"


def _where(exc: BaseException) -> str:
    """File:line of the innermost frame: enough to find the bug, nothing of the data."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno}"


def _wrap(method: str, behavior: Behavior, drain: Drain) -> Behavior:
    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if not drain.arrive():
            await context.abort_with_status(domain_status(ShuttingDown()))
        try:
            return await _handle(method, behavior, request, context)
        finally:
            drain.leave()

    return handle


async def _handle(
    method: str, behavior: Behavior, request: Any, context: grpc.aio.ServicerContext[Any, Any]
) -> Any:
    request_id = _request_id(context)
    started = time.perf_counter()
    # Each call runs in a task of its own, with its own copy of the context: what is
    # bound here dies with the call (cheaper than bound_contextvars' save/restore).
    structlog.contextvars.bind_contextvars(request_id=request_id, rpc=method)
    outcome = "OK"
    try:
        if isinstance(request, _Refused):
            log.info("request_refused", reason=request.error.reason.value)
            raise request.error
        return await behavior(request, context)
    except DomainError as error:
        outcome = error.reason
        if isinstance(error, BackendUnavailable):
            log.warning("backend_unavailable", cause=type(error.__cause__).__name__)
        await context.abort_with_status(domain_status(error))
    except (grpc.aio.AbortError, grpc.RpcError):
        raise
    except NotImplementedError:
        # An RPC of the contract that is not built: say so, retrying will not help.
        outcome = "UNIMPLEMENTED"
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this method is not implemented")
    except Exception as exc:  # the generic edge: nothing of it reaches the client
        outcome = "INTERNAL"
        log.error("unexpected_error", error_type=type(exc).__name__, where=_where(exc))
        await context.abort_with_status(internal_status())
    finally:
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        if outcome == "OK":
            log.debug("rpc_done", outcome=outcome, ms=elapsed_ms)
        else:
            log.info("rpc_done", outcome=outcome, ms=elapsed_ms)


def _refusing(behavior: Behavior) -> Behavior:
    """For methods not ours (health): a refused request still gets its proper status."""

    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, _Refused):
            await context.abort_with_status(domain_status(request.error))
        return await behavior(request, context)

    return handle


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, max_message_bytes: int = 4 * 1024 * 1024, drain: Drain | None = None) -> None:
        # The wrapped handler of each of our methods, made once rather than per call.
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        self._max_bytes = max_message_bytes
        self.drain = drain or Drain()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method: str = getattr(handler_call_details, "method", "")
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        behavior = cast(Behavior, handler.unary_unary)
        wrapped = grpc.unary_unary_rpc_method_handler(
            _wrap(method.rsplit("/", 1)[-1], behavior, self.drain)
            if method.startswith("/identity.")
            else _refusing(behavior),
            request_deserializer=guard_deserializer(handler.request_deserializer, self._max_bytes),
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = wrapped
        return wrapped
