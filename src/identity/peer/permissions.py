"""RbacService checks for a peer: its service key on every call, a deadline per attempt,
retries with exponential backoff and jitter on UNAVAILABLE only (a check has no side
effect, so a retry is safe; every other status is an answer), typed answers."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2

from identity.peer.errors import IdentityError, PeerUnavailable
from identity.v1 import rbac_pb2, rbac_pb2_grpc

T = TypeVar("T")
MAX_BATCH = 100


@dataclass(frozen=True)
class Decision:
    permission: str
    allowed: bool
    # GRANTED, NOT_GRANTED, NO_SUCH_PERMISSION, ASSIGNMENT_EXPIRED, USER_UNKNOWN,
    # TOKEN_INVALID, PERMISSION_INVALID
    reason: str
    granted_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    timeout: float = 1.0  # per attempt
    backoff: float = 0.05
    max_backoff: float = 1.0

    def delay(self, attempt: int) -> float:
        # Full jitter: peers that lost identity together do not come back in step.
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))


def _reason(value: int) -> str:
    return rbac_pb2.DecisionReason.Name(rbac_pb2.DecisionReason.ValueType(value)).removeprefix(
        "DECISION_REASON_"
    )


def _decision(permission: str, allowed: bool, reason: int, granted_by: Sequence[str]) -> Decision:
    return Decision(permission, allowed, _reason(reason), tuple(granted_by))


def _error(error: grpc.RpcError) -> Exception:
    call: Any = error
    code = call.code() if hasattr(call, "code") else grpc.StatusCode.UNKNOWN
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return PeerUnavailable(f"identity did not answer ({code.name})")
    reason = ""
    for key, value in call.trailing_metadata() or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    reason = info.reason
    return IdentityError(code.name, reason, call.details() or "")


def _subject(user_id: str) -> rbac_pb2.Subject:
    return rbac_pb2.Subject(user_id=user_id)


def _batch(user_id: str, permissions: Sequence[str]) -> rbac_pb2.CheckPermissionsRequest:
    if len(permissions) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} permissions per call")
    return rbac_pb2.CheckPermissionsRequest(
        checks=[rbac_pb2.PermissionCheck(subject=_subject(user_id), permission=p) for p in permissions]
    )


class PermissionClient:
    """Blocking client (a sync grpc.Channel)."""

    def __init__(self, channel: grpc.Channel, *, service_key: str, retry: RetryPolicy | None = None) -> None:
        self._stub = rbac_pb2_grpc.RbacServiceStub(channel)
        self._metadata = (("authorization", f"Bearer {service_key}"),)
        self._retry = retry or RetryPolicy()

    def _call(self, method: Callable[..., T], request: Any) -> T:
        for attempt in range(self._retry.attempts):
            try:
                return method(request, timeout=self._retry.timeout, metadata=self._metadata)
            except grpc.RpcError as error:
                failure = _error(error)
                unavailable = isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.UNAVAILABLE
                if not unavailable or attempt + 1 == self._retry.attempts:
                    raise failure from None
                time.sleep(self._retry.delay(attempt))
        raise AssertionError("unreachable")

    def check(self, user_id: str, permission: str) -> Decision:
        answer = self._call(
            self._stub.CheckPermission,
            rbac_pb2.CheckPermissionRequest(subject=_subject(user_id), permission=permission),
        )
        return _decision(permission, answer.allowed, answer.reason, answer.granted_by)

    def check_many(self, user_id: str, permissions: Sequence[str]) -> list[Decision]:
        answer = self._call(self._stub.CheckPermissions, _batch(user_id, permissions))
        return [_decision(d.permission, d.allowed, d.reason, d.granted_by) for d in answer.decisions]

    def list_permissions(self, user_id: str) -> dict[str, tuple[str, ...]]:
        """Each permission the user holds, with the roles granting it."""
        answer = self._call(
            self._stub.ListUserPermissions, rbac_pb2.ListUserPermissionsRequest(subject=_subject(user_id))
        )
        return {p.permission: tuple(p.granted_by) for p in answer.permissions}


class AsyncPermissionClient:
    """The same over a grpc.aio channel."""

    def __init__(
        self, channel: grpc.aio.Channel, *, service_key: str, retry: RetryPolicy | None = None
    ) -> None:
        self._stub = rbac_pb2_grpc.RbacServiceStub(channel)
        self._metadata = (("authorization", f"Bearer {service_key}"),)
        self._retry = retry or RetryPolicy()

    async def _call(self, method: Callable[..., Awaitable[T]], request: Any) -> T:
        for attempt in range(self._retry.attempts):
            try:
                return await method(request, timeout=self._retry.timeout, metadata=self._metadata)
            except grpc.RpcError as error:
                failure = _error(error)
                unavailable = (
                    isinstance(error, grpc.aio.AioRpcError) and error.code() == grpc.StatusCode.UNAVAILABLE
                )
                if not unavailable or attempt + 1 == self._retry.attempts:
                    raise failure from None
                await asyncio.sleep(self._retry.delay(attempt))
        raise AssertionError("unreachable")

    async def check(self, user_id: str, permission: str) -> Decision:
        answer = await self._call(
            self._stub.CheckPermission,
            rbac_pb2.CheckPermissionRequest(subject=_subject(user_id), permission=permission),
        )
        return _decision(permission, answer.allowed, answer.reason, answer.granted_by)

    async def check_many(self, user_id: str, permissions: Sequence[str]) -> list[Decision]:
        answer = await self._call(self._stub.CheckPermissions, _batch(user_id, permissions))
        return [_decision(d.permission, d.allowed, d.reason, d.granted_by) for d in answer.decisions]

    async def list_permissions(self, user_id: str) -> dict[str, tuple[str, ...]]:
        answer = await self._call(
            self._stub.ListUserPermissions, rbac_pb2.ListUserPermissionsRequest(subject=_subject(user_id))
        )
        return {p.permission: tuple(p.granted_by) for p in answer.permissions}
