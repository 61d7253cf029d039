"""Suite-wide fixtures. One database per test run, migrated with Alembic; one
in-process server on an ephemeral port; real PostgreSQL and Redis throughout."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
import redis

from identity.config import Settings
from identity.container import Services, build_services
from identity.domain.clock import SteppedClock
from identity.logging import configure_logging
from identity.server import RunningServer, start_server
from identity.store.migrate import upgrade
from identity.v1 import auth_pb2, auth_pb2_grpc, rbac_pb2_grpc
from tests.private_redis import private_redis
from tests.support import REDIS_URL, STRONG_PASSWORD, bearer, fresh_database, new_login, test_settings


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with fresh_database() as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    configure_logging("warning", "console")
    return test_settings(database_url)


@pytest.fixture(scope="session")
def private_redis_url() -> Iterator[str]:
    """A Redis of the suite's own: the one a test may flush."""
    with private_redis() as url:
        yield url


@pytest.fixture(scope="session", autouse=True)
def shared_redis_is_left_alone() -> Iterator[None]:
    """The suite runs against a Redis that may hold other data (a developer's `make run`
    stack): a key outside the suite's prefix is still there, unchanged, at the end."""
    client = redis.Redis.from_url(REDIS_URL)
    key, value = f"identity-suite-sentinel:{secrets.token_hex(6)}", secrets.token_hex(8)
    client.set(key, value, ex=3600)
    try:
        yield
        assert client.get(key) == value.encode(), "the suite lost data of the Redis it was given"
    finally:
        client.delete(key)
        client.close()


@pytest.fixture(scope="session")
def clock() -> SteppedClock:
    """The time of the suite's server and services: tests that wait for time step it
    forward instead of sleeping (only forward, and only by a little: it is shared)."""
    return SteppedClock()


@pytest.fixture(scope="session")
async def services(settings: Settings, clock: SteppedClock) -> AsyncIterator[Services]:
    built = await build_services(settings, clock)
    await built.keys.ensure_ring()
    yield built


@pytest.fixture(scope="session")
async def server(settings: Settings, services: Services, clock: SteppedClock) -> AsyncIterator[RunningServer]:
    # The server gets services of its own: closing them at the end must not
    # pull the pools from under the `services` fixture.
    running = await start_server(settings, clock=clock)
    yield running
    await running.stop(1.0)


@pytest.fixture(scope="session")
async def channel(server: RunningServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as chan:
        yield chan


@pytest.fixture(scope="session")
def auth(channel: grpc.aio.Channel) -> auth_pb2_grpc.AuthServiceStub:
    return auth_pb2_grpc.AuthServiceStub(channel)


@pytest.fixture(scope="session")
def rbac(channel: grpc.aio.Channel) -> rbac_pb2_grpc.RbacServiceStub:
    return rbac_pb2_grpc.RbacServiceStub(channel)


class Account:
    """A registered, logged-in user for a test."""

    def __init__(self, login: str, password: str, user_id: str, tokens: Any) -> None:
        self.login = login
        self.password = password
        self.user_id = user_id
        self.access_token: str = tokens.access_token
        self.refresh_token: str = tokens.refresh_token
        self.session_id: str = tokens.session_id

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return bearer(self.access_token)


async def register_and_login(
    auth: auth_pb2_grpc.AuthServiceStub, login: str | None = None, password: str = STRONG_PASSWORD
) -> Account:
    login = login or new_login()
    registered = await auth.Register(auth_pb2.RegisterRequest(login=login, password=password))
    tokens = await auth.Login(auth_pb2.LoginRequest(login=login, password=password))
    return Account(login, password, registered.user.id, tokens)


@pytest.fixture
async def account(auth: auth_pb2_grpc.AuthServiceStub) -> Account:
    return await register_and_login(auth)


# Tests that run a tool over the repository or a real Envoy: the full suite runs them,
# the fast tier (`make test-fast`) does not.
_TOOL_TESTS = ("tests/tools/", "tests/unit/test_gateway.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(part in item.nodeid for part in _TOOL_TESTS):
            item.add_marker(pytest.mark.tools)
