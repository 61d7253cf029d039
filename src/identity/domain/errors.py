"""The error catalogue: every failure a service may raise, in one place.

Each error has a kind (the gRPC-independent class of failure; the api edge maps a
kind to one status code) and a `Reason`, whose members are exactly the values of
`ErrorReason` in protos/identity/v1/errors.proto without the ERROR_REASON_ prefix
(a test holds the two together). The message is safe to show a client: it never
carries SQL, keys, tokens or passwords."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum


class Reason(StrEnum):
    """The machine-readable cause of a failure (identity.v1.ErrorReason)."""

    # Input validation: INVALID_ARGUMENT, with the offending field.
    INVALID_FIELD = "INVALID_FIELD"
    LOGIN_INVALID = "LOGIN_INVALID"
    EMAIL_INVALID = "EMAIL_INVALID"
    PASSWORD_TOO_SHORT = "PASSWORD_TOO_SHORT"
    PASSWORD_TOO_LONG = "PASSWORD_TOO_LONG"
    PASSWORD_TOO_COMMON = "PASSWORD_TOO_COMMON"
    PASSWORD_CONTAINS_LOGIN = "PASSWORD_CONTAINS_LOGIN"
    PAGE_TOKEN_INVALID = "PAGE_TOKEN_INVALID"
    PERMISSION_NAME_INVALID = "PERMISSION_NAME_INVALID"
    ROLE_NAME_INVALID = "ROLE_NAME_INVALID"
    TOO_MANY_ITEMS = "TOO_MANY_ITEMS"
    PASSWORD_INCORRECT = "PASSWORD_INCORRECT"
    # Conflicts and preconditions.
    LOGIN_TAKEN = "LOGIN_TAKEN"
    ROLE_EXISTS = "ROLE_EXISTS"
    ROLE_IN_USE = "ROLE_IN_USE"
    ROLE_BUILTIN = "ROLE_BUILTIN"
    MFA_ALREADY_ENABLED = "MFA_ALREADY_ENABLED"
    MFA_NOT_ENABLED = "MFA_NOT_ENABLED"
    MFA_NOT_PENDING = "MFA_NOT_PENDING"
    # Not found.
    USER_NOT_FOUND = "USER_NOT_FOUND"
    ROLE_NOT_FOUND = "ROLE_NOT_FOUND"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    KEY_NOT_FOUND = "KEY_NOT_FOUND"
    # Authentication.
    INVALID_CREDENTIALS = "INVALID_CREDENTIALS"
    TOKEN_MISSING = "TOKEN_MISSING"
    TOKEN_INVALID = "TOKEN_INVALID"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    SESSION_REVOKED = "SESSION_REVOKED"
    SESSION_EXPIRED = "SESSION_EXPIRED"
    REFRESH_TOKEN_INVALID = "REFRESH_TOKEN_INVALID"
    REFRESH_TOKEN_REUSED = "REFRESH_TOKEN_REUSED"
    MFA_TICKET_INVALID = "MFA_TICKET_INVALID"
    MFA_CODE_INVALID = "MFA_CODE_INVALID"
    ACCOUNT_DISABLED = "ACCOUNT_DISABLED"
    MFA_TICKET_EXPIRED = "MFA_TICKET_EXPIRED"
    MFA_CODE_REUSED = "MFA_CODE_REUSED"
    # Authorization.
    PERMISSION_DENIED = "PERMISSION_DENIED"
    ESCALATION_DENIED = "ESCALATION_DENIED"
    # Throttling, with a retry delay.
    RATE_LIMITED = "RATE_LIMITED"
    ACCOUNT_LOCKED = "ACCOUNT_LOCKED"
    MFA_TOO_MANY_ATTEMPTS = "MFA_TOO_MANY_ATTEMPTS"
    MFA_LOCKED = "MFA_LOCKED"
    # Dependencies and the unexpected.
    BACKEND_UNAVAILABLE = "BACKEND_UNAVAILABLE"
    INTERNAL = "INTERNAL"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    # The request as a whole (answered at the api edge before any service runs, or by the
    # gateway), and the gateway's own answers (Envoy's local replies: never raised here).
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
    ROUTE_NOT_FOUND = "ROUTE_NOT_FOUND"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    ORIGIN_NOT_ALLOWED = "ORIGIN_NOT_ALLOWED"
    GATEWAY_ERROR = "GATEWAY_ERROR"
    SHUTTING_DOWN = "SHUTTING_DOWN"


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
    """A failure with a machine-readable reason and a message safe to show."""

    kind: Kind = Kind.INVALID
    reason: Reason = Reason.INVALID_FIELD
    message: str = "invalid request"

    def __init__(self, message: str | None = None, *, reason: Reason | None = None) -> None:
        if message is not None:
            self.message = message
        if reason is not None:
            self.reason = reason
        super().__init__(self.message)


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


# -- input -------------------------------------------------------------------------------


class InvalidArgument(DomainError):
    """Bad input; names the offending field."""

    kind = Kind.INVALID

    def __init__(self, field: str, message: str, *, reason: Reason = Reason.INVALID_FIELD) -> None:
        super().__init__(message, reason=reason)
        self.violations = (FieldViolation(field, message),)


class MalformedRequest(DomainError):
    """The request's bytes are not a message of the method's type. The message is generic:
    nothing of the parser's complaint (which can quote the input) reaches the client."""

    kind = Kind.INVALID
    reason = Reason.MALFORMED_REQUEST
    message = "malformed request"


