"""`identity doctor`: healthy, then with each dependency broken in turn. Every broken
dependency is a database name, port or file of this test's own."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from identity.cli.main import app
from identity.domain.partitions import add_months, month_start
from identity.store.migrate import head_revision, upgrade
from tests.e2e.conftest import BIN, free_port
from tests.support import REDIS_URL, TEST_SECRET_KEY, fresh_database, url_for

pytestmark = pytest.mark.e2e


def env_for(url: str, **extra: str) -> dict[str, str | None]:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("IDENTITY_")}
    env.update(
        IDENTITY_DATABASE_URL=url,
        IDENTITY_REDIS_URL=REDIS_URL,
        IDENTITY_SECRET_KEY=TEST_SECRET_KEY,
        IDENTITY_LOG_LEVEL="warning",
        IDENTITY_DB_TIMEOUT_SECONDS="3",
    )
    env.update(extra)
    return env


def doctor(url: str, **extra: str) -> tuple[int, dict[str, tuple[str, str]]]:
    saved = structlog.get_config()
    try:
        result = CliRunner().invoke(app, ["doctor", "--json"], env=env_for(url, **extra))
    finally:
        structlog.configure(**saved)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    checks = {c["check"]: (c["status"], c["detail"]) for c in json.loads(result.stdout)}
    return result.exit_code, checks


@pytest.fixture(scope="module")
def healthy_url() -> Iterator[str]:
    with fresh_database("identity_doctor") as url:
        upgrade(url)
        made = subprocess.run(
            [str(BIN / "identity"), "keys", "rotate"],
            env={k: v for k, v in env_for(url).items() if v is not None} | {"PATH": os.environ["PATH"]},
            capture_output=True,
            text=True,
        )
        assert made.returncode == 0, made.stderr
        yield url


def test_healthy(healthy_url):
    code, checks = doctor(healthy_url)
    assert code == 0, checks
    expected = ["settings", "postgresql", "schema", "key ring", "signing key age", "partitions", "redis"]
    assert list(checks)[: len(expected)] == expected
    assert all(checks[name][0] == "ok" for name in [*expected, "envoy"]), checks
    assert checks["tls"][0] == "skip"


def test_human_output_is_one_line_per_check(healthy_url):
    env = {k: v for k, v in env_for(healthy_url).items() if v is not None} | {"PATH": os.environ["PATH"]}
    done = subprocess.run([str(BIN / "identity"), "doctor"], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stderr == ""
    lines = done.stdout.splitlines()
    assert len(lines) == 9 and all(line.split()[0] in {"ok", "skip"} for line in lines)


def test_invalid_setting():
    code, checks = doctor(url_for("identity"), IDENTITY_ACCESS_TOKEN_TTL_SECONDS="soon")
    assert code == 1 and checks["settings"][0] == "fail"
    assert "IDENTITY_ACCESS_TOKEN_TTL_SECONDS" in checks["settings"][1]


def test_postgres_missing_database_and_closed_port():
    name = f"identity_missing_{secrets.token_hex(4)}"
    code, checks = doctor(url_for(name))
    assert code == 1 and checks["postgresql"] == ("fail", checks["postgresql"][1])
    assert f"'{name}' does not exist" in checks["postgresql"][1]
    for dependent in ("schema", "key ring", "signing key age", "partitions"):
        assert checks[dependent][0] == "skip"
    assert checks["redis"][0] == "ok"
    port = free_port()
    code, checks = doctor(f"postgresql://postgres@127.0.0.1:{port}/identity")
    assert code == 1 and "not reachable" in checks["postgresql"][1] and str(port) in checks["postgresql"][1]


def test_redis_down(healthy_url):
    port = free_port()
    code, checks = doctor(healthy_url, IDENTITY_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    assert code == 1 and checks["redis"][0] == "fail" and str(port) in checks["redis"][1]
    assert checks["postgresql"][0] == "ok"


def test_schema_behind_head():
    with fresh_database("identity_doctor_old") as url:
        upgrade(url, "0002")
        code, checks = doctor(url)
    expected = f"at 0002, head is {head_revision()}; run `identity migrate`"
    assert code == 1 and checks["schema"] == ("fail", expected)


def test_key_ring_with_another_secret_or_none(healthy_url):
    code, checks = doctor(healthy_url, IDENTITY_SECRET_KEY="another-secret-" + "x" * 32)
    assert code == 1 and "does not match the key ring" in checks["key ring"][1]
    code, checks = doctor(healthy_url, IDENTITY_SECRET_KEY="")
    assert code == 1 and checks["key ring"][0] == "fail" and "not set" in checks["key ring"][1]


def test_no_key_ring_and_missing_partition():
    with fresh_database("identity_doctor_bare") as url:
        upgrade(url)
        next_month = add_months(month_start(dt.datetime.now(dt.UTC)), 1)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP TABLE login_history_{next_month:%Y_%m}")
        code, checks = doctor(url)
    assert code == 1
    assert checks["key ring"][0] == "fail" and "no active signing key" in checks["key ring"][1]
    assert checks["partitions"][0] == "fail" and f"{next_month:%Y-%m}" in checks["partitions"][1]


def test_old_signing_key_is_a_warning(healthy_url):
    with psycopg.connect(healthy_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE signing_keys SET activated_at = now() - interval '100 days' WHERE state = 'active'"
        )
    try:
        code, checks = doctor(healthy_url)
    finally:
        with psycopg.connect(healthy_url, autocommit=True) as conn:
            conn.execute("UPDATE signing_keys SET activated_at = now() WHERE state = 'active'")
    assert code == 0 and checks["signing key age"][0] == "warn"
    assert (
        "100 day(s)" in checks["signing key age"][1]
        and "identity keys rotate" in checks["signing key age"][1]
    )


def test_envoy_absent_is_a_warning(healthy_url, monkeypatch):
    import identity.gateway

    def absent() -> str:
        raise FileNotFoundError("envoy not found")

    monkeypatch.setattr(identity.gateway, "find_envoy", absent)
    code, checks = doctor(healthy_url)
    assert code == 0 and checks["envoy"][0] == "warn"


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "identity.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_tls_files_are_checked_when_set(healthy_url, tmp_path):
    cert, key = _self_signed(tmp_path)
    code, checks = doctor(healthy_url, IDENTITY_TLS_CERT_FILE=str(cert), IDENTITY_TLS_KEY_FILE=str(key))
    assert code == 0 and checks["tls cert"][0] == "ok" and checks["tls key"][0] == "ok"
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate\n")
    code, checks = doctor(
        healthy_url,
        IDENTITY_TLS_CERT_FILE=str(key),  # a key where a certificate belongs
        IDENTITY_TLS_KEY_FILE=str(tmp_path / "absent.pem"),
        IDENTITY_TLS_CLIENT_CA_FILE=str(not_pem),
    )
    assert code == 1
    assert checks["tls cert"] == ("fail", f"IDENTITY_TLS_CERT_FILE: {key} is not a PEM certificate")
    assert checks["tls key"][0] == "fail" and "cannot read" in checks["tls key"][1]
    assert checks["tls client-ca"][0] == "fail"
