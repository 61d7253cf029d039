"""The wrapping of every method: a request id bound to every log line of a call, one
log line per call, the single place where exceptions become gRPC statuses, and the
observer told each call's method, status code and duration (metrics). The server
applies it to each method once, as the method is first found (api/registration.py);
it also works as a grpc.aio interceptor.

It also guards each method's request deserializer. grpc runs the deserializer before
any interceptor or servicer code, and a parse error there would reach the client as
UNKNOWN quoting the parser; the guard instead hands the call a marker, which the
wrapped method answers INVALID_ARGUMENT (MALFORMED_REQUEST) or, for a message over
the configured limit, RESOURCE_EXHAUSTED (REQUEST_TOO_LARGE), each with ErrorInfo."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import secrets
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, cast

import grpc
import structlog
from google.protobuf.unknown_fields import UnknownFieldSet

from identity.api.drain import Drain
from identity.api.errors import domain_status, internal_status, unimplemented_status
from identity.domain.errors import (
    BackendUnavailable,
    DomainError,
    MalformedRequest,
    RequestTooLarge,
    ShuttingDown,
)
from identity.domain.observer import NOOP, Observer

log = structlog.get_logger("identity.rpc")
_REQUEST_ID_KEY = "x-request-id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Generated request ids: a random per-process prefix and a counter (unique, and far
# cheaper per call than uuid4, which reads the OS random source).
_ID_PREFIX = secrets.token_hex(8)
_id_counter = itertools.count(1)
# Calls answered by this process, by method and outcome (logged at shutdown: the
# benchmark counts outcomes on the server side, not by what its load generator saw).
RPC_OUTCOMES: Counter[str] = Counter()


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
        if key == _REQUEST_ID_KEY and isinstance(value, str) and _REQUEST_ID.match(value):
            return value
    return f"{_ID_PREFIX}{next(_id_counter):016x}"


def _where(exc: BaseException) -> str:
    """File:line of the innermost frame: enough to find the bug, nothing of the data."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno}"


class _Status(NamedTuple):
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


def _with_request_id(status: grpc.Status, request_id: str) -> grpc.Status:
    """The status with the request id added to its trailing metadata (an abort replaces
    whatever trailing metadata was set before)."""
    trailers = (*(status.trailing_metadata or ()), (_REQUEST_ID_KEY, request_id))
    return cast(grpc.Status, _Status(status.code, status.details, trailers))


def _wrap(full_method: str, behavior: Behavior, observer: Observer, drain: Drain) -> Behavior:
    service, _, method = full_method.lstrip("/").rpartition("/")
    ok_key = f"{method}:OK"

    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        request_id = _request_id(context)
        started = time.perf_counter()
        # Each call runs in a task of its own, with its own copy of the context: what is
        # bound here dies with the call (cheaper than bound_contextvars' save/restore).
        structlog.contextvars.bind_contextvars(request_id=request_id, rpc=method)
        # Nothing between arriving and the block below can raise: every arrival leaves.
        if not drain.arrive():
            observer.rpc_done(service, method, grpc.StatusCode.UNAVAILABLE.name, 0.0)
            await context.abort_with_status(domain_status(ShuttingDown()))
        outcome = "OK"
        code = grpc.StatusCode.OK
        try:
            # The answer names the id its log lines carry, so a user's error can be tied
            # to them. In trailing metadata, which travels with the status at no cost: a
            # separate write of initial metadata took a sixth of CheckPermission's
            # throughput and a tenth of ValidateToken's CPU. (Over HTTP, Envoy returns
            # the same id as the x-request-id header itself.)
            context.set_trailing_metadata(((_REQUEST_ID_KEY, request_id),))
            if isinstance(request, _Refused):
                log.info("request_refused", reason=request.error.reason.value)
                raise request.error
            return await behavior(request, context)
        except DomainError as error:
            outcome = error.reason
            if isinstance(error, BackendUnavailable):
                log.warning("backend_unavailable", cause=type(error.__cause__).__name__)
            status = domain_status(error)
            code = status.code
            await context.abort_with_status(_with_request_id(status, request_id))
        except (grpc.aio.AbortError, grpc.RpcError):
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except asyncio.CancelledError:
            # The client went away or its deadline passed: no answer was sent.
            code = grpc.StatusCode.CANCELLED
            raise
        except NotImplementedError:
            # The generated base class of a method this server does not implement.
            outcome = "UNIMPLEMENTED"
            code = grpc.StatusCode.UNIMPLEMENTED
            await context.abort_with_status(_with_request_id(unimplemented_status(), request_id))
        except Exception as exc:  # the generic edge: nothing of it reaches the client
            outcome = "INTERNAL"
            code = grpc.StatusCode.INTERNAL
            log.error("unexpected_error", error_type=type(exc).__name__, where=_where(exc))
            await context.abort_with_status(_with_request_id(internal_status(), request_id))
        finally:
            drain.leave()
            seconds = time.perf_counter() - started
            observer.rpc_done(service, method, code.name, seconds)
            if outcome == "OK":
                RPC_OUTCOMES[ok_key] += 1
                # The common line is formatted only when it is written (debug).
                if log.is_enabled_for(logging.DEBUG):
                    log.debug("rpc_done", outcome=outcome, ms=round(seconds * 1000, 2))
            else:
                RPC_OUTCOMES[f"{method}:{outcome}"] += 1
                log.info("rpc_done", outcome=outcome, ms=round(seconds * 1000, 2))

    return handle


def _refusing(behavior: Behavior) -> Behavior:
    """For methods not ours (health): a refused request still gets its proper status."""

    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, _Refused):
            await context.abort_with_status(domain_status(request.error))
        return await behavior(request, context)

    return handle


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    """The wrapping of every method of ours (`wrap`). The server applies it once per method
    as handlers are found (api/registration.py), which costs a call nothing; as a grpc.aio
    interceptor it does the same through grpc's interceptor chain."""

    def __init__(
        self,
        observer: Observer = NOOP,
        *,
        max_message_bytes: int = 4 * 1024 * 1024,
        drain: Drain | None = None,
    ) -> None:
        self._observer = observer
        self._max_bytes = max_message_bytes
        self.drain = drain or Drain()
        # The wrapped handler of each of our methods, made once rather than per call.
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def wrap(self, method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        """`handler` of the full method name `method`, wrapped (unary methods only)."""
        if handler.unary_unary is None:
            return handler
        behavior = cast(Behavior, handler.unary_unary)
        return grpc.unary_unary_rpc_method_handler(
            _wrap(method, behavior, self._observer, self.drain)
            if method.startswith("/identity.")
            else _refusing(behavior),
            request_deserializer=guard_deserializer(handler.request_deserializer, self._max_bytes),
            response_serializer=handler.response_serializer,
        )

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
        wrapped = self._wrapped[method] = self.wrap(method, handler)
        return wrapped
