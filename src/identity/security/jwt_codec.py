"""Access tokens (RFC 9068 profile, RFC 8725 practices).

Verification refuses before parsing work grows: size cap, three segments, a
header that is small and says exactly alg=RS256, typ=at+jwt and a kid we know.
jku/x5u/jwk headers are never read: the key comes only from our ring by kid."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from identity.domain.errors import Unauthenticated

ACCESS_TOKEN_TYPE = "at+jwt"
ALGORITHM = "RS256"
MAX_TOKEN_LENGTH = 4096
_MAX_HEADER_LENGTH = 512


class TokenRejected(Unauthenticated):
    reason = "TOKEN_INVALID"
    message = "access token is invalid"


class TokenExpired(TokenRejected):
    reason = "TOKEN_EXPIRED"
    message = "access token has expired"


@dataclass(frozen=True)
class AccessClaims:
    issuer: str
    subject: uuid.UUID
    audience: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime
    token_id: str
    session_id: uuid.UUID


def encode_access_token(
    *,
    key: rsa.RSAPrivateKey,
    kid: str,
    issuer: str,
    audience: str,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    now: datetime,
    ttl: timedelta,
) -> tuple[str, datetime]:
    expires_at = now + ttl
    claims = {
        "iss": issuer,
        "aud": audience,
        "sub": str(user_id),
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
        "jti": uuid.uuid4().hex,
        "sid": str(session_id),
    }
    token = jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid, "typ": ACCESS_TOKEN_TYPE})
    return token, expires_at.replace(microsecond=0)


def unverified_kid(token: str) -> str:
    """Structural checks on an untrusted token; returns its kid (attacker input)."""
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise TokenRejected()
    header_segment = token.split(".", 1)[0]
    if len(header_segment) > _MAX_HEADER_LENGTH:
        raise TokenRejected()
    try:
        header = json.loads(base64.urlsafe_b64decode(header_segment + "=" * (-len(header_segment) % 4)))
    except (ValueError, TypeError):
        raise TokenRejected() from None
    if not isinstance(header, dict):
        raise TokenRejected()
    kid = header.get("kid")
    if header.get("alg") != ALGORITHM or header.get("typ") != ACCESS_TOKEN_TYPE or not isinstance(kid, str):
        raise TokenRejected()
    return kid


def decode_access_token(
    token: str, *, key: rsa.RSAPublicKey, issuer: str, audiences: tuple[str, ...], leeway: timedelta
) -> AccessClaims:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=list(audiences),
            issuer=issuer,
            leeway=leeway,
            options={"require": ["iss", "aud", "sub", "iat", "exp", "jti", "sid"], "strict_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise TokenExpired() from None
    except jwt.PyJWTError:
        raise TokenRejected() from None
    now = datetime.now(UTC)
    try:
        issued_at = datetime.fromtimestamp(int(claims["iat"]), UTC)
        if issued_at - leeway > now:
            raise TokenRejected()
        audience = claims["aud"]
        return AccessClaims(
            issuer=str(claims["iss"]),
            subject=uuid.UUID(str(claims["sub"])),
            audience=tuple(audience) if isinstance(audience, list) else (str(audience),),
            issued_at=issued_at,
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            token_id=str(claims["jti"]),
            session_id=uuid.UUID(str(claims["sid"])),
        )
    except (ValueError, TypeError, OverflowError):
        raise TokenRejected() from None
