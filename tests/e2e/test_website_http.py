"""The website path: HTTP/JSON through a real Envoy transcoder to a real server."""

from __future__ import annotations

import jwt

from tests.e2e.conftest import WEBSITE_ORIGIN, error_reason, http
from tests.support import STRONG_PASSWORD, new_login


def test_register_login_refresh_logout_over_http(gateway):
    base = gateway.base_url
    login = new_login("web")
    status, body, _ = http("POST", base + "/v1/auth/register", {"login": login, "password": STRONG_PASSWORD})
    assert status == 200, body
    assert body["user"]["login"] == login

    status, tokens, _ = http("POST", base + "/v1/auth/login", {"login": login, "password": STRONG_PASSWORD})
    assert status == 200, tokens
    assert tokens["token_type"] == "Bearer"
    assert tokens["access_token"] and tokens["refresh_token"].startswith("rt_")
    assert int(tokens["expires_in"]) > 0 and tokens["access_token_expire_time"]

    status, rotated, _ = http("POST", base + "/v1/auth/refresh", {"refresh_token": tokens["refresh_token"]})
    assert status == 200, rotated
    assert rotated["refresh_token"] != tokens["refresh_token"]

    auth_header = {"authorization": f"Bearer {rotated['access_token']}"}
    status, body, _ = http("POST", base + "/v1/auth/logout", {}, auth_header)
    assert status == 200, body
    status, body, _ = http("POST", base + "/v1/auth/logout", {}, auth_header)
    assert status == 401
    assert error_reason(body) == "SESSION_REVOKED"
    status, body, _ = http("POST", base + "/v1/auth/refresh", {"refresh_token": rotated["refresh_token"]})
    assert status == 401


def test_errors_are_json_with_code_message_and_reason(gateway):
    base = gateway.base_url
    status, body, _ = http("POST", base + "/v1/auth/register", {"login": new_login(), "password": "short"})
    assert status == 400
    assert body["code"] == 3  # INVALID_ARGUMENT
    assert "at least 8" in body["message"]
    assert error_reason(body) == "PASSWORD_TOO_SHORT"
    violations = [d for d in body["details"] if d["@type"].endswith("google.rpc.BadRequest")]
    assert violations[0]["field_violations"][0]["field"] == "password"

    status, body, _ = http(
        "POST", base + "/v1/auth/login", {"login": new_login(), "password": "wrong password"}
    )
    assert status == 401
    assert error_reason(body) == "INVALID_CREDENTIALS"

    login = new_login()
    http("POST", base + "/v1/auth/register", {"login": login, "password": STRONG_PASSWORD})
    status, body, _ = http(
        "POST", base + "/v1/auth/register", {"login": login.upper(), "password": STRONG_PASSWORD}
    )
    assert status == 409
    assert error_reason(body) == "LOGIN_TAKEN"


def test_malformed_json_and_unknown_routes(gateway):
    import urllib.request

    request = urllib.request.Request(
        gateway.base_url + "/v1/auth/login",
        data=b"{not json",
        method="POST",
        headers={"content-type": "application/json"},
    )
    try:
        urllib.request.urlopen(request, timeout=5)
        raise AssertionError("malformed JSON was accepted")
    except urllib.error.HTTPError as error:
        assert error.code == 400
    status, _, _ = http("GET", gateway.base_url + "/v1/nothing-here")
    assert status == 404
    status, _, _ = http("GET", gateway.base_url + "/v1/auth/jwks?debug=1")
    assert status == 400


def test_admin_and_peer_rpcs_are_not_exposed_to_the_website(gateway):
    status, _, _ = http("GET", gateway.base_url + "/v1/roles")
    assert status == 404
    status, _, _ = http("POST", gateway.base_url + "/v1/permissions/check", {"permission": "a.b"})
    assert status == 404
    # Nor by speaking gRPC to the HTTP listener: Envoy answers UNIMPLEMENTED itself.
    status, _, headers = http(
        "POST",
        gateway.base_url + "/identity.v1.RbacService/ListRoles",
        {},
        {"content-type": "application/grpc"},
    )
    assert status == 404 or headers.get("grpc-status") == "12"
    assert headers.get("grpc-status") != "0"


def test_jwks_over_http_verifies_a_token(gateway):
    base = gateway.base_url
    login = new_login()
    http("POST", base + "/v1/auth/register", {"login": login, "password": STRONG_PASSWORD})
    _, tokens, _ = http("POST", base + "/v1/auth/login", {"login": login, "password": STRONG_PASSWORD})
    status, jwks, _ = http("GET", base + "/.well-known/jwks.json")
    assert status == 200
    keys = {k["kid"]: jwt.PyJWK(k).key for k in jwks["keys"]}
    kid = jwt.get_unverified_header(tokens["access_token"])["kid"]
    claims = jwt.decode(tokens["access_token"], keys[kid], algorithms=["RS256"], audience="cinema")
    assert claims["sid"] == tokens["session_id"]


def test_cors_preflight_allows_only_configured_origins(gateway):
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type",
    }
    status, _, headers = http(
        "OPTIONS", gateway.base_url + "/v1/auth/login", None, {"origin": WEBSITE_ORIGIN, **preflight}
    )
    assert status == 200
    assert headers.get("access-control-allow-origin") == WEBSITE_ORIGIN
    assert "authorization" in headers.get("access-control-allow-headers", "").lower()
    _, _, headers = http(
        "OPTIONS", gateway.base_url + "/v1/auth/login", None, {"origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in headers


async def test_client_ip_comes_from_envoy_not_from_a_spoofed_header(gateway, served, services):
    """Envoy appends the address it saw; the server trusts exactly that one hop, so a
    client-sent x-forwarded-for value is never taken as the client's address."""
    base = gateway.base_url
    login = new_login()
    http("POST", base + "/v1/auth/register", {"login": login, "password": STRONG_PASSWORD})
    for spoof in ({}, {"x-forwarded-for": "203.0.113.7"}, {"x-forwarded-for": "203.0.113.7, 198.51.100.9"}):
        status, _, _ = http(
            "POST",
            base + "/v1/auth/login",
            {"login": login, "password": STRONG_PASSWORD},
            {"user-agent": "FilmFan/1.0", **spoof},
        )
        assert status == 200
    async with services.db.reader() as uow:
        cur = await uow.conn.execute(
            """SELECT host(h.ip) AS ip, h.user_agent FROM login_history h
               JOIN users u ON u.id = h.user_id WHERE u.login = %s""",
            (login,),
        )
        rows = await cur.fetchall()
    # Whatever address Envoy saw for this machine's loopback client, it is the same
    # with and without a client-sent header, and never the spoofed one.
    assert len(rows) == 3
    assert {r["user_agent"] for r in rows} == {"FilmFan/1.0"}
    seen = {r["ip"] for r in rows}
    assert len(seen) == 1 and seen.isdisjoint({"203.0.113.7", "198.51.100.9", None})
