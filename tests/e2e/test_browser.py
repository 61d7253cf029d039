"""The website flow in a real headless Chromium (Debian `chromium`): a page from the
allowed origin registers, logs in and reads its sessions through the gateway; the
same page from another origin cannot make the gateway act, not even with a "simple"
cross-site POST that a browser sends without asking first."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from tests.e2e.conftest import GATEWAY_SOURCE, Gateway, ServerProcess, http, start_gateway
from tests.support import STRONG_PASSWORD, new_login

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Lets the page's fetches finish before the DOM is dumped.
    "--virtual-time-budget=15000",
    "--dump-dom",
)

ALLOWED_PAGE = """
const out = {};
const json = {"content-type": "application/json"};
const password = PASSWORD;
async function reason(response) { return (await response.json()).details[0].reason; }
async function run() {
  let r = await fetch(GATEWAY + "/v1/auth/register", {method: "POST",
      headers: {...json, "x-request-id": "browser-register-1"},
      body: JSON.stringify({login: LOGIN, password})});
  out.register = r.status;
  out.requestId = r.headers.get("x-request-id");
  r = await fetch(GATEWAY + "/v1/auth/login", {method: "POST", headers: json,
      body: JSON.stringify({login: LOGIN, password})});
  const tokens = await r.json();
  out.login = r.status;
  r = await fetch(GATEWAY + "/v1/account/sessions",
      {headers: {authorization: "Bearer " + tokens.access_token}});
  out.sessions = (await r.json()).sessions.length;
  r = await fetch(GATEWAY + "/v1/auth/login", {method: "POST", headers: json,
      body: JSON.stringify({login: LOGIN, password: "not the password"})});
  out.wrongPassword = [r.status, await reason(r)];
  // fetch's default body type is text/plain: refused, and the page can read why.
  r = await fetch(GATEWAY + "/v1/auth/register",
      {method: "POST", body: JSON.stringify({login: OTHER, password})});
  out.textPlain = [r.status, await reason(r)];
}
"""

REFUSED_PAGE = """
const out = {};
const password = PASSWORD;
async function run() {
  // What a hostile page can do without a preflight: an opaque "simple request".
  try {
    await fetch(GATEWAY + "/v1/auth/register", {method: "POST", mode: "no-cors",
        body: JSON.stringify({login: LOGIN, password})});
    out.simplePost = "sent";
  } catch (e) { out.simplePost = "error"; }
  // A JSON request needs a preflight, which the gateway refuses.
  try {
    await fetch(GATEWAY + "/v1/auth/register", {method: "POST", headers: {"content-type": "application/json"},
        body: JSON.stringify({login: OTHER, password})});
    out.jsonPost = "answered";
  } catch (e) { out.jsonPost = "blocked"; }
  try {
    await fetch(GATEWAY + "/v1/auth/jwks");
    out.jwks = "answered";
  } catch (e) { out.jwks = "blocked"; }
}
"""

PAGE = """<!doctype html><html><body><pre id="out">pending</pre><script>
const GATEWAY = {gateway}; const LOGIN = {login}; const OTHER = {other}; const PASSWORD = {password};
{script}
run().catch(e => {{ out.error = String(e); }})
     .finally(() => {{ document.getElementById("out").textContent = JSON.stringify(out); }});
</script></body></html>"""


@pytest.fixture(scope="module")
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("the Debian package chromium is not installed (.ci/run installs it as root)")
    return found


class Pages:
    """Serves the test page on one port, so that http://localhost:P and
    http://127.0.0.1:P are two origins with the same content server."""

    def __init__(self, gateway_url: str = "") -> None:
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                script = ALLOWED_PAGE if query.get("page") == "allowed" else REFUSED_PAGE
                body = PAGE.format(
                    gateway=json.dumps(pages.gateway_url),
                    login=json.dumps(query["login"]),
                    other=json.dumps(query["other"]),
                    password=json.dumps(STRONG_PASSWORD),
                    script=script,
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.gateway_url = gateway_url
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def site(served: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Pages, Gateway]]:
    pages = Pages()
    gateway = start_gateway(
        served.address,
        tmp_path_factory.mktemp("browser-gateway"),
        "--cors-origin",
        f"http://localhost:{pages.port}",
        "--upstream-source",
        GATEWAY_SOURCE,
    )
    pages.gateway_url = gateway.base_url
    yield pages, gateway
    gateway.stop()
    pages.close()


def run_page(chromium: str, url: str, profile: Path) -> dict[str, object]:
    result = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r'<pre id="out">(.*?)</pre>', result.stdout, re.DOTALL)
    assert match is not None, result.stdout[-2000:] + result.stderr[-2000:]
    text = html.unescape(match[1])
    assert text != "pending", "the page did not finish"
    parsed: dict[str, object] = json.loads(text)
    return parsed


def test_the_website_flow_from_the_allowed_origin(chromium: str, site, tmp_path: Path) -> None:
    pages, _ = site
    login, other = new_login("browser"), new_login("browser")
    url = f"http://localhost:{pages.port}/?page=allowed&login={login}&other={other}"
    out = run_page(chromium, url, tmp_path / "profile")
    assert "error" not in out, out
    assert out["register"] == 200 and out["login"] == 200 and out["sessions"] == 1
    assert out["requestId"] == "browser-register-1"
    assert out["wrongPassword"] == [401, "INVALID_CREDENTIALS"]
    assert out["textPlain"] == [415, "UNSUPPORTED_MEDIA_TYPE"]


def test_a_page_from_another_origin_cannot_make_the_gateway_act(chromium: str, site, tmp_path: Path) -> None:
    pages, gateway = site
    victim, other = new_login("victim"), new_login("victim")
    url = f"http://127.0.0.1:{pages.port}/?page=refused&login={victim}&other={other}"
    out = run_page(chromium, url, tmp_path / "profile")
    assert "error" not in out, out
    assert out["simplePost"] == "sent"  # the browser did send it...
    assert out["jsonPost"] == "blocked" and out["jwks"] == "blocked"
    # ...and neither account exists: registering both now succeeds.
    for login in (victim, other):
        status, body, _ = http(
            "POST", gateway.base_url + "/v1/auth/register", {"login": login, "password": STRONG_PASSWORD}
        )
        assert status == 200, body
