"""The identity service's signing keys, cached, refetched on an unknown kid at most once
per `min_refetch_interval` (single flight: of any number of threads asking at once, one
fetches and the others use its answer), so a flood of forged kids costs the service at
most one GetJwks per interval."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import grpc
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from identity.v1 import auth_pb2, auth_pb2_grpc

PublicKeys = Mapping[str, rsa.RSAPublicKey]
_MIN_KEY_BITS = 2048


class JwksSource(Protocol):
    def fetch(self) -> list[dict[str, Any]]:
        """The JWK Set's keys, as JSON objects."""
        ...


class GrpcJwks:
    """AuthService.GetJwks over a (sync) channel."""

    def __init__(self, channel: grpc.Channel, *, timeout: float = 2.0) -> None:
        self._stub = auth_pb2_grpc.AuthServiceStub(channel)
        self._timeout = timeout

    def fetch(self) -> list[dict[str, Any]]:
        answer = self._stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=self._timeout)
        return [
            {"kty": k.kty, "kid": k.kid, "use": k.use, "alg": k.alg, "n": k.n, "e": k.e} for k in answer.keys
        ]


class HttpJwks:
    """`GET /.well-known/jwks.json` through the gateway."""

    def __init__(self, url: str, *, timeout: float = 2.0) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError("the JWKS URL must be http(s)")
        self._url = url
        self._timeout = timeout

    def fetch(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self._url, timeout=self._timeout) as answer:  # noqa: S310 (scheme checked)
            body = json.loads(answer.read(1 << 20))
        keys = body.get("keys") if isinstance(body, dict) else None
        return [k for k in keys if isinstance(k, dict)] if isinstance(keys, list) else []


def parse_keys(jwks: list[dict[str, Any]]) -> dict[str, rsa.RSAPublicKey]:
    """RSA signing keys for RS256 only; anything else in the set is ignored."""
    keys: dict[str, rsa.RSAPublicKey] = {}
    for jwk in jwks:
        kid = jwk.get("kid")
        if jwk.get("kty") != "RSA" or jwk.get("alg") not in ("RS256", "", None) or not isinstance(kid, str):
            continue
        if jwk.get("use") not in ("sig", "", None):
            continue
        try:
            key = RSAAlgorithm.from_jwk({"kty": "RSA", "n": jwk["n"], "e": jwk["e"]})
        except (KeyError, ValueError, TypeError):
            continue
        if isinstance(key, rsa.RSAPublicKey) and key.key_size >= _MIN_KEY_BITS:
            keys[kid] = key
    return keys


class KeySet:
    def __init__(
        self,
        source: JwksSource,
        *,
        min_refetch_interval: float = 5.0,
        max_age: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._min_interval = min_refetch_interval
        self._max_age = max_age
        self._monotonic = monotonic
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._fetched_at = float("-inf")
        self._generation = 0
        self._lock = threading.Lock()
        self.fetches = 0

    def cached(self, kid: str) -> rsa.RSAPublicKey | None:
        """The key from memory only; None when unknown or when the set is due a refresh."""
        if self._monotonic() - self._fetched_at > self._max_age:
            return None
        return self._keys.get(kid)

    def get(self, kid: str) -> rsa.RSAPublicKey | None:
        """The key, refreshing the set first when the kid is unknown or the set is old (at
        most once per minimum interval; a failed fetch keeps the keys it had)."""
        key = self.cached(kid)
        if key is not None:
            return key
        self.refresh()
        return self._keys.get(kid)

    def refresh(self) -> None:
        """Fetches the set unless it was fetched less than the minimum interval ago or
        another thread is fetching it (then waits for that fetch). A failed fetch keeps
        the old keys."""
        generation = self._generation
        with self._lock:
            if self._generation != generation:
                return  # fetched while we waited for the lock
            if self._monotonic() - self._fetched_at < self._min_interval:
                return
            self._fetched_at = self._monotonic()
            self._generation += 1
            self.fetches += 1
            try:
                fresh = parse_keys(self._source.fetch())
            except (grpc.RpcError, OSError, ValueError):
                return
            if fresh:
                self._keys = fresh
