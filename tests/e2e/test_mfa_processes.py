"""The second factor across two real `identity serve` processes sharing one database:
of 20 parallel VerifyMfa calls with one code, spread over both, exactly one wins; and
wrong codes are bounded per account across every ticket and both processes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import grpc
import pytest

from identity.v1 import auth_pb2, auth_pb2_grpc
from tests.e2e.conftest import start_server_process
from tests.mfa_support import STEP, code_at, outcomes, verify, wrong_code
from tests.support import STRONG_PASSWORD, bearer, new_login

PER_WINDOW = 15


@pytest.fixture
def two_servers(database_url, tmp_path):
    servers = [
        start_server_process(database_url, tmp_path, IDENTITY_MFA_FAILURES_PER_WINDOW=str(PER_WINDOW))
        for _ in range(2)
    ]
    yield servers
    for server in servers:
        server.stop()


async def _enrolled(stub: auth_pb2_grpc.AuthServiceStub) -> tuple[str, str]:
    """(login, secret). Confirmed with the previous step's code, so that the current
    step is still unused (the processes run on the real clock)."""
    login = new_login("mfa")
    await stub.Register(auth_pb2.RegisterRequest(login=login, password=STRONG_PASSWORD))
    tokens = await stub.Login(auth_pb2.LoginRequest(login=login, password=STRONG_PASSWORD))
    setup = await stub.SetupTotp(
        auth_pb2.SetupTotpRequest(password=STRONG_PASSWORD), metadata=bearer(tokens.access_token)
    )
    await stub.ConfirmTotp(
        auth_pb2.ConfirmTotpRequest(code=code_at(setup.secret, datetime.now(UTC) - STEP)),
        metadata=bearer(tokens.access_token),
    )
    return login, setup.secret


async def _tickets(stubs, login: str, count: int) -> list[str]:
    answers = await asyncio.gather(
        *(
            stubs[i % 2].Login(auth_pb2.LoginRequest(login=login, password=STRONG_PASSWORD))
            for i in range(count)
        )
    )
    assert all(a.mfa_required for a in answers)
    return [a.mfa_ticket for a in answers]


async def test_one_code_twenty_parallel_calls_on_two_processes_exactly_one_wins(two_servers):
    async with (
        grpc.aio.insecure_channel(two_servers[0].address) as first,
        grpc.aio.insecure_channel(two_servers[1].address) as second,
    ):
        stubs = [auth_pb2_grpc.AuthServiceStub(first), auth_pb2_grpc.AuthServiceStub(second)]
        login, secret = await _enrolled(stubs[0])
        tickets = await _tickets(stubs, login, 20)
        code = code_at(secret, datetime.now(UTC))
        # Each ticket is verified on the process that did not issue it.
        counted = await outcomes(stubs[(i + 1) % 2].VerifyMfa(verify(t, code)) for i, t in enumerate(tickets))
    assert counted["OK"] == 1, counted
    assert counted["MFA_CODE_REUSED"] + counted["MFA_TOO_MANY_ATTEMPTS"] == 19, counted
    assert counted["MFA_CODE_REUSED"] >= PER_WINDOW - 1


async def test_fifty_parallel_tickets_on_two_processes_share_one_per_account_bound(two_servers):
    async with (
        grpc.aio.insecure_channel(two_servers[0].address) as first,
        grpc.aio.insecure_channel(two_servers[1].address) as second,
    ):
        stubs = [auth_pb2_grpc.AuthServiceStub(first), auth_pb2_grpc.AuthServiceStub(second)]
        login, secret = await _enrolled(stubs[1])
        tickets = await _tickets(stubs, login, 50)
        wrong = wrong_code(secret, datetime.now(UTC))
        counted = await outcomes(stubs[i % 2].VerifyMfa(verify(t, wrong)) for i, t in enumerate(tickets))
    assert counted == {"MFA_CODE_INVALID": PER_WINDOW, "MFA_TOO_MANY_ATTEMPTS": 50 - PER_WINDOW}
