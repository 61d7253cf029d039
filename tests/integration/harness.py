"""Helpers for tests that need their own configuration: a second in-process server
(trusted proxy hops, grace windows, limits) and the `identity` CLI run in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from unittest import mock

import grpc
from identity.v1 import auth_pb2_grpc
from typer.testing import CliRunner, Result

from identity.cli.main import app
from identity.server import RunningServer, start_server
from tests.support import REDIS_URL, TEST_SECRET_KEY, test_settings


@asynccontextmanager
async def server_with(
    database_url: str, **overrides: Any
) -> AsyncIterator[tuple[auth_pb2_grpc.AuthServiceStub, RunningServer]]:
    running = await start_server(test_settings(database_url, **overrides))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            yield auth_pb2_grpc.AuthServiceStub(channel), running
    finally:
        await running.stop(0.5)


def cli_env(database_url: str) -> dict[str, str]:
    return {
        "IDENTITY_DATABASE_URL": database_url,
        "IDENTITY_REDIS_URL": REDIS_URL,
        "IDENTITY_SECRET_KEY": TEST_SECRET_KEY,
        "IDENTITY_BCRYPT_ROUNDS": "4",
        "IDENTITY_LOG_LEVEL": "warning",
        "IDENTITY_LOG_FORMAT": "console",
    }


async def run_cli(database_url: str, *args: str) -> Result:
    """`identity ARGS` against database_url. In a thread: the CLI runs an event loop of
    its own, which cannot nest inside the test's. The CLI's logging set-up is skipped:
    reconfiguring structlog mid-suite would detach loggers that other tests capture."""
    runner = CliRunner()
    with mock.patch("identity.cli.runtime.configure_logging"):
        return await asyncio.to_thread(runner.invoke, app, list(args), env=cli_env(database_url))
