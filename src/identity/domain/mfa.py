"""The second factor: its settings, its records, and the rules for what a code looks
like. Plain data and pure functions, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from uuid import UUID

from identity.domain.errors import InvalidArgument

# RFC 6238 defaults, which every authenticator app uses.
STEP_SECONDS = 30
CODE_DIGITS = 6
RECOVERY_CODE_COUNT = 10
# 16 base32 characters: 80 random bits per recovery code.
RECOVERY_CODE_CHARS = 16
RECOVERY_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"

# How a session authenticated (RFC 8176 "amr" values).
AMR_PASSWORD: tuple[str, ...] = ("pwd",)
AMR_TOTP: tuple[str, ...] = ("pwd", "otp", "mfa")
AMR_RECOVERY_CODE: tuple[str, ...] = ("pwd", "mfa")

_TOTP_CODE = re.compile(rf"^[0-9]{{{CODE_DIGITS}}}$")
_RECOVERY_CODE = re.compile(rf"^[{RECOVERY_ALPHABET}]{{{RECOVERY_CODE_CHARS}}}$")
_MAX_CODE_INPUT = 64


@dataclass(frozen=True)
class MfaPolicy:
    """The knobs of the second factor (IDENTITY_MFA_* and IDENTITY_TOTP_* settings)."""

    issuer: str = "identity"
    # Steps before the current one that are still accepted (0 or 1).
    skew_steps: int = 1
    setup_ttl: timedelta = timedelta(minutes=10)
    ticket_ttl: timedelta = timedelta(minutes=5)
    ticket_max_failures: int = 5
    # Wrong codes per account per window, whatever the number of tickets or calls.
    failures_per_window: int = 10
    failure_window: timedelta = timedelta(minutes=15)
    # Consecutive wrong codes that lock the second factor durably.
    lock_threshold: int = 20
    # A locked second factor opens again only with a password login this long after the lock.
    lock_wait: timedelta = timedelta(hours=1)


def time_step(at: datetime) -> int:
    return int(at.timestamp()) // STEP_SECONDS


@dataclass(frozen=True)
class TotpFactor:
    user_id: UUID
    secret_encrypted: bytes
    created_at: datetime
    confirmed_at: datetime | None
    setup_expires_at: datetime | None
    # Highest time step accepted; only a later step is ever accepted again.
    last_used_step: int
    window_started_at: datetime | None
    window_failures: int
    consecutive_failures: int
    locked_at: datetime | None

    @property
    def enabled(self) -> bool:
        return self.confirmed_at is not None


@dataclass(frozen=True)
class MfaTicket:
    user_id: UUID
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    failures: int
    # When the password of the login this ticket continues was checked.
    password_at: datetime


@dataclass(frozen=True)
class MfaChallenge:
    """Login's answer for an account with a second factor: no tokens, a ticket for VerifyMfa."""

    ticket: str
    expires_at: datetime
    user_id: UUID


@dataclass(frozen=True)
class TotpEnrolment:
    secret: str
    provisioning_uri: str
    qr_code_svg: str
    expires_at: datetime


@dataclass(frozen=True)
class MfaState:
    """What an operator sees of a user's second factor."""

    enabled: bool
    pending: bool
    locked_at: datetime | None
    consecutive_failures: int
    recovery_codes_left: int


class ProofKind(Enum):
    TOTP = "totp"
    RECOVERY_CODE = "recovery_code"


@dataclass(frozen=True)
class Proof:
    """A second-factor code as typed, normalised: six digits, or a recovery code."""

    kind: ProofKind
    value: str


def _normalised(raw: str, field: str) -> str:
    if len(raw) > _MAX_CODE_INPUT:
        raise InvalidArgument(field, f"{field} is too long")
    return "".join(raw.split()).replace("-", "").lower()


def totp_code(raw: str, field: str = "code") -> Proof:
    text = _normalised(raw, field)
    if not text:
        raise InvalidArgument(field, f"{field} is required")
    if not _TOTP_CODE.match(text):
        raise InvalidArgument(field, f"{field} must be {CODE_DIGITS} digits")
    return Proof(ProofKind.TOTP, text)


def recovery_code(raw: str, field: str = "recovery_code") -> Proof:
    text = _normalised(raw, field)
    if not _RECOVERY_CODE.match(text):
        raise InvalidArgument(field, f"{field} is not a recovery code")
    return Proof(ProofKind.RECOVERY_CODE, text)


def any_code(raw: str, field: str = "code") -> Proof:
    """A current TOTP code or a recovery code, told apart by their shape."""
    text = _normalised(raw, field)
    if not text:
        raise InvalidArgument(field, f"{field} is required")
    if _TOTP_CODE.match(text):
        return Proof(ProofKind.TOTP, text)
    if _RECOVERY_CODE.match(text):
        return Proof(ProofKind.RECOVERY_CODE, text)
    raise InvalidArgument(field, f"{field} must be {CODE_DIGITS} digits or a recovery code")


def verify_mfa_proof(code: str, recovery: str) -> Proof:
    """VerifyMfa takes exactly one of its two code fields."""
    if code.strip() and recovery.strip():
        raise InvalidArgument("recovery_code", "give either code or recovery_code, not both")
    if recovery.strip():
        return recovery_code(recovery)
    return totp_code(code)


def format_recovery_code(value: str) -> str:
    return "-".join(value[i : i + 4] for i in range(0, len(value), 4))
