"""What the peer SDK raises: a token refused (UNAUTHENTICATED for the caller), or identity
not reachable / not current (UNAVAILABLE: fail closed)."""

from __future__ import annotations


class TokenInvalid(Exception):
    """The token must be refused. `reason` is an identity.v1 ErrorReason name without its
    prefix: TOKEN_INVALID, TOKEN_EXPIRED, SESSION_REVOKED, SESSION_EXPIRED, ..."""

    def __init__(self, reason: str = "TOKEN_INVALID", message: str = "access token is invalid") -> None:
        super().__init__(message)
        self.reason = reason


class PeerUnavailable(Exception):
    """identity could not answer (after retries), or the revocation feed is stale and the
    verifier was told to fail closed. Never a reason to allow anything."""


class FeedStale(PeerUnavailable):
    """No word from the revocation feed for longer than the staleness bound."""


class IdentityError(Exception):
    """identity answered with an error other than UNAVAILABLE: its status code name and
    ErrorInfo reason (e.g. INVALID_ARGUMENT / PERMISSION_INVALID)."""

    def __init__(self, code: str, reason: str, message: str) -> None:
        super().__init__(f"{code} {reason}: {message}")
        self.code = code
        self.reason = reason
