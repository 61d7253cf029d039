"""docker-compose.yml, the Dockerfile, .dockerignore and the README's Containers line,
checked against each other and against the CLI. Docker cannot run here, so this
reads the files: what `docker compose config` and a build would trip on, and the
traps an operator met (a secret made anew on every `up`, a `down` that needs it)."""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from identity.cli.main import app
from identity.config import env_names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
IGNORED = [
    line.strip()
    for line in (ROOT / ".dockerignore").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]
SECRET_FILE = "/var/lib/identity/secret-key"


def _ignored(path: str) -> bool:
    return any(fnmatch.fnmatch(path, pattern.removeprefix("**/")) for pattern in IGNORED)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    return {str(k): str(v) for k, v in env.items()}


def _volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> named volume."""
    mounts = {}
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        mounts[target] = source
    return mounts


def _identity_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in SERVICES.items() if s.get("image") == "identity:dev"}


def test_build_context_leaves_out_local_state_but_keeps_what_the_image_copies():
    for private in (".venv", ".dev", "node_modules", ".git"):
        assert _ignored(private), f".dockerignore must exclude {private}"
    copied = re.findall(r"^COPY\s+(\S+)\s+\S+", DOCKERFILE, flags=re.MULTILINE)
    assert copied, "the Dockerfile copies nothing?"
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
        assert not _ignored(source), f"COPY {source} is excluded by .dockerignore"


def test_image_runs_unprivileged_and_owns_the_secret_directory():
    users = re.findall(r"^USER\s+(\S+)", DOCKERFILE, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert f"chown {users[-1]}:{users[-1]} /var/lib/identity" in DOCKERFILE
    exposed = {int(p) for p in re.findall(r"^EXPOSE\s+(.+)$", DOCKERFILE, flags=re.MULTILINE)[0].split()}
    assert exposed == {50051, 8080}


def test_every_interpolation_has_a_default_so_down_needs_no_variable():
    text = (ROOT / "docker-compose.yml").read_text()
    for match in re.finditer(r"\$\{([^}]*)\}", text):
        assert ":-" in match.group(1), f"${{{match.group(1)}}} fails when unset (so would down)"
    assert "$(" not in text


def test_master_secret_is_made_once_in_a_volume_and_read_from_a_file():
    secret = SERVICES["secret"]
    volume = _volume_mounts(secret)["/var/lib/identity"]
    assert volume in COMPOSE["volumes"], "the secret must live in a named volume that outlives containers"
    for name, service in _identity_services().items():
        env = _environment(service)
        assert "IDENTITY_SECRET_KEY" not in env, f"{name}: the secret comes from the volume, not a variable"
        if "IDENTITY_SECRET_KEY_FILE" in env:
            assert env["IDENTITY_SECRET_KEY_FILE"] == SECRET_FILE
            assert _volume_mounts(service).get("/var/lib/identity") == volume, f"{name} cannot read it"
            depends = service.get("depends_on", {})
            assert depends.get("secret", {}).get("condition") == "service_completed_successfully", name
    assert "IDENTITY_SECRET_KEY_FILE" in _environment(SERVICES["identity"])


def test_secret_maker_makes_one_secret_and_keeps_it(tmp_path):
    script = SERVICES["secret"]["entrypoint"][2].replace(SECRET_FILE, str(tmp_path / "secret-key"))
    for _ in range(2):
        subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    first = (tmp_path / "secret-key").read_text()
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    assert (tmp_path / "secret-key").read_text() == first
    assert len(first.strip()) >= 32
    assert os.stat(tmp_path / "secret-key").st_mode & 0o077 == 0


def _parse(args: list[str]) -> None:
    command = typer.main.get_command(app)
    ctx = command.make_context("identity", list(args), resilient_parsing=False)
    sub = ctx.command.get_command(ctx, args[0])  # type: ignore[attr-defined]
    assert sub is not None, f"identity has no command {args[0]!r}"
    sub.make_context(args[0], list(args[1:]), parent=ctx)


def _gateway_envvars() -> set[str]:
    command = typer.main.get_command(app)
    gateway = command.get_command(None, "gateway")  # type: ignore[attr-defined]
    return {p.envvar for p in gateway.params if isinstance(getattr(p, "envvar", None), str)}


def test_services_run_real_commands_with_known_variables():
    settings_vars = {name for name, _ in env_names()}
    gateway_vars = _gateway_envvars()
    assert {"IDENTITY_CORS_ORIGINS", "IDENTITY_HTTP_LISTEN", "IDENTITY_GATEWAY_UPSTREAM"} <= gateway_vars
    for name, service in _identity_services().items():
        if "command" in service:
            _parse(service["command"])
        for variable in _environment(service):
            known = gateway_vars if service.get("command", [""])[0] == "gateway" else settings_vars
            assert variable in known, f"{name}: {variable} is read by nothing"


def test_gateway_settings_are_variables_and_point_at_the_server():
    env = _environment(SERVICES["envoy"])
    assert env["IDENTITY_CORS_ORIGINS"].startswith("${IDENTITY_CORS_ORIGINS")
    upstream_host, upstream_port = env["IDENTITY_GATEWAY_UPSTREAM"].split(":")
    assert upstream_host in SERVICES
    grpc_port = _environment(SERVICES["identity"])["IDENTITY_GRPC_LISTEN"].split(":")[1]
    assert upstream_port == grpc_port
    assert env["IDENTITY_HTTP_LISTEN"].endswith(":" + SERVICES["envoy"]["ports"][0].rsplit(":", 1)[1])


def test_healthchecks_probe_the_ports_the_services_listen_on():
    grpc_port = _environment(SERVICES["identity"])["IDENTITY_GRPC_LISTEN"].split(":")[1]
    assert f"127.0.0.1:{grpc_port}" in " ".join(SERVICES["identity"]["healthcheck"]["test"])
    assert SERVICES["identity"]["ports"] == [f"127.0.0.1:{grpc_port}:{grpc_port}"]
    http_port = _environment(SERVICES["envoy"])["IDENTITY_HTTP_LISTEN"].split(":")[1]
    assert f"127.0.0.1', {http_port}" in " ".join(SERVICES["envoy"]["healthcheck"]["test"])


def test_start_order_secret_then_migrate_then_server_then_gateway():
    def after(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in SERVICES[name].get("depends_on", {}).items()}

    assert after("migrate") == {"secret": "service_completed_successfully", "postgres": "service_healthy"}
    assert after("identity")["migrate"] == "service_completed_successfully"
    assert after("identity")["redis"] == "service_healthy"
    assert after("envoy") == {"identity": "service_healthy"}
    for one_shot in ("secret", "migrate"):
        assert SERVICES[one_shot]["restart"] == "no"


@pytest.fixture(scope="module")
def containers_line() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("- **Containers**")
    end = readme.find("\n\n", start)
    return readme[start : end if end > 0 else None]


def test_readme_describes_the_stack_compose_defines(containers_line):
    assert "docker compose up --build" in containers_line
    assert "IDENTITY_SECRET_KEY=" not in containers_line  # no secret on the command line any more
    for service in SERVICES:
        assert f"`{service}`" in containers_line, f"README's Containers line does not name {service}"
    for volume in COMPOSE["volumes"]:
        assert f"`{volume}`" in containers_line
    assert SECRET_FILE in containers_line
    for variable in ("IDENTITY_CORS_ORIGINS", "IDENTITY_GATEWAY_EXPOSE_SERVICES", "IDENTITY_HTTP_PORT"):
        assert f"`{variable}`" in containers_line
    assert "127.0.0.1:50051" in containers_line and ":8080" in containers_line
