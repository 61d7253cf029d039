"""Login canonicalisation and the password policy (pure functions)."""

from __future__ import annotations

import pytest

from identity.domain.errors import InvalidArgument
from identity.domain.logins import canonical_login, validate_email
from identity.domain.passwords import check_password_policy


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [
        ("Alice", "alice"),
        ("  alice  ", "alice"),
        ("ＡＬＩＣＥ", "alice"),  # fullwidth
        ("STRASSE", "strasse"),
        ("straße", "strasse"),  # case folding, not lower()
        ("ﬁlm.lover", "film.lover"),  # ligature
        ("Zoë", "zoë"),
    ],
)
def test_lookalikes_share_a_canonical_login(raw: str, canonical: str) -> None:
    assert canonical_login(raw) == canonical


@pytest.mark.parametrize("raw", ["ab", "a" * 65, "al ice", "ali\u0000ce", "pаypal", "bob<script>", ""])
def test_bad_logins_are_refused_with_the_field(raw: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        canonical_login(raw)
    assert err.value.reason == "LOGIN_INVALID"
    assert err.value.violations[0].field == "login"


def test_email_is_optional_but_checked() -> None:
    assert validate_email("") is None
    assert validate_email(" a@b.example ") == "a@b.example"
    with pytest.raises(InvalidArgument):
        validate_email("not-an-email")


@pytest.mark.parametrize(
    "password",
    [
        "eight ch",  # spaces count
        "🎬🎬🎬🎬🎬🎬🎬🎬",  # 8 emoji, 32 bytes
        "🎬" * 64,  # 64 code points, 256 bytes
        "пароль-длинный",
        "x" * 256,
    ],
)
def test_policy_accepts_any_unicode_of_8_to_256_code_points(password: str) -> None:
    assert check_password_policy(password, "someone")


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short", "PASSWORD_TOO_SHORT"),
        ("🎬" * 7, "PASSWORD_TOO_SHORT"),
        ("x" * 257, "PASSWORD_TOO_LONG"),
        ("password123", "PASSWORD_TOO_COMMON"),
        ("PassWord123", "PASSWORD_TOO_COMMON"),
        ("qwertyuiop", "PASSWORD_TOO_COMMON"),
        ("my-name-is-someone!", "PASSWORD_CONTAINS_LOGIN"),
        ("SOMEONE-rules", "PASSWORD_CONTAINS_LOGIN"),
    ],
)
def test_policy_refuses_with_reason(password: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        check_password_policy(password, "someone")
    assert err.value.reason == reason
    assert err.value.violations[0].field == "password"


def test_nfkc_applies_before_counting() -> None:
    # "ﬀ" (one code point) becomes "ff" (two): the normalised length is what counts.
    assert check_password_policy("ﬀﬀﬀﬀ", "someone") == "ffffffff"
