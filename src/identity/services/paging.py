"""Opaque, tamper-proof page tokens for keyset pagination.

A token is base64url(JSON position) + "." + HMAC-SHA256 over it, under a key
derived from IDENTITY_SECRET_KEY. The MAC covers the list kind and the owner
(e.g. the caller's user id), so a token edited by hand, or taken from another
user's listing or another list, is refused as INVALID_ARGUMENT PAGE_TOKEN_INVALID
and can never widen what a caller sees."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from identity.domain.errors import InvalidArgument, PageTokenInvalid

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
_MAX_TOKEN_LENGTH = 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def page_size(requested: int, *, default: int = DEFAULT_PAGE_SIZE, maximum: int = MAX_PAGE_SIZE) -> int:
    if requested < 0:
        raise InvalidArgument("page_size", "page_size must not be negative")
    if requested == 0:
        return default
    return min(requested, maximum)


class PageTokens:
    def __init__(self, master_key: bytes) -> None:
        self._key = hmac.new(master_key, b"identity.page-token.v1", hashlib.sha256).digest()

    def _mac(self, kind: str, owner: str, body: str) -> str:
        message = f"{kind}\x00{owner}\x00{body}".encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    def encode(self, kind: str, owner: str, position: dict[str, Any]) -> str:
        body = _b64(json.dumps(position, separators=(",", ":"), sort_keys=True).encode())
        return f"{body}.{self._mac(kind, owner, body)}"

    def decode(self, kind: str, owner: str, token: str) -> dict[str, Any] | None:
        """None for an empty token (first page); raises for anything not made by encode()."""
        if not token:
            return None
        invalid = PageTokenInvalid()
        body, _, mac = token.partition(".")
        if len(token) > _MAX_TOKEN_LENGTH or not body or not mac:
            raise invalid
        if not hmac.compare_digest(mac, self._mac(kind, owner, body)):
            raise invalid
        try:
            position = json.loads(_unb64(body))
        except ValueError:
            raise invalid from None
        if not isinstance(position, dict):
            raise invalid
        return position
