"""identity.peer against the website gateway (a real Envoy): the JWKS over HTTP verifies a
token, and the revocation feed is not reachable through the website listener."""

from __future__ import annotations

import pytest

from identity.peer import HttpJwks, KeySet, TokenVerifier
from tests.e2e.conftest import http
from tests.support import STRONG_PASSWORD, new_login

pytestmark = pytest.mark.e2e


def test_http_jwks_verifies_a_token(gateway) -> None:
    base = gateway.base_url
    login = new_login()
    http("POST", base + "/v1/auth/register", {"login": login, "password": STRONG_PASSWORD})
    _, tokens, _ = http("POST", base + "/v1/auth/login", {"login": login, "password": STRONG_PASSWORD})
    keys = KeySet(HttpJwks(base + "/.well-known/jwks.json"))
    principal = TokenVerifier(keys, issuer="identity", audiences=["cinema"]).verify(tokens["access_token"])
    assert principal.session_id == tokens["session_id"]
    assert principal.amr == ("pwd",)
    assert keys.fetches == 1


def test_the_revocation_feed_is_not_exposed_to_the_website(gateway) -> None:
    status, _, headers = http(
        "POST",
        gateway.base_url + "/identity.v1.PeerService/WatchSessionRevocations",
        {},
        {"content-type": "application/grpc"},
    )
    assert status == 404 or headers.get("grpc-status") == "12"
    assert headers.get("grpc-status") != "0"
