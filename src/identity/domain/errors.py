"""Domain errors. Services raise these; the api edge maps each kind to one gRPC
status code and an ErrorReason (see identity.api.errors). The message is safe to
show a client: it never carries SQL, keys, tokens or passwords."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    """The gRPC-independent class of a failure; the api edge owns the status code."""

    INVALID = "invalid"
    CONFLICT = "conflict"
    PRECONDITION = "precondition"
    NOT_FOUND = "not_found"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    THROTTLED = "throttled"
    UNAVAILABLE = "unavailable"


class DomainError(Exception):
    """A failure with a machine-readable reason (an ErrorReason value name without prefix)."""

    kind: Kind = Kind.INVALID
    reason: str = "INVALID_FIELD"
    message: str = "invalid request"

    def __init__(self, message: str | None = None, *, reason: str | None = None) -> None:
        if message is not None:
            self.message = message
        if reason is not None:
            self.reason = reason
        super().__init__(self.message)


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class InvalidArgument(DomainError):
    """Bad input; names the offending field."""

    kind = Kind.INVALID

    def __init__(self, field: str, message: str, *, reason: str = "INVALID_FIELD") -> None:
        super().__init__(message, reason=reason)
        self.violations = (FieldViolation(field, message),)


class AlreadyExists(DomainError):
    kind = Kind.CONFLICT


class FailedPrecondition(DomainError):
    kind = Kind.PRECONDITION


class NotFound(DomainError):
    kind = Kind.NOT_FOUND


class Unauthenticated(DomainError):
    kind = Kind.UNAUTHENTICATED
    reason = "TOKEN_INVALID"
    message = "authentication required"


class InvalidCredentials(Unauthenticated):
    # One message for unknown login and wrong password alike (no enumeration).
    reason = "INVALID_CREDENTIALS"
    message = "invalid login or password"


class PermissionDenied(DomainError):
    kind = Kind.FORBIDDEN
    reason = "PERMISSION_DENIED"
    message = "permission denied"


class Throttled(DomainError):
    kind = Kind.THROTTLED
    reason = "RATE_LIMITED"
    message = "too many attempts, try again later"

    def __init__(self, retry_after_seconds: int, message: str | None = None, *, reason: str | None = None):
        super().__init__(message, reason=reason)
        self.retry_after_seconds = retry_after_seconds


class BackendUnavailable(DomainError):
    """PostgreSQL or Redis did not answer. Always fails closed."""

    kind = Kind.UNAVAILABLE
    reason = "BACKEND_UNAVAILABLE"
    message = "service temporarily unavailable"
