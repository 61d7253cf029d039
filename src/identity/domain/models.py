"""Domain records returned by repositories and services. Plain data, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from uuid import UUID


@dataclass(frozen=True)
class User:
    id: UUID
    login: str
    login_canonical: str
    email: str | None
    created_at: datetime
    disabled_at: datetime | None = None
    mfa_enabled: bool = False


@dataclass(frozen=True)
class Credentials:
    user: User
    password_hash: bytes
    failed_logins: int


@dataclass(frozen=True)
class AttemptSlot:
    """An account's credentials as a password check found them; `reserved` when the check
    holds one of the account's slots and may compare the hash."""

    credentials: Credentials
    reserved: bool


@dataclass(frozen=True)
class ClientInfo:
    """Where a call came from: the IP (trusted hops only) and the user agent."""

    ip: str | None
    user_agent: str


@dataclass(frozen=True)
class Session:
    id: UUID
    user_id: UUID
    created_at: datetime
    last_used_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    # How the user authenticated (RFC 8176) and when; every access token of the session says so.
    amr: tuple[str, ...] = ("pwd",)
    auth_time: datetime | None = None


class LoginOutcome(Enum):
    """Stored in login_history.outcome; values match identity.v1.LoginOutcome names."""

    SUCCESS = "SUCCESS"
    BAD_CREDENTIALS = "BAD_CREDENTIALS"
    MFA_REQUIRED = "MFA_REQUIRED"
    MFA_SUCCESS = "MFA_SUCCESS"
    MFA_FAILED = "MFA_FAILED"
    LOCKED_OUT = "LOCKED_OUT"
    REFRESH_REUSE = "REFRESH_REUSE"
    THROTTLED = "THROTTLED"
    ACCOUNT_DISABLED = "ACCOUNT_DISABLED"
    MFA_LOCKED = "MFA_LOCKED"
    MFA_ENABLED = "MFA_ENABLED"
    MFA_DISABLED = "MFA_DISABLED"
    MFA_RESET = "MFA_RESET"


@dataclass(frozen=True)
class LoginEvent:
    login_at: datetime
    outcome: LoginOutcome
    ip: str | None
    user_agent: str
    session_id: UUID | None
    id: int = 0


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    access_token_expires_at: datetime
    refresh_token: str
    session_id: UUID
    user_id: UUID
    # The access token's lifetime when issued (the `expires_in` of OAuth responses).
    expires_in_seconds: int
    amr: tuple[str, ...] = ("pwd",)
    auth_time: datetime | None = None


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user acting through one live session."""

    user_id: UUID
    session_id: UUID
    token_id: str


@dataclass(frozen=True)
class AccountFacts:
    """An account at a glance for operators: the lockout counter and the second factor."""

    failed_logins: int
    # "off": no TOTP factor; "pending": set up but never confirmed; "on": confirmed.
    mfa_state: str
    recovery_codes_left: int
    # When the second factor locked after too many wrong codes (None: not locked).
    mfa_locked_at: datetime | None = None
