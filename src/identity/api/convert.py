"""Domain <-> proto conversion for AuthService, kept in one place."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

from google.protobuf import timestamp_pb2

from identity.domain.errors import InvalidArgument
from identity.domain.mfa import MfaChallenge, TotpEnrolment
from identity.domain.models import IssuedTokens, LoginEvent, LoginOutcome, User
from identity.security.jwt_codec import AccessClaims
from identity.services.sessions import ListedSession
from identity.v1 import auth_pb2

TOKEN_TYPE = "Bearer"
# google.protobuf.Timestamp's documented range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def user(value: User) -> auth_pb2.User:
    return auth_pb2.User(
        id=str(value.id),
        login=value.login,
        email=value.email or "",
        create_time=timestamp(value.created_at),
        mfa_enabled=value.mfa_enabled,
    )


# The three answers that carry a token pair share these fields.
_TokenAnswer = TypeVar(
    "_TokenAnswer", auth_pb2.LoginResponse, auth_pb2.RefreshResponse, auth_pb2.VerifyMfaResponse
)


def _with_tokens(answer: _TokenAnswer, tokens: IssuedTokens) -> _TokenAnswer:
    answer.access_token = tokens.access_token
    answer.refresh_token = tokens.refresh_token
    answer.token_type = TOKEN_TYPE
    answer.access_token_expire_time.FromDatetime(tokens.access_token_expires_at)
    answer.expires_in = tokens.expires_in_seconds
    answer.session_id = str(tokens.session_id)
    answer.user_id = str(tokens.user_id)
    return answer


def refresh_response(tokens: IssuedTokens) -> auth_pb2.RefreshResponse:
    return _with_tokens(auth_pb2.RefreshResponse(), tokens)


def login_response(value: IssuedTokens | MfaChallenge) -> auth_pb2.LoginResponse:
    """Tokens, or for an account with a second factor only the ticket for VerifyMfa."""
    if isinstance(value, MfaChallenge):
        return auth_pb2.LoginResponse(
            mfa_required=True, mfa_ticket=value.ticket, mfa_ticket_expire_time=timestamp(value.expires_at)
        )
    return _with_tokens(auth_pb2.LoginResponse(), value)


def verify_mfa_response(
    tokens: IssuedTokens, recovery_codes_remaining: int | None
) -> auth_pb2.VerifyMfaResponse:
    answer = _with_tokens(auth_pb2.VerifyMfaResponse(), tokens)
    answer.recovery_codes_remaining = recovery_codes_remaining or 0
    return answer


def totp_enrolment(value: TotpEnrolment) -> auth_pb2.SetupTotpResponse:
    return auth_pb2.SetupTotpResponse(
        secret=value.secret,
        provisioning_uri=value.provisioning_uri,
        qr_code_svg=value.qr_code_svg,
        expire_time=timestamp(value.expires_at),
    )


def claims(value: AccessClaims) -> auth_pb2.TokenClaims:
    return auth_pb2.TokenClaims(
        iss=value.issuer,
        sub=str(value.subject),
        aud=list(value.audience),
        iat=timestamp(value.issued_at),
        exp=timestamp(value.expires_at),
        jti=value.token_id,
        sid=str(value.session_id),
        amr=list(value.amr),
        auth_time=timestamp(value.auth_time),
    )


def optional_time(message: object, field: str) -> datetime | None:
    """A Timestamp field of a request, or None when unset; out of range is bad input."""
    if not message.HasField(field):  # type: ignore[attr-defined]
        return None
    value: timestamp_pb2.Timestamp = getattr(message, field)
    if not (_MIN_SECONDS <= value.seconds <= _MAX_SECONDS and 0 <= value.nanos < 1_000_000_000):
        raise InvalidArgument(field, f"{field} is out of range")
    return value.ToDatetime(tzinfo=UTC)


def session(value: ListedSession) -> auth_pb2.Session:
    row = value.session
    return auth_pb2.Session(
        id=str(row.id),
        create_time=timestamp(row.created_at),
        last_used_time=timestamp(row.last_used_at),
        expire_time=timestamp(value.expires_at),
        ip=row.ip or "",
        user_agent=row.user_agent,
        current=value.current,
    )


def login_outcome(value: LoginOutcome) -> auth_pb2.LoginOutcome.ValueType:
    return auth_pb2.LoginOutcome.Value("LOGIN_OUTCOME_" + value.value)


def history_entry(value: LoginEvent) -> auth_pb2.LoginHistoryEntry:
    return auth_pb2.LoginHistoryEntry(
        login_time=timestamp(value.login_at),
        outcome=login_outcome(value.outcome),
        ip=value.ip or "",
        user_agent=value.user_agent,
        session_id="" if value.session_id is None else str(value.session_id),
    )