class RequestTooLarge(DomainError):
    """The request is over the configured size limit (IDENTITY_MAX_MESSAGE_BYTES)."""

    kind = Kind.THROTTLED
    reason = Reason.REQUEST_TOO_LARGE
    message = "request is too large"


class PageTokenInvalid(InvalidArgument):
    def __init__(self, message: str = "page_token is invalid") -> None:
        super().__init__("page_token", message, reason=Reason.PAGE_TOKEN_INVALID)


class PasswordIncorrect(InvalidArgument):
    """A signed-in caller's re-authentication failed. Not UNAUTHENTICATED: the caller's
    session is fine, and a client must not take a typo for a logged-out session."""

    def __init__(self, field: str) -> None:
        super().__init__(field, f"{field} is not the account's password", reason=Reason.PASSWORD_INCORRECT)


# -- conflicts and preconditions ------------------------------------------------------------


class AlreadyExists(DomainError):
    kind = Kind.CONFLICT


class LoginTaken(AlreadyExists):
    reason = Reason.LOGIN_TAKEN
    message = "this login is taken"


class RoleExists(AlreadyExists):
    reason = Reason.ROLE_EXISTS
    message = "a role with this name exists"


class FailedPrecondition(DomainError):
    kind = Kind.PRECONDITION


class RoleInUse(FailedPrecondition):
    reason = Reason.ROLE_IN_USE
    message = "the role is still assigned; revoke it first or delete with force"


class RoleBuiltin(FailedPrecondition):
    reason = Reason.ROLE_BUILTIN
    message = "a built-in role cannot be changed this way"


class MfaAlreadyEnabled(FailedPrecondition):
    reason = Reason.MFA_ALREADY_ENABLED
    message = "TOTP is already enabled; disable it first"


class MfaNotEnabled(FailedPrecondition):
    reason = Reason.MFA_NOT_ENABLED
    message = "TOTP is not enabled"


class MfaNotPending(FailedPrecondition):
    reason = Reason.MFA_NOT_PENDING
    message = "no TOTP setup is pending (none, expired, or too many wrong codes); call SetupTotp"


# -- not found ------------------------------------------------------------------------------


class NotFound(DomainError):
    kind = Kind.NOT_FOUND


class UserNotFound(NotFound):
    reason = Reason.USER_NOT_FOUND
    message = "user not found"


class RoleNotFound(NotFound):
    reason = Reason.ROLE_NOT_FOUND
    message = "no such role"


class SessionNotFound(NotFound):
    # Also the answer for another user's session id: ids reveal nothing.
    reason = Reason.SESSION_NOT_FOUND
    message = "session not found"


class KeyNotFound(NotFound):
    reason = Reason.KEY_NOT_FOUND
    message = "no live service key with this name (and id)"


# -- authentication -----------------------------------------------------------------------


class Unauthenticated(DomainError):
    kind = Kind.UNAUTHENTICATED
    reason = Reason.TOKEN_INVALID
    message = "authentication required"


class InvalidCredentials(Unauthenticated):
    # One message for unknown login and wrong password alike (no enumeration).
    reason = Reason.INVALID_CREDENTIALS
    message = "invalid login or password"


class TokenMissing(Unauthenticated):
    reason = Reason.TOKEN_MISSING
    message = "an access token is required"


