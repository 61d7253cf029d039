"""Access tokens: what ValidateToken and our RPCs refuse, JWKS verification by a
peer with PyJWT, and key rotation without breaking outstanding tokens."""

from __future__ import annotations

import base64
import json
import time
import uuid

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from identity.v1 import auth_pb2, errors_pb2
from tests.conftest import register_and_login
from tests.support import failure

# A peer allows the usual clock skew; the suite's server clock runs a few seconds ahead
# of the real one once tests have stepped it.
PEER_LEEWAY = 30


def _b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


PEER_LEEWAY = 30


def _claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


async def _validate(auth, token: str) -> auth_pb2.ValidateTokenResponse:
    return await auth.ValidateToken(auth_pb2.ValidateTokenRequest(access_token=token))


async def _jwks_client_keys(auth) -> dict[str, object]:
    jwks = await auth.GetJwks(auth_pb2.GetJwksRequest())
    keys = {}
    for key in jwks.keys:
        as_dict = {"kty": key.kty, "kid": key.kid, "use": key.use, "alg": key.alg, "n": key.n, "e": key.e}
        keys[key.kid] = jwt.PyJWK(as_dict).key
    return keys


async def test_peer_verifies_with_jwks_only(auth, account):
    keys = await _jwks_client_keys(auth)
    header = jwt.get_unverified_header(account.access_token)
    assert header["alg"] == "RS256" and header["typ"] == "at+jwt"
    # A peer allows for clock skew, as the server does (the suite's clock runs a little ahead).
    claims = jwt.decode(
        account.access_token,
        keys[header["kid"]],
        algorithms=["RS256"],
        audience="cinema",
        issuer="identity",
        leeway=PEER_LEEWAY,
    )
    assert claims["sub"] == account.user_id
    assert claims["sid"] == account.session_id
    assert {"iss", "aud", "sub", "iat", "exp", "jti", "sid"} <= claims.keys()
    for jwk in (await auth.GetJwks(auth_pb2.GetJwksRequest())).keys:
        assert (jwk.kty, jwk.use, jwk.alg) == ("RSA", "sig", "RS256")
        assert len(base64.urlsafe_b64decode(jwk.n + "==")) * 8 >= 2048


async def test_alg_none_in_any_casing_is_refused(auth, account):
    claims = _claims_of(account.access_token)
    kid = jwt.get_unverified_header(account.access_token)["kid"]
    for alg in ["none", "None", "NONE", "nOnE"]:
        forged = f"{_b64({'alg': alg, 'typ': 'at+jwt', 'kid': kid})}.{_b64(claims)}."
        result = await _validate(auth, forged)
        assert not result.valid
        assert result.reason == errors_pb2.ERROR_REASON_TOKEN_INVALID


async def test_hs256_signed_with_our_public_key_is_refused(auth, account):
    kid = jwt.get_unverified_header(account.access_token)["kid"]
    keys = await _jwks_client_keys(auth)
    public_pem = keys[kid].public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import hashlib
    import hmac

    claims = _claims_of(account.access_token)
    for alg, digest in [("HS256", hashlib.sha256), ("HS384", hashlib.sha384), ("HS512", hashlib.sha512)]:
        signing_input = f"{_b64({'alg': alg, 'typ': 'at+jwt', 'kid': kid})}.{_b64(claims)}"
        signature = _b64(hmac.new(public_pem, signing_input.encode(), digest).digest())
        result = await _validate(auth, f"{signing_input}.{signature}")
        assert not result.valid and result.reason == errors_pb2.ERROR_REASON_TOKEN_INVALID


def _sign_with_own_key(claims: dict, kid: str, **header) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid, "typ": "at+jwt", **header})


