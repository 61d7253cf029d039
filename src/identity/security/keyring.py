"""The in-process view of the signing key ring: private key of the active key
(loaded once: load_pem_private_key costs ~37 ms), public keys of every published
key by kid. Reloaded from PostgreSQL on an interval and when an unknown kid shows up."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from identity.security.secretbox import SecretBox

KEY_BITS = 2048
PUBLIC_EXPONENT = 65537


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True)
class GeneratedKey:
    kid: str
    private_pem: bytes
    public_jwk: dict[str, Any]


def generate_key() -> GeneratedKey:
    key = rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=KEY_BITS)
    kid = secrets.token_urlsafe(12)
    numbers = key.public_key().public_numbers()
    jwk = {
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": "RS256",
        "n": _b64url_uint(numbers.n),
        "e": _b64url_uint(numbers.e),
    }
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return GeneratedKey(kid=kid, private_pem=pem, public_jwk=jwk)


@dataclass(frozen=True)
class PublicKey:
    kid: str
    jwk: dict[str, Any]
    key: rsa.RSAPublicKey


@dataclass(frozen=True)
class KeyRingSnapshot:
    signing_kid: str | None
    signing_key: rsa.RSAPrivateKey | None
    public: dict[str, PublicKey]
    loaded_at: datetime


def public_key_from_jwk(jwk: dict[str, Any]) -> rsa.RSAPublicKey:
    def as_int(member: str) -> int:
        data = str(jwk[member])
        return int.from_bytes(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)), "big")

    return rsa.RSAPublicNumbers(as_int("e"), as_int("n")).public_key()


def load_private_key(box: SecretBox, kid: str, sealed: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(box.open(sealed, kid), password=None)
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < KEY_BITS:
        raise ValueError("signing key is not RSA-2048 or larger")
    return key
