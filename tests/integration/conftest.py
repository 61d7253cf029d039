"""Fixtures of the second-factor tests: a server of their own with a clock of its own,
which they step by minutes and hours without disturbing the rest of the suite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from identity.domain.clock import SteppedClock
from identity.v1 import auth_pb2_grpc
from tests.integration.harness import server_with


@pytest.fixture(scope="module")
def mfa_clock() -> SteppedClock:
    return SteppedClock()


@pytest.fixture(scope="module")
async def mfa_auth(
    database_url: str, mfa_clock: SteppedClock
) -> AsyncIterator[auth_pb2_grpc.AuthServiceStub]:
    """Default MFA settings (10 wrong codes per account per 15 minutes, lock at 20)."""
    async with server_with(database_url, clock=mfa_clock) as (stub, _):
        yield stub
