"""Domain <-> proto conversion for AuthService, kept in one place."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2

from identity.domain.models import IssuedTokens, User
from identity.security.jwt_codec import AccessClaims
from identity.services.clock import utcnow
from identity.v1 import auth_pb2

TOKEN_TYPE = "Bearer"


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


def token_fields(tokens: IssuedTokens) -> dict[str, object]:
    """The fields every token-issuing response shares (Login, VerifyMfa, Refresh)."""
    return {
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "token_type": TOKEN_TYPE,
        "access_token_expire_time": timestamp(tokens.access_token_expires_at),
        "expires_in": max(0, int((tokens.access_token_expires_at - utcnow()).total_seconds())),
        "session_id": str(tokens.session_id),
        "user_id": str(tokens.user_id),
    }


def claims(value: AccessClaims) -> auth_pb2.TokenClaims:
    return auth_pb2.TokenClaims(
        iss=value.issuer,
        sub=str(value.subject),
        aud=list(value.audience),
        iat=timestamp(value.issued_at),
        exp=timestamp(value.expires_at),
        jti=value.token_id,
        sid=str(value.session_id),
    )
