"""TOTP codes and the shapes of second-factor input (fast tier, no I/O)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from datetime import UTC, datetime

import pyotp
import pytest
import segno
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from identity.domain.errors import InvalidArgument
from identity.domain.mfa import ProofKind, any_code, format_recovery_code, time_step, verify_mfa_proof
from identity.security import totp

# RFC 6238 appendix B (SHA-1): the 8-digit values end in these 6 digits.
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC_VECTORS = {
    59: "287082",
    1111111109: "081804",
    1111111111: "050471",
    1234567890: "005924",
    2000000000: "279037",
}


@pytest.mark.parametrize(("unix", "code"), sorted(RFC_VECTORS.items()))
def test_codes_match_rfc_6238(unix: int, code: str) -> None:
    at = datetime.fromtimestamp(unix, UTC)
    assert totp.code_at_step(RFC_SECRET, time_step(at)) == code
    assert totp.matching_step(RFC_SECRET, code, time_step(at), 0) == time_step(at)


def test_only_the_current_and_with_skew_the_previous_step_match() -> None:
    secret = totp.new_secret()
    now = 1_800_000_000 // 30
    for back, skew, expected in ((0, 0, now), (1, 0, None), (1, 1, now - 1), (2, 1, None)):
        code = totp.code_at_step(secret, now - back)
        if back and code == totp.code_at_step(secret, now):  # one chance in a million
            continue
        assert totp.matching_step(secret, code, now, skew) == expected
    assert totp.matching_step(secret, totp.code_at_step(secret, now), now, 1) == now


def test_a_code_of_the_next_step_is_not_accepted_early() -> None:
    secret = totp.new_secret()
    now = 1_800_000_000 // 30
    for ahead in (1, 2):
        code = totp.code_at_step(secret, now + ahead)
        if code in {totp.code_at_step(secret, now - back) for back in (0, 1)}:  # a collision
            continue
        assert totp.matching_step(secret, code, now, 1) is None


def test_secrets_are_160_random_bits_and_agree_with_pyotp() -> None:
    secrets_ = {totp.new_secret() for _ in range(50)}
    assert len(secrets_) == 50
    secret = secrets_.pop()
    assert len(base64.b32decode(secret)) == 20
    at = datetime.now(UTC)
    assert totp.code_at_step(secret, time_step(at)) == pyotp.TOTP(secret).at(at)


def test_uri_and_qr_code() -> None:
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "ann", "Cinema")
    assert uri == "otpauth://totp/Cinema:ann?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Cinema"
    svg = totp.qr_code_svg(uri)
    assert (
        svg.startswith("<svg")
        and 'xmlns="http://www.w3.org/2000/svg"' in svg
        and svg.rstrip().endswith("</svg>")
    )


@pytest.mark.parametrize("account_length", [3, 12, 40, 64])
def test_the_qr_code_is_titled_and_drawn_at_4_px_a_module_with_medium_error_correction(
    account_length: int,
) -> None:
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", "a" * account_length, "Cinema")
    svg = totp.qr_code_svg(uri)
    assert "<title>TOTP QR code</title>" in svg  # what a screen reader announces
    # Level M ("medium") at 4 px a module, whatever size of symbol the URI needs.
    width, height = segno.make(uri, error="m").symbol_size(scale=4)
    assert re.search(r'<svg [^>]*width="(\d+)" height="(\d+)"', svg).groups() == (str(width), str(height))  # type: ignore[union-attr]


def test_a_recovery_code_digest_is_hmac_sha256_under_the_documented_key() -> None:
    """Stored digests depend on this derivation: changing it locks out every saved code."""
    master, user, code = b"m" * 32, uuid.uuid4(), "abcdefghijklmnop"
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"identity.recovery.v1", info=b"recovery-codes"
    ).derive(master)
    expected = hmac.new(key, user.bytes + code.encode("ascii"), hashlib.sha256).digest()
    assert totp.RecoveryCodeHasher(master).digest(user, code) == expected


def test_recovery_codes_are_80_bits_and_their_digests_are_keyed_and_per_user() -> None:
    code = totp.new_recovery_code()
    assert len(code) == 16 and set(code) <= set("abcdefghijklmnopqrstuvwxyz234567")
    hasher, other_key = totp.RecoveryCodeHasher(b"k" * 32), totp.RecoveryCodeHasher(b"j" * 32)
    ann, bob = uuid.uuid4(), uuid.uuid4()
    assert hasher.digest(ann, code) == hasher.digest(ann, code)
    assert hasher.digest(ann, code) != hasher.digest(bob, code)
    assert hasher.digest(ann, code) != other_key.digest(ann, code)


def test_code_shapes() -> None:
    assert verify_mfa_proof(" 123 456 ", "").value == "123456"
    recovery = format_recovery_code("abcdefghijklmnop")
    assert recovery == "abcd-efgh-ijkl-mnop"
    assert verify_mfa_proof("", recovery.upper()).kind is ProofKind.RECOVERY_CODE
    assert any_code("ABCD EFGH IJKL MNOP").value == "abcdefghijklmnop"
    assert any_code("654321").kind is ProofKind.TOTP
    for code, recovery_ in (("", ""), ("12345", ""), ("123456", recovery), ("", "abcd"), ("1" * 65, "")):
        with pytest.raises(InvalidArgument):
            verify_mfa_proof(code, recovery_)
    for raw in ("", "12345a", "abcd-efgh-ijkl-mno1"):
        with pytest.raises(InvalidArgument):
            any_code(raw)
