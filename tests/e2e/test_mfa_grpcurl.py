"""The README's grpcurl MFA flow, with the real grpcurl against a real server."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime

from tests.mfa_support import STEP, code_at
from tests.support import STRONG_PASSWORD, new_login


def call(grpcurl: str, address: str, method: str, body: dict[str, str], token: str = "") -> dict:
    headers = ["-H", f"authorization: Bearer {token}"] if token else []
    result = subprocess.run(
        [
            grpcurl,
            "-plaintext",
            *headers,
            "-d",
            json.dumps(body),
            address,
            f"identity.v1.AuthService/{method}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout or "{}")


def test_totp_enrolment_and_login_with_grpcurl(grpcurl, served):
    login = new_login("ops-mfa")
    credentials = {"login": login, "password": STRONG_PASSWORD}
    call(grpcurl, served.address, "Register", credentials)
    token = call(grpcurl, served.address, "Login", credentials)["access_token"]
    setup = call(grpcurl, served.address, "SetupTotp", {"password": STRONG_PASSWORD}, token)
    assert setup["provisioning_uri"].startswith("otpauth://totp/")
    previous = code_at(setup["secret"], datetime.now(UTC) - STEP)
    confirmed = call(grpcurl, served.address, "ConfirmTotp", {"code": previous}, token)
    assert len(confirmed["recovery_codes"]) == 10

    challenge = call(grpcurl, served.address, "Login", credentials)
    assert challenge["mfa_required"] is True and "access_token" not in challenge
    done = call(
        grpcurl,
        served.address,
        "VerifyMfa",
        {"mfa_ticket": challenge["mfa_ticket"], "code": code_at(setup["secret"], datetime.now(UTC))},
    )
    assert done["access_token"] and done["refresh_token"].startswith("rt_")
    checked = call(grpcurl, served.address, "ValidateToken", {"access_token": done["access_token"]})
    assert checked["valid"] is True and checked["claims"]["amr"] == ["pwd", "otp", "mfa"]
