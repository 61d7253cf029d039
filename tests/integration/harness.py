"""A second in-process server for tests that need their own configuration (trusted
proxy hops, grace windows, limits). The in-process CLI is tests.rbac_support.identity_cli."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc

from identity.domain.clock import Clock
from identity.server import RunningServer, start_server
from identity.v1 import auth_pb2_grpc
from tests.support import test_settings


@asynccontextmanager
async def server_with(
    database_url: str, *, clock: Clock | None = None, **overrides: Any
) -> AsyncIterator[tuple[auth_pb2_grpc.AuthServiceStub, RunningServer]]:
    running = await start_server(test_settings(database_url, **overrides), clock=clock)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield auth_pb2_grpc.AuthServiceStub(channel), running
    finally:
        await running.stop(0.5)
