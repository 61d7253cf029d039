"""Server interceptor: a request id bound to every log line of a call, one log
line per call, the single place where exceptions become gRPC statuses, and the
observer told each call's method, status code and duration (metrics)."""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, cast

import grpc
import structlog

from identity.api.errors import domain_status, internal_status, unimplemented_status
from identity.domain.errors import BackendUnavailable, DomainError
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

# The peer checks, answered from memory thousands of times a second, carry the id in
# trailing metadata (sent with the status at no extra cost): a separate write of
# initial metadata took about a sixth of their throughput in `make bench`.
_ID_IN_TRAILERS = frozenset({"CheckPermission", "CheckPermissions"})

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]


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


def _wrap(full_method: str, behavior: Behavior, observer: Observer) -> Behavior:
    service, _, method = full_method.lstrip("/").rpartition("/")
    id_in_trailers = method in _ID_IN_TRAILERS

    async def handle(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        request_id = _request_id(context)
        started = time.perf_counter()
        # Each call runs in a task of its own, with its own copy of the context: what is
        # bound here dies with the call (cheaper than bound_contextvars' save/restore).
        structlog.contextvars.bind_contextvars(request_id=request_id, rpc=method)
        outcome = "OK"
        code = grpc.StatusCode.OK
        try:
            # The answer names the id its log lines carry, so a user's error can be
            # tied to them (the gateway passes it on as the x-request-id header).
            if id_in_trailers:
                context.set_trailing_metadata(((_REQUEST_ID_KEY, request_id),))
            else:
                await context.send_initial_metadata(((_REQUEST_ID_KEY, request_id),))
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
            seconds = time.perf_counter() - started
            observer.rpc_done(service, method, code.name, seconds)
            elapsed_ms = round(seconds * 1000, 2)
            RPC_OUTCOMES[f"{method}:{outcome}"] += 1
            if outcome == "OK":
                log.debug("rpc_done", outcome=outcome, ms=elapsed_ms)
            else:
                log.info("rpc_done", outcome=outcome, ms=elapsed_ms)

    return handle


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, observer: Observer = NOOP) -> None:
        self._observer = observer
        # The wrapped handler of each of our methods, made once rather than per call.
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

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
        if handler is None or handler.unary_unary is None or not method.startswith("/identity."):
            return handler
        wrapped = grpc.unary_unary_rpc_method_handler(
            _wrap(method, cast(Behavior, handler.unary_unary), self._observer),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = wrapped
        return wrapped
