"""The website's MFA path: HTTP/JSON through a real Envoy transcoder to a real server,
from enrolment to a login with a code, a login with a recovery code, and disabling."""

from __future__ import annotations

from datetime import UTC, datetime

import jwt

from tests.e2e.conftest import error_reason, http
from tests.mfa_support import STEP, code_at, wrong_code
from tests.support import STRONG_PASSWORD, new_login


def test_enrol_log_in_with_a_code_and_a_recovery_code_then_disable_over_http(gateway):
    base = gateway.base_url
    login = new_login("web-mfa")
    credentials = {"login": login, "password": STRONG_PASSWORD}
    http("POST", base + "/v1/auth/register", credentials)
    _, tokens, _ = http("POST", base + "/v1/auth/login", credentials)
    me = {"authorization": f"Bearer {tokens['access_token']}"}

    status, setup, _ = http("POST", base + "/v1/account/mfa/totp/setup", {"password": STRONG_PASSWORD}, me)
    assert status == 200, setup
    assert setup["provisioning_uri"].startswith("otpauth://totp/")
    assert setup["qr_code_svg"].lstrip().startswith("<svg") and setup["expire_time"]
    secret = setup["secret"]
    # The previous step's code: the current one stays unused for the login below.
    previous = code_at(secret, datetime.now(UTC) - STEP)
    status, confirmed, _ = http("POST", base + "/v1/account/mfa/totp/confirm", {"code": previous}, me)
    assert status == 200, confirmed
    recovery = confirmed["recovery_codes"]
    assert len(recovery) == 10
    status, body, _ = http("POST", base + "/v1/account/mfa/totp/setup", {"password": STRONG_PASSWORD}, me)
    assert (status, error_reason(body)) == (400, "MFA_ALREADY_ENABLED")  # FAILED_PRECONDITION

    status, challenge, _ = http("POST", base + "/v1/auth/login", credentials)
    assert status == 200, challenge
    assert challenge["mfa_required"] is True and challenge["mfa_ticket"].startswith("mt_")
    assert challenge["access_token"] == "" and challenge["mfa_ticket_expire_time"]
    ticket = challenge["mfa_ticket"]

    now = datetime.now(UTC)
    status, body, _ = http(
        "POST", base + "/v1/auth/mfa/verify", {"mfa_ticket": ticket, "code": wrong_code(secret, now)}
    )
    assert (status, error_reason(body)) == (401, "MFA_CODE_INVALID")
    status, done, _ = http(
        "POST", base + "/v1/auth/mfa/verify", {"mfa_ticket": ticket, "code": code_at(secret, now)}
    )
    assert status == 200, done
    assert done["token_type"] == "Bearer" and done["refresh_token"].startswith("rt_")
    assert jwt.decode(done["access_token"], options={"verify_signature": False})["amr"] == [
        "pwd",
        "otp",
        "mfa",
    ]
    status, checked, _ = http("POST", base + "/v1/auth/validate", {"access_token": done["access_token"]})
    assert status == 200 and checked["valid"] and checked["claims"]["amr"] == ["pwd", "otp", "mfa"]
    assert checked["claims"]["auth_time"]
    status, body, _ = http(
        "POST", base + "/v1/auth/mfa/verify", {"mfa_ticket": ticket, "code": code_at(secret, now)}
    )
    assert (status, error_reason(body)) == (401, "MFA_TICKET_INVALID")

    mine = {"authorization": f"Bearer {done['access_token']}"}
    status, fresh, _ = http(
        "POST",
        base + "/v1/account/mfa/recovery-codes/regenerate",
        {"password": STRONG_PASSWORD, "code": recovery[0]},
        mine,
    )
    assert status == 200, fresh
    assert len(fresh["recovery_codes"]) == 10 and not set(fresh["recovery_codes"]) & set(recovery)

    _, challenge, _ = http("POST", base + "/v1/auth/login", credentials)
    status, done, _ = http(
        "POST",
        base + "/v1/auth/mfa/verify",
        {"mfa_ticket": challenge["mfa_ticket"], "recovery_code": fresh["recovery_codes"][0]},
    )
    assert status == 200, done
    assert done["recovery_codes_remaining"] == 9
    assert jwt.decode(done["access_token"], options={"verify_signature": False})["amr"] == ["pwd", "mfa"]

    status, body, _ = http(
        "POST",
        base + "/v1/account/mfa/totp/disable",
        {"password": STRONG_PASSWORD, "code": fresh["recovery_codes"][1]},
        {"authorization": f"Bearer {done['access_token']}"},
    )
    assert status == 200, body
    # Disabling ended the other sessions, the one that enrolled among them.
    status, body, _ = http("POST", base + "/v1/auth/logout", {}, mine)
    assert (status, error_reason(body)) == (401, "SESSION_REVOKED")
    status, plain, _ = http("POST", base + "/v1/auth/login", credentials)
    assert status == 200 and plain["access_token"] and plain["mfa_required"] is False
