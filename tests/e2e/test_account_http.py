"""The website's account pages through a real Envoy transcoder to a real server:
change password and login, list and revoke sessions, log out the others, page
through the login history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from tests.e2e.conftest import error_reason, http
from tests.support import STRONG_PASSWORD, new_login

NEW_PASSWORD = "another long passphrase for the website"


class WebUser:
    """A user of the website: registered once, then logged in from several 'devices'."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.login = new_login("web")
        self.password = STRONG_PASSWORD
        status, body, _ = http(
            "POST", base + "/v1/auth/register", {"login": self.login, "password": self.password}
        )
        assert status == 200, body

    def log_in(self, password: str | None = None) -> dict:
        status, tokens, _ = http(
            "POST", self.base + "/v1/auth/login", {"login": self.login, "password": password or self.password}
        )
        assert status == 200, tokens
        return tokens


def bearer(tokens: dict) -> dict[str, str]:
    return {"authorization": f"Bearer {tokens['access_token']}"}


def test_change_password_over_http(gateway):
    user = WebUser(gateway.base_url)
    laptop, phone = user.log_in(), user.log_in()
    status, body, _ = http(
        "POST",
        gateway.base_url + "/v1/account/password",
        {"current_password": user.password, "new_password": NEW_PASSWORD},
        bearer(laptop),
    )
    assert status == 200, body
    assert body == {"revoked_count": 1}
    status, body, _ = http(
        "POST", gateway.base_url + "/v1/auth/login", {"login": user.login, "password": user.password}
    )
    assert status == 401 and error_reason(body) == "INVALID_CREDENTIALS"
    user.log_in(NEW_PASSWORD)
    status, body, _ = http("GET", gateway.base_url + "/v1/account/sessions", None, bearer(phone))
    assert status == 401 and error_reason(body) == "SESSION_REVOKED"
    status, _, _ = http("GET", gateway.base_url + "/v1/account/sessions", None, bearer(laptop))
    assert status == 200

    # Wrong current password, then a policy violation: clear statuses and reasons.
    status, body, _ = http(
        "POST",
        gateway.base_url + "/v1/account/password",
        {"current_password": "not the password", "new_password": "yet another fine passphrase"},
        bearer(laptop),
    )
    # A typo is a 400 naming the field, not a 401: the web app must not log the user out.
    assert status == 400 and error_reason(body) == "PASSWORD_INCORRECT"
    status, _, _ = http("GET", gateway.base_url + "/v1/account/sessions", None, bearer(laptop))
    assert status == 200
    status, body, _ = http(
        "POST",
        gateway.base_url + "/v1/account/password",
        {"current_password": NEW_PASSWORD, "new_password": "short"},
        bearer(laptop),
    )
    assert status == 400 and error_reason(body) == "PASSWORD_TOO_SHORT"
    violations = [d for d in body["details"] if d["@type"].endswith("google.rpc.BadRequest")]
    assert violations[0]["field_violations"][0]["field"] == "new_password"


def test_change_login_over_http(gateway):
    user = WebUser(gateway.base_url)
    tokens = user.log_in()
    renamed = new_login("renamed")
    status, body, _ = http(
        "POST",
        gateway.base_url + "/v1/account/login",
        {"new_login": renamed, "password": user.password},
        bearer(tokens),
    )
    assert status == 200, body
    assert body["user"]["login"] == renamed and body["user"]["id"] == tokens["user_id"]
    other = WebUser(gateway.base_url)
    status, body, _ = http(
        "POST",
        gateway.base_url + "/v1/account/login",
        {"new_login": other.login.upper(), "password": user.password},
        bearer(tokens),
    )
    assert status == 409 and error_reason(body) == "LOGIN_TAKEN"


