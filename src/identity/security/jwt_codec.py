"""Access tokens (RFC 9068 profile, RFC 8725 practices).

Verification refuses before parsing work grows: size cap, three segments, a
header that is small and says exactly alg=RS256, typ=at+jwt and a kid we know.
jku/x5u/jwk headers are never read: the key comes only from our ring by kid."""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from identity.domain.errors import TokenExpired, TokenRejected

ACCESS_TOKEN_TYPE = "at+jwt"
ALGORITHM = "RS256"
MAX_TOKEN_LENGTH = 4096
_MAX_HEADER_LENGTH = 512
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class AccessClaims:
    issuer: str
    subject: uuid.UUID
    audience: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime
    token_id: str
    session_id: uuid.UUID
    # How and when the user authenticated (RFC 8176 amr, OIDC auth_time).
    amr: tuple[str, ...] = ()
    auth_time: datetime | None = None


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
    amr: tuple[str, ...] = ("pwd",),
    auth_time: datetime | None = None,
) -> tuple[str, datetime]:
    expires_at = now + ttl
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": str(user_id),
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
        "jti": uuid.uuid4().hex,
        "sid": str(session_id),
        "amr": list(amr),
        "auth_time": int((auth_time or now).timestamp()),
    }
    token = jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid, "typ": ACCESS_TOKEN_TYPE})
    return token, expires_at.replace(microsecond=0)


def unverified_kid(token: str) -> str:
    """Structural checks on an untrusted token; returns its kid (attacker input). A token is
    three base64url segments and nothing else: no whitespace around or inside it."""
    if not token or len(token) > MAX_TOKEN_LENGTH or not _COMPACT_JWS.fullmatch(token):
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


def _numeric_date(claims: dict[str, Any], name: str) -> datetime:
    """A NumericDate claim (RFC 7519 §2): a JSON number, never a string or a boolean."""
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenRejected()
    return datetime.fromtimestamp(int(value), UTC)


def _amr(claims: dict[str, Any]) -> tuple[str, ...]:
    value = claims.get("amr", [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TokenRejected()
    return tuple(value)


def decode_access_token(
    token: str,
    *,
    key: rsa.RSAPublicKey,
    issuer: str,
    audiences: tuple[str, ...],
    leeway: timedelta,
    now: datetime,
) -> AccessClaims:
    """The claims of a token signed by `key`, checked against `now` (the caller's clock):
    the signature first, then iss and aud, then exp, nbf and iat within `leeway`."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=list(audiences),
            issuer=issuer,
            options={
                "require": ["iss", "aud", "sub", "iat", "exp", "jti", "sid"],
                "strict_aud": False,
                # Judged below against the clock we are given, not PyJWT's own.
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError:
        raise TokenRejected() from None
    try:
        expires_at = _numeric_date(claims, "exp")
        issued_at = _numeric_date(claims, "iat")
        not_before = _numeric_date(claims, "nbf") if "nbf" in claims else None
        if expires_at + leeway <= now:
            raise TokenExpired()
        if issued_at - leeway > now or (not_before is not None and not_before - leeway > now):
            raise TokenRejected()
        audience = claims["aud"]
        return AccessClaims(
            issuer=str(claims["iss"]),
            subject=uuid.UUID(str(claims["sub"])),
            audience=tuple(audience) if isinstance(audience, list) else (str(audience),),
            issued_at=issued_at,
            expires_at=expires_at,
            token_id=str(claims["jti"]),
            session_id=uuid.UUID(str(claims["sid"])),
            amr=_amr(claims),
            auth_time=_numeric_date(claims, "auth_time") if "auth_time" in claims else None,
        )
    except (ValueError, TypeError, OverflowError, OSError):
        raise TokenRejected() from None
