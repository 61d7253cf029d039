"""The security primitives on their own: the access token codec (what it signs, what it
refuses before and after the signature), the key ring's keys and JWKs, opaque secrets,
password hashing, and encryption at rest, including the stored formats that existing
rows depend on."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import bcrypt
import jwt
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from identity.domain.errors import TokenExpired, TokenRejected
from identity.security import opaque
from identity.security.jwt_codec import (
    decode_access_token,
    encode_access_token,
    unverified_kid,
)
from identity.security.keyring import generate_key, load_private_key, public_key_from_jwk
from identity.security.passwords import PasswordHasher
from identity.security.secretbox import SecretBox

NOW = datetime(2026, 3, 1, 12, 0, 0, 500_000, tzinfo=UTC)
SKEW = timedelta(seconds=30)
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
USER = uuid.uuid4()
SESSION = uuid.uuid4()
MASTER = b"m" * 32


def _issue(now: datetime = NOW, ttl: timedelta = timedelta(minutes=15), audience: str = "cinema") -> str:
    token, _ = encode_access_token(
        key=KEY,
        kid="kid-1",
        issuer="identity",
        audience=audience,
        user_id=USER,
        session_id=SESSION,
        now=now,
        ttl=ttl,
    )
    return token


def _decode(token: str, now: datetime = NOW, audiences: tuple[str, ...] = ("cinema",)):  # type: ignore[no-untyped-def]
    return decode_access_token(
        token, key=KEY.public_key(), issuer="identity", audiences=audiences, leeway=SKEW, now=now
    )


def _signed(claims: dict[str, object], headers: dict[str, object] | None = None) -> str:
    return jwt.encode(
        claims, KEY, algorithm="RS256", headers={"kid": "kid-1", "typ": "at+jwt", **(headers or {})}
    )


def _claims(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "iss": "identity",
        "aud": "cinema",
        "sub": str(USER),
        "iat": int(NOW.timestamp()),
        "nbf": int(NOW.timestamp()),
        "exp": int(NOW.timestamp()) + 900,
        "jti": "j",
        "sid": str(SESSION),
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def _segment(data: dict[str, object] | list[object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# -- the access token codec -------------------------------------------------------------


def test_an_issued_token_carries_exactly_the_documented_header_and_claims() -> None:
    token, expires_at = encode_access_token(
        key=KEY,
        kid="kid-1",
        issuer="identity",
        audience="cinema",
        user_id=USER,
        session_id=SESSION,
        now=NOW,
        ttl=timedelta(minutes=15),
    )
    assert expires_at == datetime(2026, 3, 1, 12, 15, tzinfo=UTC)
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": "kid-1", "typ": "at+jwt"}
    claims = jwt.decode(
        token, KEY.public_key(), algorithms=["RS256"], audience="cinema", options={"verify_exp": False}
    )
    now = int(NOW.timestamp())
    assert {k: v for k, v in claims.items() if k != "jti"} == {
        "iss": "identity",
        "aud": "cinema",
        "sub": str(USER),
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "sid": str(SESSION),
        # How the user authenticated (RFC 8176) and when: a password, at the session's start.
        "amr": ["pwd"],
        "auth_time": now,
    }
    assert len(claims["jti"]) == 32 and int(claims["jti"], 16) >= 0
    assert jwt.decode(_issue(), options={"verify_signature": False})["jti"] != claims["jti"]


def test_decoding_gives_back_what_was_issued() -> None:
    claims = _decode(_issue())
    assert (claims.issuer, claims.subject, claims.audience, claims.session_id) == (
        "identity",
        USER,
        ("cinema",),
        SESSION,
    )
    assert claims.issued_at == NOW.replace(microsecond=0)
    assert claims.expires_at == datetime(2026, 3, 1, 12, 15, tzinfo=UTC)
    assert len(claims.token_id) == 32
    listed = _decode(_signed(_claims(aud=["other", "cinema"])))
    assert listed.audience == ("other", "cinema")


def test_how_and_when_the_user_authenticated_survive_decoding() -> None:
    signed_in = NOW - timedelta(hours=3)
    token, _ = encode_access_token(
        key=KEY,
        kid="kid-1",
        issuer="identity",
        audience="cinema",
        user_id=USER,
        session_id=SESSION,
        now=NOW,
        ttl=timedelta(minutes=15),
        amr=("pwd", "otp"),
        auth_time=signed_in,
    )
    claims = _decode(token)
    assert claims.amr == ("pwd", "otp")
    assert claims.auth_time == signed_in.replace(microsecond=0)
    # A token from before these claims existed says nothing of either.
    bare = _decode(_signed(_claims()))
    assert (bare.amr, bare.auth_time) == ((), None)


def test_any_configured_audience_is_accepted_and_no_other() -> None:
    assert _decode(_issue(audience="tickets"), audiences=("cinema", "tickets")).audience == ("tickets",)
    with pytest.raises(TokenRejected):
        _decode(_issue(audience="tickets"))


@pytest.mark.parametrize(
    "change",
    [
        {"iss": "someone-else"},
        {"iss": None},
        {"aud": None},
        {"sub": None},
        {"iat": None},
        {"exp": None},
        {"jti": None},
        {"sid": None},
        {"sub": "not-a-uuid"},
        {"sid": "not-a-uuid"},
        {"exp": "2000000000"},
        {"exp": True},
        {"iat": "0"},
        {"nbf": "0"},
        {"nbf": False},
        {"exp": 10**20},
        {"amr": "pwd"},
        {"amr": ["pwd", 1]},
        {"auth_time": "0"},
    ],
)
def test_a_token_with_a_missing_or_malformed_claim_is_rejected(change: dict[str, object]) -> None:
    with pytest.raises(TokenRejected):
        _decode(_signed(_claims(**change)))


def test_a_token_signed_by_another_key_or_algorithm_is_rejected() -> None:
    forged = jwt.encode(_claims(), OTHER_KEY, algorithm="RS256", headers={"kid": "kid-1", "typ": "at+jwt"})
    with pytest.raises(TokenRejected):
        _decode(forged)
    body, _payload, signature = _issue().split(".")
    with pytest.raises(TokenRejected):
        _decode(f"{body}.{_segment(_claims(sub=str(uuid.uuid4())))}.{signature}")


def test_expiry_is_judged_within_the_skew_and_at_its_exact_edge() -> None:
    token = _signed(_claims(exp=int(NOW.timestamp()) + 100))
    edge = datetime.fromtimestamp(int(NOW.timestamp()) + 100, UTC) + SKEW
    assert _decode(token, now=edge - timedelta(microseconds=1)).subject == USER
    with pytest.raises(TokenExpired):
        _decode(token, now=edge)
    float_exp = _signed(_claims(exp=int(NOW.timestamp()) + 100.9))
    assert _decode(float_exp).expires_at == datetime.fromtimestamp(int(NOW.timestamp()) + 100, UTC)


def test_a_token_issued_or_valid_only_in_the_future_is_rejected_beyond_the_skew() -> None:
    at = int(NOW.timestamp())
    for claim in ("iat", "nbf"):
        within = _signed(_claims(**{claim: at + 30}))
        assert _decode(within).subject == USER
        beyond = _signed(_claims(**{claim: at + 31}))
        with pytest.raises(TokenRejected):
            _decode(beyond)
    assert _decode(_signed(_claims(nbf=None))).subject == USER
    # At the exact edge: a verifier whose clock is just the skew behind accepts it.
    whole = datetime.fromtimestamp(at, UTC)
    for claim in ("iat", "nbf"):
        assert _decode(_signed(_claims(**{claim: at + 30})), now=whole).subject == USER


def test_the_header_must_name_rs256_our_type_and_a_kid() -> None:
    assert unverified_kid(_issue()) == "kid-1"
    payload = _segment(_claims())
    for header in [
        {"alg": "none", "typ": "at+jwt", "kid": "k"},
        {"alg": "HS256", "typ": "at+jwt", "kid": "k"},
        {"alg": "RS256", "typ": "JWT", "kid": "k"},
        {"alg": "RS256", "kid": "k"},
        {"alg": "RS256", "typ": "at+jwt"},
        {"alg": "RS256", "typ": "at+jwt", "kid": 7},
    ]:
        with pytest.raises(TokenRejected):
            unverified_kid(f"{_segment(header)}.{payload}.sig")
    for bad_header in [_segment(["RS256"]), "!!!!", base64.urlsafe_b64encode(b"\xff\xfe").decode(), ""]:
        with pytest.raises(TokenRejected):
            unverified_kid(f"{bad_header}.{payload}.sig")


def test_a_token_of_the_wrong_shape_or_size_is_rejected_before_parsing() -> None:
    header = _segment({"alg": "RS256", "typ": "at+jwt", "kid": "k"})
    for token in ["", "a.b", "a.b.c.d", header + ".p", header + ".p.s.t"]:
        with pytest.raises(TokenRejected):
            unverified_kid(token)
    at_limit = f"{header}.p.{'s' * (4096 - len(header) - 3)}"
    assert len(at_limit) == 4096 and unverified_kid(at_limit) == "k"
    with pytest.raises(TokenRejected):
        unverified_kid(at_limit + "s")
    # The header segment alone is capped at 512 characters.
    for size, accepted in [(512, True), (516, False)]:
        pad = 0
        while len(_segment({"alg": "RS256", "typ": "at+jwt", "kid": "k", "x": "a" * pad})) < size:
            pad += 1
        big = _segment({"alg": "RS256", "typ": "at+jwt", "kid": "k", "x": "a" * pad})
        assert len(big) == size
        if accepted:
            assert unverified_kid(f"{big}.p.s") == "k"
        else:
            with pytest.raises(TokenRejected):
                unverified_kid(f"{big}.p.s")


# -- the key ring ---------------------------------------------------------------------


def test_a_generated_key_is_rsa_2048_with_a_matching_public_jwk() -> None:
    generated = generate_key()
    assert generated.public_jwk["kid"] == generated.kid and len(generated.kid) == 16
    assert {k: generated.public_jwk[k] for k in ("kty", "use", "alg", "e")} == {
        "kty": "RSA",
        "use": "sig",
        "alg": "RS256",
        "e": "AQAB",
    }
    assert "=" not in generated.public_jwk["n"]
    private = serialization.load_pem_private_key(generated.private_pem, password=None)
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    assert generated.private_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    public = public_key_from_jwk(generated.public_jwk)
    assert public.public_numbers() == private.public_key().public_numbers()
    signature = private.sign(b"m", padding.PKCS1v15(), hashes.SHA256())
    public.verify(signature, b"m", padding.PKCS1v15(), hashes.SHA256())
    assert generate_key().kid != generated.kid
    # A verifier that decodes the JWK as RFC 7518 says gets the same numbers.
    n = base64.urlsafe_b64decode(generated.public_jwk["n"] + "==")
    assert int.from_bytes(n, "big") == private.public_key().public_numbers().n
    assert len(n) == 256  # the minimum number of octets: no leading zero (RFC 7518 §6.3.1)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(65537, "AQAB"), (0x010017, "AQAX"), (255, "_w"), (256, "AQA"), (0xFBFF, "-_8")],
)
def test_jwk_integers_are_minimal_big_endian_base64url_without_padding(value: int, encoded: str) -> None:
    from identity.security.keyring import _b64url_uint

    assert _b64url_uint(value) == encoded


def test_a_private_key_opens_only_under_its_own_kid_and_only_if_strong_enough() -> None:
    box = SecretBox(MASTER, "signing-keys")
    generated = generate_key()
    sealed = box.seal(generated.private_pem, generated.kid)
    loaded = load_private_key(box, generated.kid, sealed)
    assert loaded.key_size == 2048
    with pytest.raises(Exception):  # noqa: B017 - any failure: the ciphertext is bound to its kid
        load_private_key(box, "another-kid", sealed)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    curve = ec.generate_private_key(ec.SECP256R1())
    for key in (weak, curve):
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        with pytest.raises(ValueError, match="RSA-2048"):
            load_private_key(box, "k", box.seal(pem, "k"))


# -- opaque secrets ---------------------------------------------------------------------


def test_opaque_secrets_are_prefixed_random_and_stored_as_sha256() -> None:
    secret = opaque.new_secret(opaque.REFRESH_PREFIX)
    assert secret.startswith("rt_") and len(secret) == 3 + 43
    assert opaque.new_secret("rt_") != secret
    assert opaque.digest(secret) == hashlib.sha256(secret.encode()).digest()
    assert opaque.digest("é") == hashlib.sha256("é".encode()).digest()
    assert (opaque.REFRESH_PREFIX, opaque.MFA_TICKET_PREFIX, opaque.MAX_OPAQUE_LENGTH) == ("rt_", "mt_", 128)


# -- passwords --------------------------------------------------------------------------


async def test_password_hashes_verify_and_keep_their_stored_format() -> None:
    hasher = PasswordHasher(rounds=4, concurrency=1)
    try:
        stored = await hasher.hash("correct horse")
        assert stored.startswith(b"$2b$04$")
        assert await hasher.verify("correct horse", stored)
        assert not await hasher.verify("correct horsf", stored)
        assert not await hasher.verify("correct horse", None)
        # Existing rows hold bcrypt(base64(HMAC-SHA256("identity.password.v1", password))).
        prehash = base64.b64encode(
            hmac.new(b"identity.password.v1", b"correct horse", hashlib.sha256).digest()
        )
        assert bcrypt.checkpw(prehash, stored)
        legacy = bcrypt.hashpw(prehash, bcrypt.gensalt(4))
        assert await hasher.verify("correct horse", legacy)
        assert await hasher.hash("correct horse") != stored  # salted
    finally:
        hasher.close()


async def test_every_character_of_a_long_password_counts() -> None:
    hasher = PasswordHasher(rounds=4, concurrency=2)
    try:
        stored = await hasher.hash("a" * 100 + "x")
        assert not await hasher.verify("a" * 100 + "y", stored)
        assert not await hasher.verify("a" * 72, stored)
        emoji = "🎬" * 64
        assert await hasher.verify(emoji, await hasher.hash(emoji))
    finally:
        hasher.close()


async def test_the_dummy_hash_never_matches_any_password() -> None:
    hasher = PasswordHasher(rounds=4, concurrency=1)
    try:
        for password in ["identity.dummy.password", "", "password"]:
            assert not await hasher.verify(password, None)
    finally:
        hasher.close()


async def test_a_closed_hasher_takes_no_more_work() -> None:
    hasher = PasswordHasher(rounds=4, concurrency=1)
    hasher.close()
    with pytest.raises(RuntimeError):
        await hasher.hash("correct horse")


# -- encryption at rest ----------------------------------------------------------------


def test_a_sealed_secret_opens_only_with_its_purpose_owner_and_master_key() -> None:
    box = SecretBox(MASTER, "totp")
    sealed = box.seal(b"secret", "owner-1")
    assert box.open(sealed, "owner-1") == b"secret"
    assert box.seal(b"secret", "owner-1") != sealed  # a fresh nonce each time
    for other_box, owner in [
        (box, "owner-2"),
        (SecretBox(MASTER, "signing-keys"), "owner-1"),
        (SecretBox(b"n" * 32, "totp"), "owner-1"),
    ]:
        with pytest.raises(Exception):  # noqa: B017 - authentication fails, whatever its type
            other_box.open(sealed, owner)


def test_the_sealed_format_is_version_nonce_ciphertext_under_the_documented_key() -> None:
    box = SecretBox(MASTER, "totp")
    sealed = box.seal(b"secret", "owner-1")
    assert sealed[:1] == b"\x01" and len(sealed) == 1 + 12 + len(b"secret") + 16
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"identity.secretbox.v1", info=b"totp").derive(
        MASTER
    )
    assert AESGCM(key).decrypt(sealed[1:13], sealed[13:], b"owner-1") == b"secret"
    nonce = os.urandom(12)
    written_before = b"\x01" + nonce + AESGCM(key).encrypt(nonce, b"old row", b"owner-1")
    assert box.open(written_before, "owner-1") == b"old row"
    for bad in [b"\x02" + sealed[1:], b"", sealed[:1]]:
        with pytest.raises(ValueError):
            box.open(bad, "owner-1")
