"""Opaque bearer secrets (refresh tokens, MFA tickets, recovery codes): 256 random
bits on the wire, only a SHA-256 digest at rest (enough for high-entropy secrets)."""

from __future__ import annotations

import hashlib
import secrets

# Prefixes make a leaked secret recognisable and keep the kinds from being confused.
REFRESH_PREFIX = "rt_"
MFA_TICKET_PREFIX = "mt_"
MAX_OPAQUE_LENGTH = 128


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()