def test_list_and_revoke_sessions_over_http(gateway):
    user = WebUser(gateway.base_url)
    first, second, third = user.log_in(), user.log_in(), user.log_in()
    url = gateway.base_url + "/v1/account/sessions"
    status, page, _ = http("GET", url + "?page_size=2", None, bearer(third))
    assert status == 200, page
    assert [s["id"] for s in page["sessions"]] == [third["session_id"], second["session_id"]]
    assert [s["current"] for s in page["sessions"]] == [True, False]
    newest = page["sessions"][0]
    assert newest["ip"] and newest["create_time"].endswith("Z") and newest["expire_time"]
    status, rest, _ = http(
        "GET",
        url + "?" + urlencode({"page_size": 2, "page_token": page["next_page_token"]}),
        None,
        bearer(third),
    )
    assert status == 200, rest
    assert [s["id"] for s in rest["sessions"]] == [first["session_id"]]
    assert rest["next_page_token"] == ""

    status, body, _ = http("DELETE", f"{url}/{first['session_id']}", None, bearer(third))
    assert status == 200, body
    status, body, _ = http("GET", url, None, bearer(first))
    assert status == 401 and error_reason(body) == "SESSION_REVOKED"
    status, body, _ = http(
        "POST", gateway.base_url + "/v1/auth/refresh", {"refresh_token": first["refresh_token"]}
    )
    assert status == 401

    stranger = WebUser(gateway.base_url).log_in()
    status, body, _ = http("DELETE", f"{url}/{stranger['session_id']}", None, bearer(third))
    assert status == 404 and error_reason(body) == "SESSION_NOT_FOUND"
    status, body, _ = http("DELETE", f"{url}/not-a-uuid", None, bearer(third))
    assert status == 400 and error_reason(body) == "INVALID_FIELD"
    status, body, _ = http("GET", url + "?page_token=forged.token", None, bearer(third))
    assert status == 400 and error_reason(body) == "PAGE_TOKEN_INVALID"
    status, body, _ = http("GET", url)
    assert status == 401 and error_reason(body) == "TOKEN_MISSING"


def test_logout_other_sessions_over_http(gateway):
    user = WebUser(gateway.base_url)
    keep, drop_a, drop_b = user.log_in(), user.log_in(), user.log_in()
    status, body, _ = http("POST", gateway.base_url + "/v1/account/sessions/logout-others", {}, bearer(keep))
    assert status == 200, body
    assert body == {"revoked_count": 2}
    for dropped in (drop_a, drop_b):
        status, body, _ = http(
            "POST", gateway.base_url + "/v1/auth/validate", {"access_token": dropped["access_token"]}
        )
        assert status == 200 and body["valid"] is False and body["reason"] == "ERROR_REASON_SESSION_REVOKED"
    status, body, _ = http("GET", gateway.base_url + "/v1/account/sessions", None, bearer(keep))
    assert [s["id"] for s in body["sessions"]] == [keep["session_id"]]


def test_login_history_pages_over_http(gateway):
    user = WebUser(gateway.base_url)
    status, _, _ = http(
        "POST", gateway.base_url + "/v1/auth/login", {"login": user.login, "password": "wrong!!!!"}
    )
    assert status == 401
    for _ in range(3):
        tokens = user.log_in()
    url = gateway.base_url + "/v1/account/login-history"
    entries, token = [], ""
    while True:
        query = {"page_size": 2, **({"page_token": token} if token else {})}
        status, page, _ = http("GET", url + "?" + urlencode(query), None, bearer(tokens))
        assert status == 200, page
        assert len(page["entries"]) <= 2
        entries.extend(page["entries"])
        token = page["next_page_token"]
        if not token:
            break
    assert [e["outcome"] for e in entries] == ["LOGIN_OUTCOME_SUCCESS"] * 3 + [
        "LOGIN_OUTCOME_BAD_CREDENTIALS"
    ]
    assert entries[0]["session_id"] == tokens["session_id"] and entries[-1]["session_id"] == ""
    assert all(e["ip"] and e["login_time"] for e in entries)

    # A time range in RFC 3339, as a browser sends it.
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    status, page, _ = http("GET", url + "?" + urlencode({"start_time": later}), None, bearer(tokens))
    assert status == 200 and page["entries"] == []
    status, body, _ = http(
        "GET", url + "?" + urlencode({"start_time": later, "end_time": later}), None, bearer(tokens)
    )
    assert status == 400 and error_reason(body) == "INVALID_FIELD"
    status, body, _ = http("GET", url + "?page_token=AAAA.BBBB", None, bearer(tokens))
    assert status == 400 and error_reason(body) == "PAGE_TOKEN_INVALID"
