"""TOTP (RFC 6238) secrets, codes and enrolment artefacts, and recovery codes.

Codes are compared in constant time, and every candidate step is compared whatever
the outcome of the others, so the time taken says nothing about which step (if any)
matched. Recovery codes are kept as HMAC-SHA256 under a key derived from the master
secret: a copy of the database alone does not allow an offline search of them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import secrets
from uuid import UUID

import pyotp
import segno
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from identity.domain.mfa import CODE_DIGITS, RECOVERY_ALPHABET, RECOVERY_CODE_CHARS, STEP_SECONDS

SECRET_BYTES = 20  # 160 bits, RFC 4226's recommended length


def new_secret() -> str:
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def code_at_step(secret: str, step: int) -> str:
    return str(pyotp.TOTP(secret, digits=CODE_DIGITS, interval=STEP_SECONDS).generate_otp(step))


def matching_step(secret: str, code: str, current_step: int, skew_steps: int) -> int | None:
    """The newest step in [current - skew, current] whose code is `code`, or None."""
    found: int | None = None
    for step in range(current_step - skew_steps, current_step + 1):
        if hmac.compare_digest(code_at_step(secret, step).encode(), code.encode()):
            found = step
    return found


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    return str(
        pyotp.TOTP(secret, digits=CODE_DIGITS, interval=STEP_SECONDS).provisioning_uri(
            name=account, issuer_name=issuer
        )
    )


def qr_code_svg(uri: str) -> str:
    """A standalone SVG document of the URI as a QR code."""
    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=4, xmldecl=False, title="TOTP QR code")
    return out.getvalue().decode("utf-8")


def new_recovery_code() -> str:
    return "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_CHARS))


class RecoveryCodeHasher:
    def __init__(self, master_key: bytes) -> None:
        self._key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=b"identity.recovery.v1", info=b"recovery-codes"
        ).derive(master_key)

    def digest(self, user_id: UUID, code: str) -> bytes:
        """Bound to the user, so one user's code digest means nothing for another."""
        return hmac.new(self._key, user_id.bytes + code.encode("ascii"), hashlib.sha256).digest()
