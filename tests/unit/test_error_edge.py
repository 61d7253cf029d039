"""The error edge: anything unexpected becomes INTERNAL with a generic message,
and neither the client nor the log sees what the exception carried."""

from __future__ import annotations

import grpc
import pytest
import structlog

from identity.api.interceptor import ErrorMappingInterceptor
from identity.domain.errors import InvalidArgument
from tests.support import failure

SECRET = "SELECT password_hash FROM users WHERE token='rt_abc'"


async def _boom(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise RuntimeError(SECRET)


async def _invalid(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    raise InvalidArgument("login", "login is required")


@pytest.fixture
async def edge_channel():
    server = grpc.aio.server(interceptors=[ErrorMappingInterceptor()])
    handlers = {
        "Boom": grpc.unary_unary_rpc_method_handler(_boom),
        "Invalid": grpc.unary_unary_rpc_method_handler(_invalid),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("identity.test.Edge", handlers)])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel
    await server.stop(None)


async def test_unexpected_exception_is_generic_internal(edge_channel):
    call = edge_channel.unary_unary("/identity.test.Edge/Boom")
    with structlog.testing.capture_logs() as logs, pytest.raises(grpc.aio.AioRpcError) as err:
        await call(b"")
    got = failure(err.value)
    assert got.code == grpc.StatusCode.INTERNAL
    assert got.message == "internal error"
    assert got.reason == "INTERNAL"
    assert SECRET not in str(err.value.debug_error_string())
    assert logs and all(SECRET not in repr(entry) for entry in logs)
    assert any(entry.get("error_type") == "RuntimeError" for entry in logs)


async def test_domain_error_maps_to_status_reason_and_field(edge_channel):
    call = edge_channel.unary_unary("/identity.test.Edge/Invalid")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call(b"")
    got = failure(err.value)
    assert (got.code, got.reason, got.fields) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
        ("login",),
    )
