"""Encryption at rest for private signing keys and TOTP secrets: AES-256-GCM under
a key derived (HKDF-SHA256) from IDENTITY_SECRET_KEY, one derived key per purpose,
with the owner's id as associated data so a ciphertext cannot be moved to another row."""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"
_NONCE_BYTES = 12


class SecretBox:
    def __init__(self, master_key: bytes, purpose: str) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"identity.secretbox.v1", info=purpose.encode()
        ).derive(master_key)
        self._aead = AESGCM(derived)

    def seal(self, plaintext: bytes, associated: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, associated.encode())

    def open(self, sealed: bytes, associated: str) -> bytes:
        if sealed[:1] != _VERSION:
            raise ValueError("unknown secretbox version")
        nonce = sealed[1 : 1 + _NONCE_BYTES]
        return self._aead.decrypt(nonce, sealed[1 + _NONCE_BYTES :], associated.encode())
