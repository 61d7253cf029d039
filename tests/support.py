"""Helpers for tests: databases, settings, stubs, error details."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import psycopg
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from identity.config import Secret, Settings

ADMIN_URL = os.environ.get("IDENTITY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("IDENTITY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TEST_SECRET_KEY = "test-secret-key-" + "k" * 32
STRONG_PASSWORD = "correct horse battery staple"


def url_for(database: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


@contextmanager
def fresh_database(prefix: str = "identity_test") -> Iterator[str]:
    """Creates an empty database for one test run (or test) and drops it afterwards."""
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url_for(name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "redis_url": REDIS_URL,
        "redis_prefix": f"identity-test-{secrets.token_hex(4)}:",
        "grpc_listen": "127.0.0.1:0",
        "secret_key": Secret(TEST_SECRET_KEY),
        "bcrypt_rounds": 4,
        # The whole suite logs in from 127.0.0.1; throttling has tests of its own.
        "login_attempts_per_ip": 1_000_000,
        "login_attempts_per_account": 1_000,
        "shutdown_grace": __import__("datetime").timedelta(seconds=1),
    }
    values.update(overrides)
    return Settings(**values)


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


def new_login(prefix: str = "user") -> str:
    return f"{prefix}-{secrets.token_hex(5)}"


@dataclass(frozen=True)
class RpcFailure:
    code: grpc.StatusCode
    message: str
    reason: str
    fields: tuple[str, ...]
    retry_seconds: int | None


def failure(error: grpc.aio.AioRpcError | grpc.RpcError) -> RpcFailure:
    """Decodes a failed call's status details: ErrorInfo reason, BadRequest fields, RetryInfo."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    reason, fields, retry = "", (), None
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields = tuple(v.field for v in bad.field_violations)
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info_retry = error_details_pb2.RetryInfo()
                detail.Unpack(info_retry)
                retry = info_retry.retry_delay.seconds
    return RpcFailure(error.code(), error.details() or "", reason, fields, retry)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
