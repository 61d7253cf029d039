"""Helpers for RBAC tests: roles granted through the services (as the operator),
service keys, and check requests."""

from __future__ import annotations

import asyncio
import secrets

import structlog
from typer.testing import CliRunner, Result

from identity.cli.main import app
from identity.container import Services
from identity.domain.permissions import SUPERUSER_ROLE_ID, Role
from identity.services.rbac import Actor
from identity.v1 import rbac_pb2
from tests.support import REDIS_URL, TEST_SECRET_KEY, bearer

OPERATOR = Actor.OPERATOR


def new_permission(prefix: str = "test") -> str:
    return f"{prefix}.p{secrets.token_hex(4)}.read"


def new_role_name(prefix: str = "role") -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


async def make_role(services: Services, *permissions: str, name: str | None = None) -> Role:
    return await services.roles.create_role(OPERATOR, name or new_role_name(), "", list(permissions))


async def give(services: Services, user_id: str, *permissions: str) -> Role:
    """A new role carrying `permissions`, assigned to the user."""
    role = await make_role(services, *permissions)
    await services.roles.assign_role(OPERATOR, user_id, str(role.id), None)
    return role


async def make_superuser(services: Services, user_id: str) -> None:
    await services.roles.assign_role(OPERATOR, user_id, str(SUPERUSER_ROLE_ID), None)


async def service_key(services: Services, name: str = "peer") -> tuple[tuple[str, str], ...]:
    issued = await services.service_keys.create(name)
    return bearer(issued.secret)


def by_user(user_id: str, permission: str) -> rbac_pb2.CheckPermissionRequest:
    return rbac_pb2.CheckPermissionRequest(subject=rbac_pb2.Subject(user_id=user_id), permission=permission)


def by_token(token: str, permission: str) -> rbac_pb2.CheckPermissionRequest:
    return rbac_pb2.CheckPermissionRequest(
        subject=rbac_pb2.Subject(access_token=token), permission=permission
    )


GRANTED = rbac_pb2.DECISION_REASON_GRANTED
NOT_GRANTED = rbac_pb2.DECISION_REASON_NOT_GRANTED
NO_SUCH_PERMISSION = rbac_pb2.DECISION_REASON_NO_SUCH_PERMISSION
ASSIGNMENT_EXPIRED = rbac_pb2.DECISION_REASON_ASSIGNMENT_EXPIRED
USER_UNKNOWN = rbac_pb2.DECISION_REASON_USER_UNKNOWN
TOKEN_INVALID = rbac_pb2.DECISION_REASON_TOKEN_INVALID
PERMISSION_INVALID = rbac_pb2.DECISION_REASON_PERMISSION_INVALID


def cli_env(database_url: str) -> dict[str, str]:
    return {
        "IDENTITY_DATABASE_URL": database_url,
        "IDENTITY_REDIS_URL": REDIS_URL,
        "IDENTITY_SECRET_KEY": TEST_SECRET_KEY,
        "IDENTITY_BCRYPT_ROUNDS": "4",
        "IDENTITY_LOG_LEVEL": "warning",
        "IDENTITY_LOG_FORMAT": "console",
    }


async def identity_cli(database_url: str, *args: str, input: str | None = None) -> Result:
    """`identity ARGS` in-process, in a thread (the CLI runs an event loop of its own).

    The CLI configures structlog; the suite's configuration is put back afterwards, the
    very same objects, so that loggers cached under it (and structlog.testing.capture_logs,
    which edits the processor list in place) keep working."""
    saved = structlog.get_config()
    try:
        return await asyncio.to_thread(
            CliRunner().invoke, app, list(args), input=input, env=cli_env(database_url)
        )
    finally:
        structlog.configure(**saved)
