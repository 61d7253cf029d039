"""Every `identity` command, as the real executable, in each operator mistake: no
traceback, at most two lines on stderr, a non-zero exit, and a message naming the cause.
Missing databases and closed ports are names and ports that do not exist: the shared
servers are never touched."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import structlog
from typer.testing import CliRunner

from identity.cli.main import app
from identity.store.migrate import upgrade
from tests.e2e.conftest import BIN, free_port
from tests.support import REDIS_URL, STRONG_PASSWORD, TEST_SECRET_KEY, fresh_database, url_for

pytestmark = pytest.mark.e2e

LOGIN = "nobody-" + secrets.token_hex(3)
# Every command that reaches PostgreSQL (config and gateway read no database).
COMMANDS: dict[str, list[str]] = {
    "serve": ["serve"],
    "migrate": ["migrate"],
    "downgrade": ["downgrade", "--revision", "head", "--yes"],  # nothing to undo where it works
    "doctor": ["doctor"],
    "keys list": ["keys", "list"],
    "keys rotate": ["keys", "rotate"],
    "sessions list": ["sessions", "list", "--login", LOGIN],
    "sessions revoke": ["sessions", "revoke", "--login", LOGIN, "--all"],
    "partitions ensure": ["partitions", "ensure"],
    "partitions list": ["partitions", "list"],
    "partitions prune": ["partitions", "prune", "--dry-run"],
    "roles list": ["roles", "list"],
    "roles show": ["roles", "show", "superuser"],
    "roles create": ["roles", "create", "role-" + secrets.token_hex(3), "-p", "films.read"],
    "roles update": ["roles", "update", "superuser", "--description", "every permission"],
    "roles delete": ["roles", "delete", "no-such-role"],
    "roles grant": ["roles", "grant", "--login", LOGIN, "--role", "superuser"],
    "roles revoke": ["roles", "revoke", "--login", LOGIN, "--role", "superuser"],
    "users create-superuser": ["users", "create-superuser", "--login", "admin-" + secrets.token_hex(3)],
    "users show": ["users", "show", "--login", LOGIN],
    "users permissions": ["users", "permissions", "--login", LOGIN],
    "users unlock": ["users", "unlock", "--login", LOGIN],
    "users disable": ["users", "disable", "--login", LOGIN],
    "users enable": ["users", "enable", "--login", LOGIN],
    "service-keys create": ["service-keys", "create", "peer-" + secrets.token_hex(3)],
    "service-keys list": ["service-keys", "list"],
    "service-keys revoke": ["service-keys", "revoke", "no-such-peer"],
}
NEEDS_SECRET = {"serve", "keys rotate"}
AS_PROCESS = {"serve", "migrate", "downgrade", "doctor", "keys rotate"}


@dataclass(frozen=True)
class Outcome:
    command: str
    code: int
    stdout: str
    stderr: str

    @property
    def said(self) -> str:
        return self.stdout + self.stderr


def env_for(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
    env.update(
        IDENTITY_DATABASE_URL=database_url,
        IDENTITY_REDIS_URL=REDIS_URL,
        IDENTITY_REDIS_PREFIX=f"identity-ops-{secrets.token_hex(3)}:",
        IDENTITY_SECRET_KEY=TEST_SECRET_KEY,
        IDENTITY_GRPC_LISTEN="127.0.0.1:0",
        IDENTITY_BCRYPT_ROUNDS="4",
        IDENTITY_DB_TIMEOUT_SECONDS="3",
    )
    env.update(extra)
    return {k: v for k, v in env.items() if v != "<unset>"}


def run(name: str, env: dict[str, str], args: list[str] | None = None) -> Outcome:
    """The real executable, as an operator runs it."""
    done = subprocess.run(
        [str(BIN / "identity"), *(args or COMMANDS[name])],
        env=env,
        input=STRONG_PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    return Outcome(name, done.returncode, done.stdout, done.stderr)


def run_in_process(name: str, env: dict[str, str]) -> Outcome:
    """The same command through the same root (OperatorGroup.main) without starting an
    interpreter: an exception escaping it would be a traceback on a terminal."""
    overrides: dict[str, str | None] = {k: None for k in os.environ if k.startswith("IDENTITY_")}
    overrides.update(env)
    saved = structlog.get_config()
    try:
        result = CliRunner().invoke(app, COMMANDS[name], env=overrides, input=STRONG_PASSWORD + "\n")
    finally:
        structlog.configure(**saved)
    escaped = result.exception if not isinstance(result.exception, SystemExit) else None
    stderr = result.stderr + ("Traceback (escaped): " + repr(escaped) if escaped else "")
    return Outcome(name, result.exit_code, result.stdout, stderr)


def run_all(names: list[str], env: dict[str, str]) -> list[Outcome]:
    """The commands that start servers or run Alembic as real processes (in parallel);
    the rest in-process, which is as faithful and a hundred times quicker."""
    real = [name for name in names if name in AS_PROCESS]
    with ThreadPoolExecutor(max_workers=3) as pool:
        started = list(pool.map(lambda name: run(name, env), real))
    return started + [run_in_process(name, env) for name in names if name not in AS_PROCESS]


def assert_clean_failure(outcome: Outcome, *causes: str) -> None:
    where = f"{outcome.command}: exit {outcome.code}\n{outcome.stdout}\n{outcome.stderr}"
    assert outcome.code != 0, where
    assert "Traceback" not in outcome.said, where
    assert len(outcome.stderr.strip().splitlines()) <= 2, where
    for cause in causes:
        assert cause in outcome.said, f"the message does not name {cause!r}: {where}"


@pytest.fixture(scope="module")
def ring_url():
    """A database of its own whose key ring was made with TEST_SECRET_KEY."""
    with fresh_database("identity_ops") as url:
        upgrade(url)
        made = run("keys rotate", env_for(url))
        assert made.code == 0, made
        yield url


def test_missing_database():
    name = f"identity_missing_{secrets.token_hex(4)}"
    for outcome in run_all(list(COMMANDS), env_for(url_for(name))):
        assert_clean_failure(outcome, f"database '{name}' does not exist")


def test_closed_database_port():
    port = free_port()  # bound a moment ago and let go: nothing listens there
    for outcome in run_all(list(COMMANDS), env_for(f"postgresql://postgres@127.0.0.1:{port}/identity")):
        assert_clean_failure(outcome, f"127.0.0.1:{port}", "not reachable")


def test_invalid_setting_is_named():
    env = env_for(url_for("identity"), IDENTITY_DB_POOL_MAX="lots")
    for outcome in run_all(list(COMMANDS), env):
        assert_clean_failure(outcome, "IDENTITY_DB_POOL_MAX")


def test_missing_secret_stops_only_what_needs_it(ring_url):
    outcomes = run_all(list(COMMANDS), env_for(ring_url, IDENTITY_SECRET_KEY="<unset>"))
    for outcome in outcomes:
        if outcome.command in NEEDS_SECRET:
            assert_clean_failure(outcome, "IDENTITY_SECRET_KEY", "IDENTITY_SECRET_KEY_FILE")
        elif outcome.command != "doctor":
            assert "SECRET_KEY" not in outcome.said, outcome
            assert "Traceback" not in outcome.said, outcome
    by_name = {o.command: o for o in outcomes}
    for read_only in ("keys list", "roles list", "roles show", "partitions list", "service-keys list"):
        assert by_name[read_only].code == 0, by_name[read_only]
    # Unknown login: a clean domain error, not a request for the secret.
    assert_clean_failure(by_name["users show"], "USER_NOT_FOUND")
    # doctor says which check failed, on stdout, one line each.
    assert by_name["doctor"].code == 1
    assert "key ring" in by_name["doctor"].stdout and "IDENTITY_SECRET_KEY" in by_name["doctor"].stdout


def test_secret_key_file_is_read(ring_url, tmp_path):
    secret_file = tmp_path / "secret-key"
    secret_file.write_text(TEST_SECRET_KEY + "\n")
    env = env_for(ring_url, IDENTITY_SECRET_KEY="<unset>", IDENTITY_SECRET_KEY_FILE=str(secret_file))
    doctor = run("doctor", env)
    assert "opens with this secret" in doctor.stdout, doctor
    missing = run("keys rotate", {**env, "IDENTITY_SECRET_KEY_FILE": str(tmp_path / "absent")})
    assert_clean_failure(missing, "IDENTITY_SECRET_KEY_FILE", "absent")
    both = run("keys list", {**env, "IDENTITY_SECRET_KEY": TEST_SECRET_KEY})
    assert_clean_failure(both, "not both")


def test_wrong_secret_says_it_does_not_match_the_key_ring(ring_url):
    def ring() -> list[tuple[str, str]]:
        listed = run("keys list", env_for(ring_url), ["keys", "list", "--json"])
        return sorted((key["kid"], key["state"]) for key in json.loads(listed.stdout))

    before = ring()
    wrong = env_for(ring_url, IDENTITY_SECRET_KEY="another-secret-" + "w" * 32)
    for outcome in run_all(["serve", "keys rotate"], wrong):
        assert_clean_failure(outcome, "does not match the key ring")
    # The refused rotation added no key sealed with the wrong secret.
    assert ring() == before


def test_busy_port_is_refused_before_anything_else():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        # A missing database too: the port must be what the message is about.
        env = env_for(
            url_for(f"identity_missing_{secrets.token_hex(4)}"), IDENTITY_GRPC_LISTEN=f"127.0.0.1:{port}"
        )
        outcome = run("serve", env)
    assert_clean_failure(outcome, f"port {port} is in use")


def test_unknown_revision(ring_url):
    env = env_for(ring_url)
    for args in (["migrate", "--revision", "9999"], ["downgrade", "--revision", "9999", "--yes"]):
        assert_clean_failure(run(args[0], env, args), "unknown revision '9999'", "0001")


def test_usage_mistake_is_short():
    outcome = run("users show", env_for(url_for("identity")), ["users", "show"])
    assert_clean_failure(outcome, "--login")
    assert outcome.code == 2


def test_traceback_only_when_debugging():
    env = env_for(url_for(f"identity_missing_{secrets.token_hex(4)}"))
    quiet = run("keys list", env)
    assert_clean_failure(quiet, "does not exist")
    for debug_env, args in (
        (env, ["--debug", "keys", "list"]),
        ({**env, "IDENTITY_LOG_LEVEL": "debug"}, None),
    ):
        loud = run("keys list", debug_env, args)
        assert loud.code == 1
        assert "Traceback" in loud.stderr and "does not exist" in loud.stderr.splitlines()[-2]
