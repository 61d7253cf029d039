"""Local verification of identity's access tokens, with the revocation feed.

`verify` checks, in order: the size and shape of the token, a header saying exactly
alg=RS256 and typ=at+jwt, a kid found in identity's JWKS (refetched, rate-limited, when
unknown), the signature, then iss, aud (against an allow-list), exp, nbf and iat with
`leeway`, the claims a principal needs (sub, sid, jti) - and, given a feed, that the
session has not ended. jku, x5u and jwk headers are never read."""

from __future__ import annotations

import asyncio
import base64
import enum
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from identity.peer.errors import FeedStale, PeerUnavailable, TokenInvalid
from identity.peer.feed import DEFAULT_STALENESS, RevocationFeed
from identity.peer.jwks import GrpcJwks, KeySet
from identity.peer.principal import PeerPrincipal
from identity.v1 import auth_pb2, auth_pb2_grpc, errors_pb2

ACCESS_TOKEN_TYPE = "at+jwt"
MAX_TOKEN_LENGTH = 4096
_MAX_HEADER_LENGTH = 512
_REQUIRED = ["iss", "aud", "sub", "iat", "exp", "jti", "sid"]


class OnStale(enum.Enum):
    """What to do with a token while the revocation feed is stale."""

    # Refuse with FeedStale (UNAVAILABLE): nothing is accepted that might have ended.
    FAIL_CLOSED = "fail_closed"
    # Ask identity's ValidateToken for each token until the feed is current again.
    VALIDATE = "validate"


# Header segments already seen to be well formed, and their kid: every token signed by one
# key carries the same header, so the common case skips decoding it (a bounded cache).
_HEADERS: dict[str, str] = {}
_MAX_HEADERS = 64


def _kid(token: str) -> str:
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise TokenInvalid()
    segment = token[: token.index(".")]
    known = _HEADERS.get(segment)
    if known is not None:
        return known
    if len(segment) > _MAX_HEADER_LENGTH:
        raise TokenInvalid()
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, TypeError):
        raise TokenInvalid() from None
    if not isinstance(header, dict) or header.get("alg") != "RS256" or header.get("typ") != ACCESS_TOKEN_TYPE:
        raise TokenInvalid()
    kid = header.get("kid")
    if not isinstance(kid, str):
        raise TokenInvalid()
    if len(_HEADERS) < _MAX_HEADERS:
        _HEADERS[segment] = kid
    return kid


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenInvalid()
    return float(value)


class TokenVerifier:
    def __init__(
        self,
        keys: KeySet,
        *,
        issuer: str,
        audiences: Sequence[str],
        leeway: float = 30.0,
        feed: RevocationFeed | None = None,
        on_stale: OnStale = OnStale.FAIL_CLOSED,
        validate_channel: grpc.Channel | None = None,
        validate_timeout: float = 1.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not audiences:
            raise ValueError("at least one accepted audience is required")
        if feed is not None and on_stale is OnStale.VALIDATE and validate_channel is None:
            raise ValueError("OnStale.VALIDATE needs a channel to identity (validate_channel)")
        self._keys = keys
        self._issuer = issuer
        self._audiences = list(audiences)
        self._leeway = leeway
        self.feed = feed
        self._on_stale = on_stale
        self._validate = (
            auth_pb2_grpc.AuthServiceStub(validate_channel) if validate_channel is not None else None
        )
        self._validate_timeout = validate_timeout
        self._now = wall_clock

    @classmethod
    def connect(
        cls,
        channel: grpc.Channel,
        *,
        issuer: str,
        audiences: Sequence[str],
        service_key: str | None = None,
        leeway: float = 30.0,
        staleness: float = DEFAULT_STALENESS,
        on_stale: OnStale = OnStale.FAIL_CLOSED,
    ) -> TokenVerifier:
        """Keys from GetJwks on `channel`; with a service key, the revocation feed on it too
        (started here)."""
        feed = None
        if service_key is not None:
            feed = RevocationFeed(channel, service_key=service_key, staleness=staleness).start()
        return cls(
            KeySet(GrpcJwks(channel)),
            issuer=issuer,
            audiences=audiences,
            leeway=leeway,
            feed=feed,
            on_stale=on_stale,
            validate_channel=channel,
        )

    def close(self) -> None:
        if self.feed is not None:
            self.feed.stop()

    # -- sync -----------------------------------------------------------------------------

    def verify(self, token: str) -> PeerPrincipal:
        """The principal of a token that verifies and whose session has not ended; raises
        TokenInvalid, or PeerUnavailable/FeedStale (refuse the call: UNAVAILABLE)."""
        key = self._keys.get(_kid(token))
        if key is None:
            raise TokenInvalid()
        principal = self._decode(token, key)
        if self.feed is not None:
            if self.feed.is_ended(principal.session_id):
                raise TokenInvalid("SESSION_REVOKED", "session has ended")
            if not self.feed.fresh():
                self._when_stale(token)
        return principal

    def _when_stale(self, token: str) -> None:
        if self._on_stale is OnStale.FAIL_CLOSED or self._validate is None:
            raise FeedStale("the revocation feed is stale")
        try:
            answer = self._validate.ValidateToken(
                auth_pb2.ValidateTokenRequest(access_token=token), timeout=self._validate_timeout
            )
        except grpc.RpcError:
            raise PeerUnavailable("identity did not answer ValidateToken") from None
        if not answer.valid:
            name = errors_pb2.ErrorReason.Name(answer.reason).removeprefix("ERROR_REASON_")
            raise TokenInvalid(name or "TOKEN_INVALID")

    # -- asyncio --------------------------------------------------------------------------

    async def verify_async(self, token: str) -> PeerPrincipal:
        """As `verify`, for an event loop: network work (a JWKS refetch, ValidateToken while
        the feed is stale) runs in a thread, local verification inline."""
        key = self._keys.cached(_kid(token))
        if key is None:
            return await asyncio.to_thread(self.verify, token)
        principal = self._decode(token, key)
        if self.feed is not None:
            if self.feed.is_ended(principal.session_id):
                raise TokenInvalid("SESSION_REVOKED", "session has ended")
            if not self.feed.fresh():
                await asyncio.to_thread(self._when_stale, token)
        return principal

    # -- shared ---------------------------------------------------------------------------

    def _decode(self, token: str, key: rsa.RSAPublicKey) -> PeerPrincipal:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self._audiences,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": _REQUIRED, "strict_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise TokenInvalid("TOKEN_EXPIRED", "access token has expired") from None
        except jwt.PyJWTError:
            raise TokenInvalid() from None
        if _number(claims, "iat") - self._leeway > self._now():
            raise TokenInvalid()
        sub, sid, jti = claims["sub"], claims["sid"], claims["jti"]
        amr = claims.get("amr", [])
        if not (
            isinstance(sub, str) and isinstance(sid, str) and isinstance(jti, str) and isinstance(amr, list)
        ):
            raise TokenInvalid()
        return PeerPrincipal(
            user_id=sub,
            session_id=sid,
            amr=tuple(str(a) for a in amr),
            auth_time_epoch=_number(claims, "auth_time") if "auth_time" in claims else None,
            expires_epoch=_number(claims, "exp"),
            token_id=jti,
        )
