"""The operator path: the real grpcurl against a real server (reflection, health)."""

from __future__ import annotations

import json
import subprocess

from tests.support import STRONG_PASSWORD, new_login

UNAUTHENTICATED_EXIT = 64 + 16  # grpcurl exits with 64 + the gRPC status code


def run(grpcurl: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([grpcurl, "-plaintext", *args], capture_output=True, text=True, timeout=30)


def test_list_shows_services_and_health(grpcurl, served):
    result = run(grpcurl, served.address, "list")
    assert result.returncode == 0, result.stderr
    services = set(result.stdout.split())
    assert {"identity.v1.AuthService", "identity.v1.RbacService", "grpc.health.v1.Health"} <= services


def test_describe_works(grpcurl, served):
    result = run(grpcurl, served.address, "describe", "identity.v1.AuthService")
    assert result.returncode == 0, result.stderr
    assert "rpc Login ( .identity.v1.LoginRequest ) returns ( .identity.v1.LoginResponse )" in result.stdout
    assert 'post:"/v1/auth/login"' in result.stdout
    result = run(grpcurl, served.address, "describe", "identity.v1.RegisterRequest")
    assert "string password = 2;" in result.stdout


def test_describe_resolves_method_symbols(grpcurl, served):
    for method, signature in (
        ("identity.v1.AuthService.Login", "rpc Login ( .identity.v1.LoginRequest )"),
        (
            "identity.v1.RbacService.CheckPermission",
            "rpc CheckPermission ( .identity.v1.CheckPermissionRequest )",
        ),
        ("grpc.health.v1.Health.Check", "rpc Check ( .grpc.health.v1.HealthCheckRequest )"),
    ):
        result = run(grpcurl, served.address, "describe", method)
        assert result.returncode == 0, result.stderr
        assert f"{method} is a method" in result.stdout
        assert signature in result.stdout
    unknown = run(grpcurl, served.address, "describe", "identity.v1.AuthService.NoSuchMethod")
    assert unknown.returncode != 0
    assert "not found" in unknown.stderr.lower()


def test_health_check_answers_serving(grpcurl, served):
    for service in ("", "identity.v1.AuthService", "identity.v1.RbacService"):
        result = run(
            grpcurl, "-d", json.dumps({"service": service}), served.address, "grpc.health.v1.Health/Check"
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["status"] == "SERVING"


def test_register_and_login_with_json(grpcurl, served):
    login = new_login("ops")
    body = json.dumps({"login": login, "password": STRONG_PASSWORD})
    registered = run(grpcurl, "-d", body, served.address, "identity.v1.AuthService/Register")
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["user"]["login"] == login
    logged_in = run(grpcurl, "-d", body, served.address, "identity.v1.AuthService/Login")
    assert logged_in.returncode == 0, logged_in.stderr
    tokens = json.loads(logged_in.stdout)
    assert tokens["access_token"] and tokens["refresh_token"].startswith("rt_")

    wrong = run(
        grpcurl,
        "-d",
        json.dumps({"login": login, "password": "not it at all"}),
        served.address,
        "identity.v1.AuthService/Login",
    )
    assert wrong.returncode == UNAUTHENTICATED_EXIT
    assert "INVALID_CREDENTIALS" in wrong.stdout + wrong.stderr