async def test_foreign_key_unknown_kid_and_jku_are_refused(auth, account):
    claims = _claims_of(account.access_token)
    kid = jwt.get_unverified_header(account.access_token)["kid"]
    attacks = [
        _sign_with_own_key(claims, kid),  # our kid, someone else's key
        _sign_with_own_key(claims, "unknown-kid"),
        _sign_with_own_key(claims, "../../etc/passwd"),
        _sign_with_own_key(claims, kid, jku="http://evil.example/jwks.json"),
        _sign_with_own_key(claims, kid, jwk={"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
    ]
    for token in attacks:
        result = await _validate(auth, token)
        assert not result.valid and result.reason == errors_pb2.ERROR_REASON_TOKEN_INVALID


async def test_tampered_claims_and_wrong_typ_are_refused(auth, account):
    header, payload, signature = account.access_token.split(".")
    claims = _claims_of(account.access_token)
    claims["sub"] = str(uuid.uuid4())
    assert not (await _validate(auth, f"{header}.{_b64(claims)}.{signature}")).valid
    typ_jwt = json.loads(base64.urlsafe_b64decode(header + "=="))
    typ_jwt["typ"] = "JWT"
    assert not (await _validate(auth, f"{_b64(typ_jwt)}.{payload}.{signature}")).valid


async def test_wrong_issuer_audience_and_expiry_are_refused(auth, account, services):
    ring = await services.keys.current()
    claims = _claims_of(account.access_token)
    now = int(time.time())

    def ours(**changes) -> str:
        return jwt.encode(
            {**claims, **changes},
            ring.signing_key,
            algorithm="RS256",
            headers={"kid": ring.signing_kid, "typ": "at+jwt"},
        )

    assert (await _validate(auth, ours())).valid  # control: the same route with our key is valid
    assert (await _validate(auth, ours(iss="evil"))).reason == errors_pb2.ERROR_REASON_TOKEN_INVALID
    assert (await _validate(auth, ours(aud="other-service"))).reason == errors_pb2.ERROR_REASON_TOKEN_INVALID
    assert (await _validate(auth, ours(exp=now - 3600))).reason == errors_pb2.ERROR_REASON_TOKEN_EXPIRED
    assert (
        await _validate(auth, ours(iat=now + 3600, nbf=now + 3600))
    ).reason == errors_pb2.ERROR_REASON_TOKEN_INVALID
    no_sid = {k: v for k, v in claims.items() if k != "sid"}
    forged = jwt.encode(
        no_sid, ring.signing_key, algorithm="RS256", headers={"kid": ring.signing_kid, "typ": "at+jwt"}
    )
    assert not (await _validate(auth, forged)).valid


async def test_refresh_token_is_never_an_access_token(auth, account):
    result = await _validate(auth, account.refresh_token)
    assert not result.valid and result.reason == errors_pb2.ERROR_REASON_TOKEN_INVALID
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.Logout(
            auth_pb2.LogoutRequest(), metadata=(("authorization", f"Bearer {account.refresh_token}"),)
        )
    assert failure(err.value).code == grpc.StatusCode.UNAUTHENTICATED
    # And an access token is not a refresh token.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await auth.Refresh(auth_pb2.RefreshRequest(refresh_token=account.access_token))
    assert failure(err.value).reason == "REFRESH_TOKEN_INVALID"


async def test_oversized_and_malformed_tokens_are_refused_cheaply(auth):
    for token in ["", "a.b", "a.b.c.d", "x" * 20_000 + ".a.b", "%%%.%%%.%%%", _b64(b"[1]") + ".e30.x"]:
        result = await _validate(auth, token)
        assert not result.valid
        assert result.reason == errors_pb2.ERROR_REASON_TOKEN_INVALID
    # Past the message cap the transport refuses before any of our code runs.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _validate(auth, "x" * 100_000)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_rotation_keeps_outstanding_tokens_valid(auth, services, server):
    before = await register_and_login(auth)
    old_kid = jwt.get_unverified_header(before.access_token)["kid"]
    jwks_before = {k.kid for k in (await auth.GetJwks(auth_pb2.GetJwksRequest())).keys}
    result = await services.keys.rotate()
    # The new signing key had been published before it signed anything.
    assert result.active_kid in jwks_before
    assert result.retired_kid == old_kid
    # Every process re-reads the ring within IDENTITY_KEY_REFRESH_SECONDS; skip the wait.
    await server.services.keys.reload()
    after = await register_and_login(auth)
    assert jwt.get_unverified_header(after.access_token)["kid"] == result.active_kid
    jwks_after = {k.kid for k in (await auth.GetJwks(auth_pb2.GetJwksRequest())).keys}
    assert old_kid in jwks_after and result.next_kid in jwks_after
    assert (await _validate(auth, before.access_token)).valid
    assert (await _validate(auth, after.access_token)).valid
    keys = await _jwks_client_keys(auth)
    for token in (before.access_token, after.access_token):
        kid = jwt.get_unverified_header(token)["kid"]
        jwt.decode(token, keys[kid], algorithms=["RS256"], audience="cinema", leeway=PEER_LEEWAY)
