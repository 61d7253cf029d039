"""identity.peer on its own: what it imports, the JWKS cache's single flight and rate
limit, every refusal of the verifier, the feed's staleness policy, and the permission
client's retries (against a small in-process gRPC server, not identity)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent import futures
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from identity.peer import (
    FeedStale,
    IdentityError,
    KeySet,
    OnStale,
    PeerUnavailable,
    PermissionClient,
    RetryPolicy,
    TokenInvalid,
    TokenVerifier,
)
from identity.v1 import rbac_pb2, rbac_pb2_grpc

ISSUER, AUDIENCE = "identity", "cinema"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SID = "2f1c6a8e-2b8e-4c43-9d7a-2f6f7f1f3b11"
UID = "6a0b8c1e-8f0e-4d3b-9a55-0b1b2b3c4d5e"


def jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    return {**public, "kid": kid, "alg": "RS256", "use": "sig"}


class Source:
    def __init__(self, keys: list[dict[str, Any]], delay: float = 0.0) -> None:
        self.keys = keys
        self.delay = delay
        self.calls = 0

    def fetch(self) -> list[dict[str, Any]]:
        self.calls += 1
        time.sleep(self.delay)
        return self.keys


class Feed:
    def __init__(self, ended: set[str] = frozenset(), fresh: bool = True) -> None:  # type: ignore[assignment]
        self.ended, self._fresh = set(ended), fresh

    def is_ended(self, session_id: str) -> bool:
        return session_id in self.ended

    def fresh(self) -> bool:
        return self._fresh


def token(
    claims: dict[str, Any] | None = None,
    *,
    key: Any = KEY,
    kid: str = "k1",
    alg: str = "RS256",
    headers: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
) -> str:
    now = int(time.time())
    body = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": UID,
        "sid": SID,
        "jti": "j1",
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "amr": ["pwd", "otp", "mfa"],
        "auth_time": now - 5,
        **(claims or {}),
    }
    for name in drop:
        body.pop(name)
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid, "typ": "at+jwt", **(headers or {})})


def verifier(feed: Any = None, on_stale: OnStale = OnStale.FAIL_CLOSED) -> TokenVerifier:
    keys = KeySet(Source([jwk(KEY, "k1")]))
    return TokenVerifier(keys, issuer=ISSUER, audiences=[AUDIENCE], leeway=30, feed=feed, on_stale=on_stale)


def test_importing_the_sdk_imports_nothing_of_the_server() -> None:
    probe = (
        "import sys, identity.peer\n"
        # (bcrypt is left out: cryptography imports it for SSH keys when it is installed.)
        "server = ('psycopg', 'psycopg_pool', 'redis', 'structlog', 'alembic', 'sqlalchemy', 'typer')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in server\n"
        "             or (m.startswith('identity.') and m.split('.')[1] not in ('peer', 'v1')))\n"
        "print(bad)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_a_valid_token_gives_a_typed_principal() -> None:
    principal = verifier(Feed()).verify(token())
    assert (principal.user_id, principal.session_id, principal.token_id) == (UID, SID, "j1")
    assert principal.amr == ("pwd", "otp", "mfa") and principal.mfa
    assert principal.auth_time is not None and principal.expires_at > principal.auth_time


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(lambda: token(alg="HS256", key=jwk(KEY, "k1")["n"].encode()), id="hs256"),
        pytest.param(lambda: token(alg="RS512"), id="rs512"),
        pytest.param(lambda: jwt.encode({"sub": UID}, None, algorithm="none"), id="none"),
        pytest.param(lambda: token(headers={"typ": "JWT"}), id="typ-jwt"),
        pytest.param(lambda: token(key=OTHER_KEY), id="wrong-key"),
        pytest.param(lambda: token(key=OTHER_KEY, headers={"jku": "https://evil/jwks"}), id="jku-ignored"),
        pytest.param(lambda: token(kid="unknown"), id="unknown-kid"),
        pytest.param(lambda: token({"iss": "other"}), id="iss"),
        pytest.param(lambda: token({"aud": "billing"}), id="aud"),
        pytest.param(lambda: token({"nbf": int(time.time()) + 120}), id="nbf-future"),
        pytest.param(lambda: token({"iat": int(time.time()) + 120}), id="iat-future"),
        pytest.param(lambda: token(drop=("sid",)), id="no-sid"),
        pytest.param(lambda: token({"sub": 12}), id="sub-not-string"),
        pytest.param(lambda: "a." * 3000 + "b", id="oversized"),
        pytest.param(lambda: "not-a-token", id="garbage"),
    ],
)
def test_refusals(bad: Any) -> None:
    with pytest.raises(TokenInvalid) as refused:
        verifier(Feed()).verify(bad())
    assert refused.value.reason == "TOKEN_INVALID"


def test_expiry_with_leeway() -> None:
    now = int(time.time())
    verifier(Feed()).verify(token({"exp": now - 10}))  # within the 30 s leeway
    with pytest.raises(TokenInvalid) as refused:
        verifier(Feed()).verify(token({"exp": now - 60}))
    assert refused.value.reason == "TOKEN_EXPIRED"


def test_an_ended_session_is_refused_and_a_stale_feed_fails_closed() -> None:
    with pytest.raises(TokenInvalid) as refused:
        verifier(Feed(ended={SID})).verify(token())
    assert refused.value.reason == "SESSION_REVOKED"
    with pytest.raises(FeedStale):
        verifier(Feed(fresh=False)).verify(token())
    # A stale feed still refuses what it knows has ended.
    with pytest.raises(TokenInvalid):
        verifier(Feed(ended={SID}, fresh=False)).verify(token())


async def test_the_asyncio_variant_agrees() -> None:
    checked = verifier(Feed())
    assert (await checked.verify_async(token())).session_id == SID
    with pytest.raises(TokenInvalid):
        await verifier(Feed(ended={SID})).verify_async(token())
    with pytest.raises(FeedStale):
        await verifier(Feed(fresh=False)).verify_async(token())


def test_unknown_kids_refetch_once_per_interval_in_a_single_flight() -> None:
    now = [1000.0]
    source = Source([jwk(KEY, "k1")], delay=0.05)
    keys = KeySet(source, min_refetch_interval=5.0, monotonic=lambda: now[0])
    checked = TokenVerifier(keys, issuer=ISSUER, audiences=[AUDIENCE])
    checked.verify(token())
    assert source.calls == 1
    forged = [token(kid=f"forged-{i}", key=OTHER_KEY) for i in range(50)]

    def attempt(forgery: str) -> None:
        with pytest.raises(TokenInvalid):
            checked.verify(forgery)

    now[0] += 10
    threads = [threading.Thread(target=attempt, args=(f,)) for f in forged]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert source.calls == 2  # fifty forged kids at once: one fetch
    for forgery in forged[:10]:
        attempt(forgery)
    assert source.calls == 2  # and none more within the interval
    # A real new key (rotation) is found by the next refetch.
    source.keys = [jwk(KEY, "k1"), jwk(OTHER_KEY, "k2")]
    now[0] += 6
    assert checked.verify(token(kid="k2", key=OTHER_KEY)).user_id == UID
    assert source.calls == 3


def test_small_or_foreign_keys_are_ignored() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    keys = KeySet(Source([jwk(small, "k1"), {"kty": "EC", "kid": "k2"}, {**jwk(KEY, "k3"), "alg": "RS512"}]))
    assert keys.get("k1") is None and keys.get("k2") is None and keys.get("k3") is None


class Rbac(rbac_pb2_grpc.RbacServiceServicer):
    def __init__(self, failures: list[grpc.StatusCode]) -> None:
        self.failures = failures
        self.calls = 0
        self.metadata: list[Any] = []

    def CheckPermission(self, request: Any, context: Any) -> Any:
        self.calls += 1
        self.metadata.append(dict(context.invocation_metadata()))
        if self.failures:
            context.abort(self.failures.pop(0), "nope")
        return rbac_pb2.CheckPermissionResponse(
            allowed=True, reason=rbac_pb2.DECISION_REASON_GRANTED, granted_by=["publisher"]
        )


def serve(servicer: Rbac) -> tuple[grpc.Server, int]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    rbac_pb2_grpc.add_RbacServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def test_permission_client_retries_unavailable_only() -> None:
    servicer = Rbac([grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE])
    server, port = serve(servicer)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            client = PermissionClient(channel, service_key="sk_test", retry=RetryPolicy(backoff=0.01))
            decision = client.check(UID, "catalog.films.publish")
            assert (decision.allowed, decision.reason, decision.granted_by) == (
                True,
                "GRANTED",
                ("publisher",),
            )
            assert servicer.calls == 3
            assert servicer.metadata[0]["authorization"] == "Bearer sk_test"

            servicer.failures, servicer.calls = [grpc.StatusCode.INVALID_ARGUMENT], 0
            with pytest.raises(IdentityError) as answered:
                client.check(UID, "Bad Name")
            assert answered.value.code == "INVALID_ARGUMENT" and servicer.calls == 1

            servicer.failures, servicer.calls = [grpc.StatusCode.UNAVAILABLE] * 10, 0
            with pytest.raises(PeerUnavailable):
                client.check(UID, "catalog.films.publish")
            assert servicer.calls == RetryPolicy().attempts
    finally:
        server.stop(0)
