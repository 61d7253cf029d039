"""The operator CLI's output: `--json` on every list/show command (stdout holds only
the document), `identity users show`, migrate that never goes down and a confirmed
downgrade, and progress counts for partition work when stderr is not a terminal."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta

import psycopg

from identity.store.migrate import current_revision, upgrade
from identity.v1 import auth_pb2
from tests.conftest import register_and_login
from tests.e2e.conftest import BIN
from tests.rbac_support import (
    OPERATOR,
    cli_env,
    give,
    identity_cli,
    make_role,
    new_permission,
    service_key,
)
from tests.support import STRONG_PASSWORD, fresh_database, new_login


async def json_of(database_url: str, *args: str) -> object:
    result = await identity_cli(database_url, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def test_every_list_and_show_command_speaks_json(auth, services, database_url):
    account = await register_and_login(auth)
    permission = new_permission()
    role = await give(services, account.user_id, permission)
    await service_key(services, "json-peer")

    keys = await json_of(database_url, "keys", "list")
    assert {k["state"] for k in keys} >= {"active", "next"}
    roles = await json_of(database_url, "roles", "list")
    assert role.name in {r["name"] for r in roles}
    shown = await json_of(database_url, "roles", "show", role.name)
    assert shown["id"] == str(role.id) and shown["permissions"] == [permission]
    sessions = await json_of(database_url, "sessions", "list", "--login", account.login)
    assert [s["id"] for s in sessions["sessions"]] == [account.session_id]
    partitions = await json_of(database_url, "partitions", "list")
    assert partitions[-1]["default"] is True and all(isinstance(p["rows"], int) for p in partitions)
    service_keys = await json_of(database_url, "service-keys", "list", "json-peer")
    assert [k["name"] for k in service_keys] == ["json-peer"] and service_keys[0]["revoked_at"] is None
    effective = await json_of(database_url, "users", "permissions", "--login", account.login)
    assert effective["permissions"] == [{"permission": permission, "granted_by": [role.name]}]
    config = await json_of(database_url, "config")
    assert config["IDENTITY_SECRET_KEY_FILE"] == ""


async def test_users_show_gives_the_account_at_a_glance(auth, services, database_url):
    account = await register_and_login(auth)
    await auth.Login(auth_pb2.LoginRequest(login=account.login, password=account.password))
    expiring = await make_role(services, new_permission())
    expires_at = datetime.now(UTC) + timedelta(days=2)
    await services.roles.assign_role(OPERATOR, account.user_id, str(expiring.id), expires_at)
    shown = await json_of(database_url, "users", "show", "--login", account.login)
    assert shown["login"] == account.login and shown["disabled"] is False and shown["locked"] is False
    assert shown["mfa"] == "off" and shown["failed_logins"] == 0
    assert [(r["name"], r["expires_at"][:16]) for r in shown["roles"]] == [
        (expiring.name, expires_at.isoformat()[:16])
    ]
    assert len(shown["sessions"]) == 2
    assert [e["outcome"] for e in shown["last_logins"]] == ["SUCCESS", "SUCCESS"]

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE users SET failed_logins = 100 WHERE id = %s", (account.user_id,))
        conn.execute(
            "INSERT INTO totp_factors (user_id, secret_encrypted) VALUES (%s, %s)", (account.user_id, b"x")
        )
    pending = await json_of(database_url, "users", "show", "--login", account.login)
    assert pending["mfa"] == "pending" and pending["locked"] is True and pending["failed_logins"] == 100
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE totp_factors SET confirmed_at = now() WHERE user_id = %s", (account.user_id,))
        for code in (b"a", b"b"):
            conn.execute(
                "INSERT INTO recovery_codes (user_id, code_hash) VALUES (%s, %s)", (account.user_id, code)
            )
    assert (await identity_cli(database_url, "users", "disable", "--login", account.login)).exit_code == 0
    final = await json_of(database_url, "users", "show", "--login", account.login)
    assert final["mfa"] == "on" and final["recovery_codes_left"] == 2
    assert final["disabled"] is True and final["sessions"] == []

    human = await identity_cli(database_url, "users", "show", "--login", account.login)
    assert human.exit_code == 0
    assert "mfa:            on (2 recovery code(s) left)" in human.stdout
    assert "locked:         yes (100/100 failures)" in human.stdout
    assert f"{expiring.name}" in human.stdout and "disabled:       yes" in human.stdout


def test_logs_go_to_stderr_and_results_to_stdout(database_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
    env.update(cli_env(database_url), IDENTITY_LOG_LEVEL="info", IDENTITY_LOG_FORMAT="json")
    login = new_login("admin")
    done = subprocess.run(
        [str(BIN / "identity"), "users", "create-superuser", "--login", login],
        env=env,
        input=STRONG_PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"created superuser {login} (") and done.stdout.count("\n") == 1
    assert json.loads(done.stderr.splitlines()[0])["event"] == "superuser_created"


def _identity(url: str, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
    env.update(cli_env(url))
    return subprocess.run(
        [str(BIN / "identity"), *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


def test_migrate_never_goes_down_and_downgrade_is_confirmed():
    with fresh_database("identity_migrate_cli") as url:
        step = _identity(url, "migrate", "--revision", "0002")
        assert step.returncode == 0 and step.stdout.strip() == "database at 0002", step
        assert current_revision(url) == "0002"
        upgrade(url)
        head = current_revision(url)
        assert head is not None and head > "0002"
        refused = _identity(url, "migrate", "--revision", "0002")
        assert refused.returncode == 1
        assert (
            f"the database is at {head}, past 0002" in refused.stderr
            and "identity downgrade" in refused.stderr
        )
        assert current_revision(url) == head

        unconfirmed = _identity(url, "downgrade", "--revision", "0002")  # stdin is not a terminal
        assert unconfirmed.returncode == 1 and "--yes" in unconfirmed.stderr
        assert current_revision(url) == head

        down = _identity(url, "downgrade", "--revision", "0002", "--yes")
        assert down.returncode == 0, down
        assert f"undoing {head}" in down.stderr and down.stdout.strip() == "database at 0002"
        assert current_revision(url) == "0002"
        again = _identity(url, "migrate")
        assert again.stdout.strip() == f"database at {head}"


def test_partition_work_counts_its_steps_off_a_terminal():
    months = 2
    with fresh_database("identity_progress") as url:
        upgrade(url)
        # Migration made this month and 3 ahead: 4 + months more.
        done = _identity(url, "partitions", "ensure", "--months-ahead", str(3 + months))
        assert done.returncode == 0, done
        counts = [line for line in done.stderr.splitlines() if line.startswith("partitions ensure: ")]
        assert [line.split()[2] for line in counts] == [f"{i}/{months}" for i in range(1, months + 1)]
        assert done.stdout.count("created login_history_") == months


def test_partition_work_draws_a_bar_on_a_terminal():
    import pty

    with fresh_database("identity_progress_tty") as url:
        upgrade(url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
        env.update(cli_env(url))
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            [str(BIN / "identity"), "partitions", "ensure", "--months-ahead", "5"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=follower,
        )
        os.close(follower)
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            drawn += chunk
        os.close(leader)
        stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 0
    text = drawn.decode(errors="replace")
    assert "partitions ensure" in text and "2/2" in text and "━" in text  # rich's bar
    assert "partitions ensure: 1/2" not in text  # the count lines are for non-terminals
    assert stdout.decode().count("created login_history_") == 2


def test_a_database_from_a_newer_release_is_named_not_touched():
    with fresh_database("identity_newer") as url:
        upgrade(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE alembic_version SET version_num = '0099'")
        for args in (("migrate",), ("downgrade", "--revision", "0001", "--yes")):
            done = _identity(url, *args)
            assert done.returncode == 1 and "Traceback" not in done.stderr, done
            assert "revision '0099'" in done.stderr and len(done.stderr.splitlines()) <= 2
        assert current_revision(url) == "0099"
