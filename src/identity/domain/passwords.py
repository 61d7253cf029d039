"""Password policy (SECURITY.md "Passwords"): length by code points after NFKC,
no composition rules, a blocklist of common passwords, never the login."""

from __future__ import annotations

import unicodedata
from functools import cache
from importlib import resources

from identity.domain.errors import InvalidArgument, Reason

MIN_PASSWORD_LENGTH = 8
# Far above the 64 the policy promises; bounds the hashing work per request.
MAX_PASSWORD_LENGTH = 256


def normalize_password(raw: str) -> str:
    return unicodedata.normalize("NFKC", raw)


@cache
def _blocklist() -> frozenset[str]:
    text = resources.files("identity.data").joinpath("common-passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip().casefold() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )


def check_password_policy(raw: str, login_canonical: str, *, field: str = "password") -> str:
    """Returns the normalised password or raises InvalidArgument naming the rule."""
    password = normalize_password(raw)
    length = len(password)
    if length < MIN_PASSWORD_LENGTH:
        raise InvalidArgument(
            field,
            f"password must be at least {MIN_PASSWORD_LENGTH} characters",
            reason=Reason.PASSWORD_TOO_SHORT,
        )
    if length > MAX_PASSWORD_LENGTH:
        raise InvalidArgument(
            field,
            f"password must be at most {MAX_PASSWORD_LENGTH} characters",
            reason=Reason.PASSWORD_TOO_LONG,
        )
    folded = password.casefold()
    if folded in _blocklist():
        raise InvalidArgument(field, "password is too common", reason=Reason.PASSWORD_TOO_COMMON)
    if login_canonical and login_canonical in folded:
        raise InvalidArgument(
            field, "password must not contain the login", reason=Reason.PASSWORD_CONTAINS_LOGIN
        )
    return password
