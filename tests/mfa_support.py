"""Helpers for second-factor tests: codes made by pyotp at a given time, enrolment
through the real RPCs, tickets, and outcomes of parallel calls."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import grpc
import pyotp

from identity.domain.clock import Clock
from identity.v1 import auth_pb2, auth_pb2_grpc
from tests.conftest import Account, register_and_login
from tests.support import failure

STEP = timedelta(seconds=30)


def code_at(secret: str, at: datetime) -> str:
    return str(pyotp.TOTP(secret).at(at))


def wrong_code(secret: str, at: datetime) -> str:
    """Six digits that are the code of no step near `at`."""
    near = {code_at(secret, at + k * STEP) for k in range(-3, 4)}
    return next(
        c
        for c in ("000000", "111111", "222222", "333333", "444444", "555555", "666666", "777777")
        if c not in near
    )


@dataclass
class Enrolled:
    account: Account
    secret: str
    recovery_codes: list[str]


async def enrol(
    auth: auth_pb2_grpc.AuthServiceStub, clock: Clock, account: Account | None = None
) -> Enrolled:
    """A logged-in account with TOTP confirmed; the clock is moved one step on, since
    the confirming step is used up."""
    account = account or await register_and_login(auth)
    setup = await auth.SetupTotp(
        auth_pb2.SetupTotpRequest(password=account.password), metadata=account.metadata
    )
    confirmed = await auth.ConfirmTotp(
        auth_pb2.ConfirmTotpRequest(code=code_at(setup.secret, clock.now())), metadata=account.metadata
    )
    advance(clock, STEP)
    return Enrolled(account, setup.secret, list(confirmed.recovery_codes))


def advance(clock: Clock, by: timedelta) -> None:
    clock.advance(by)  # type: ignore[attr-defined]  # a SteppedClock


async def ticket(auth: auth_pb2_grpc.AuthServiceStub, account: Account) -> str:
    answer = await auth.Login(auth_pb2.LoginRequest(login=account.login, password=account.password))
    assert answer.mfa_required and not answer.access_token
    return str(answer.mfa_ticket)


async def outcome(call: Awaitable[Any]) -> str:
    """OK, or the failure's reason."""
    try:
        await call
    except grpc.aio.AioRpcError as error:
        return failure(error).reason
    return "OK"


async def outcomes(calls: Iterable[Awaitable[Any]]) -> Counter[str]:
    return Counter(await asyncio.gather(*(outcome(c) for c in calls)))


def verify(ticket_value: str, code: str = "", recovery_code: str = "") -> auth_pb2.VerifyMfaRequest:
    return auth_pb2.VerifyMfaRequest(mfa_ticket=ticket_value, code=code, recovery_code=recovery_code)
