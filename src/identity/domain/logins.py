"""Login canonicalisation: the key that makes look-alike logins collide."""

from __future__ import annotations

import unicodedata

from identity.domain.errors import InvalidArgument, Reason
from identity.domain.lookalikes import NameProblem, name_problem

MIN_LOGIN_LENGTH = 3
MAX_LOGIN_LENGTH = 64
_ALLOWED_PUNCTUATION = frozenset("._-@+")


def canonical_login(raw: str, *, field: str = "login") -> str:
    """NFKC, case fold, trim, NFKC again (case folding can denormalise).

    Refuses control characters, inner spaces, symbols, and letters from more than
    one script: "pаypal" with a Cyrillic "а" is not "paypal" to NFKC, so it is
    refused rather than allowed to impersonate.
    """
    login = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", raw).casefold().strip())
    if not MIN_LOGIN_LENGTH <= len(login) <= MAX_LOGIN_LENGTH:
        raise InvalidArgument(
            field,
            f"login must be {MIN_LOGIN_LENGTH} to {MAX_LOGIN_LENGTH} characters",
            reason=Reason.LOGIN_INVALID,
        )
    problem = name_problem(login, _ALLOWED_PUNCTUATION)
    if problem is NameProblem.BAD_CHARACTER:
        raise InvalidArgument(
            field, "login may contain letters, digits and . _ - @ + only", reason=Reason.LOGIN_INVALID
        )
    if problem is NameProblem.MIXED_SCRIPTS:
        raise InvalidArgument(field, "login mixes letters of several scripts", reason=Reason.LOGIN_INVALID)
    return login


def display_login(raw: str) -> str:
    """The login as shown back to its owner: NFKC and trimmed, case kept."""
    return unicodedata.normalize("NFKC", raw).strip()


def validate_email(raw: str, *, field: str = "email") -> str | None:
    email = raw.strip()
    if not email:
        return None
    local, at, domain = email.rpartition("@")
    if (
        len(email) > 254
        or not at
        or not local
        or "." not in domain
        or any(c.isspace() or unicodedata.category(c).startswith("C") for c in email)
    ):
        raise InvalidArgument(field, "email is not a valid address", reason=Reason.EMAIL_INVALID)
    return email