class TokenRejected(Unauthenticated):
    reason = Reason.TOKEN_INVALID
    message = "access token is invalid"


class TokenExpired(TokenRejected):
    reason = Reason.TOKEN_EXPIRED
    message = "access token has expired"


class ServiceKeyInvalid(Unauthenticated):
    reason = Reason.TOKEN_INVALID
    message = "service key is invalid or revoked"


class SessionRevoked(Unauthenticated):
    reason = Reason.SESSION_REVOKED
    message = "session has ended"


class SessionExpired(Unauthenticated):
    reason = Reason.SESSION_EXPIRED
    message = "session has expired, log in again"


class RefreshTokenInvalid(Unauthenticated):
    reason = Reason.REFRESH_TOKEN_INVALID
    message = "refresh token is invalid"


class RefreshTokenReused(Unauthenticated):
    reason = Reason.REFRESH_TOKEN_REUSED
    message = "refresh token was already used; the session has been ended"


class AccountDisabled(Unauthenticated):
    reason = Reason.ACCOUNT_DISABLED
    message = "account is disabled"


class MfaTicketInvalid(Unauthenticated):
    # Unknown, already used and exhausted tickets alike: the client logs in again.
    reason = Reason.MFA_TICKET_INVALID
    message = "MFA ticket is invalid, log in again"


class MfaTicketExpired(Unauthenticated):
    reason = Reason.MFA_TICKET_EXPIRED
    message = "MFA ticket has expired, log in again"


class MfaTicketExhausted(Unauthenticated):
    reason = Reason.MFA_TOO_MANY_ATTEMPTS
    message = "too many wrong codes on this MFA ticket, log in again"


class MfaCodeInvalid(Unauthenticated):
    """A wrong second-factor code on VerifyMfa (the ticket stays usable within its limits)."""

    reason = Reason.MFA_CODE_INVALID
    message = "the code is not valid"


class MfaCodeReused(Unauthenticated):
    reason = Reason.MFA_CODE_REUSED
    message = "this code was already used; wait for the next one"


class MfaCodeIncorrect(InvalidArgument):
    """A signed-in caller's second factor (ConfirmTotp, DisableTotp, RegenerateRecoveryCodes)
    was wrong or already used. Not UNAUTHENTICATED: the caller's session is fine."""

    def __init__(self, field: str = "code", *, reused: bool = False) -> None:
        if reused:
            super().__init__(
                field, f"{field} was already used; wait for the next one", reason=Reason.MFA_CODE_REUSED
            )
        else:
            super().__init__(field, f"{field} is not a valid code", reason=Reason.MFA_CODE_INVALID)


# -- authorization ---------------------------------------------------------------------------


class PermissionDenied(DomainError):
    kind = Kind.FORBIDDEN
    reason = Reason.PERMISSION_DENIED
    message = "permission denied"


class EscalationDenied(PermissionDenied):
    reason = Reason.ESCALATION_DENIED
    message = "you cannot manage a role carrying permissions you do not hold"


# -- throttling ------------------------------------------------------------------------------


class Throttled(DomainError):
    kind = Kind.THROTTLED
    reason = Reason.RATE_LIMITED
    message = "too many attempts, try again later"

    def __init__(self, retry_after_seconds: int, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class AccountLocked(Throttled):
    reason = Reason.ACCOUNT_LOCKED
    message = "account is locked after too many failed logins; contact support"


class MfaTooManyAttempts(Throttled):
    reason = Reason.MFA_TOO_MANY_ATTEMPTS
    message = "too many wrong codes, try again later"


class MfaLocked(Throttled):
    reason = Reason.MFA_LOCKED
    message = "the second factor is locked after too many wrong codes; log in again later or contact support"


# -- dependencies ----------------------------------------------------------------------------


class BackendUnavailable(DomainError):
    """PostgreSQL or Redis did not answer. Always fails closed."""

    kind = Kind.UNAVAILABLE
    reason = Reason.BACKEND_UNAVAILABLE
    message = "service temporarily unavailable"


class ShuttingDown(DomainError):
    """The process is draining after SIGTERM: calls it already took finish, new ones are
    refused this way (retryable) rather than cancelled."""

    kind = Kind.UNAVAILABLE
    reason = Reason.SHUTTING_DOWN
    message = "server is shutting down, retry"
