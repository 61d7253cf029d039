"""identity.peer: what a peer service needs to trust identity's tokens.

    pip install 'identity[peer]'    # grpcio, protobuf, googleapis-common-protos, pyjwt, cryptography

It imports the generated contract (identity.v1) and nothing of the server: no database or
Redis client is imported with it.

- TokenVerifier: local RS256 verification with identity's JWKS and the revocation feed.
- PermissionClient / AsyncPermissionClient: CheckPermission and friends, with retries.
- PeerAuthInterceptor (grpc.aio) or SyncPeerAuthInterceptor (grpc.server) and
  @require_permission: a protected RPC in one line."""

from identity.peer.context import current_principal
from identity.peer.errors import FeedStale, IdentityError, PeerUnavailable, TokenInvalid
from identity.peer.feed import RevocationFeed
from identity.peer.jwks import GrpcJwks, HttpJwks, KeySet
from identity.peer.permissions import AsyncPermissionClient, Decision, PermissionClient, RetryPolicy
from identity.peer.principal import PeerPrincipal
from identity.peer.server import PeerAuthInterceptor, require_permission
from identity.peer.sync_server import SyncPeerAuthInterceptor
from identity.peer.verifier import OnStale, TokenVerifier

__all__ = [
    "AsyncPermissionClient",
    "Decision",
    "FeedStale",
    "GrpcJwks",
    "HttpJwks",
    "IdentityError",
    "KeySet",
    "OnStale",
    "PeerAuthInterceptor",
    "PeerPrincipal",
    "PeerUnavailable",
    "PermissionClient",
    "RetryPolicy",
    "RevocationFeed",
    "SyncPeerAuthInterceptor",
    "TokenInvalid",
    "TokenVerifier",
    "current_principal",
    "require_permission",
]
