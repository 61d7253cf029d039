"""The `identity` command: serve, migrate, gateway, and operator tools."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from identity.cli import doctor, keys, partitions, roles, runtime, service_keys, sessions, users
from identity.cli.errors import OperatorError, OperatorGroup
from identity.cli.output import JsonOpt, emit_json
from identity.cli.runtime import run, settings
from identity.config import env_names

app = typer.Typer(
    cls=OperatorGroup,
    help="identity: accounts, sessions, tokens and roles.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(keys.app, name="keys")
app.add_typer(sessions.app, name="sessions")
app.add_typer(partitions.app, name="partitions")
app.add_typer(roles.app, name="roles")
app.add_typer(users.app, name="users")
app.add_typer(service_keys.app, name="service-keys")
app.command("doctor")(doctor.doctor)


@app.callback()
def root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Debug logs, and a traceback when a command fails.")
    ] = False,
) -> None:
    """identity: accounts, sessions, tokens and roles."""
    runtime.debug = debug


@app.command()
def serve(
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Server processes sharing the port (default: IDENTITY_WORKERS)."
    ),
) -> None:
    """Run the gRPC server (configured by IDENTITY_* variables)."""
    config = settings(needs_secret=True)
    count = workers or config.workers
    if count > 1:
        # The supervisor checks the port itself and holds it for its workers.
        from identity.supervisor import SupervisorError, supervise

        try:
            code = run(supervise(config, count))
        except SupervisorError as exc:
            typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1) from None
        raise typer.Exit(code)

    from identity.cli.preflight import check_dependencies, preflight
    from identity.server import serve as serve_forever

    preflight(config)

    async def main() -> None:
        await check_dependencies(config)
        # The server builds the services itself (after its telemetry, which must wrap
        # the database driver first) and closes them if it fails to start.
        await serve_forever(config)

    run(main())


RevisionOpt = Annotated[str, typer.Option("--revision", help="Target revision (an id, or head).")]


@app.command()
def migrate(revision: RevisionOpt = "head") -> None:
    """Upgrade the database schema (Alembic). Never goes down: see `identity downgrade`."""
    from identity.store.migrate import upgrade

    config = settings(needs_secret=False)
    reached = upgrade(config.database_url, revision)
    typer.echo(f"database at {reached or 'base'}")


@app.command()
def downgrade(
    revision: Annotated[str, typer.Option("--revision", help="Revision to go down to (an id, or base).")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Downgrade the schema to REVISION, undoing every later migration (data in what they
    added is lost). Asks for confirmation unless --yes."""
    from identity.store.migrate import downgrade as go_down
    from identity.store.migrate import downgrade_steps

    config = settings(needs_secret=False)
    current, steps = downgrade_steps(config.database_url, revision)
    if not steps:
        typer.echo(f"database at {current or 'base'}: nothing to undo")
        return
    typer.echo(f"database at {current}; undoing {', '.join(steps)} (what they added is lost)", err=True)
    if not yes:
        if not sys.stdin.isatty():
            raise OperatorError("downgrade needs confirmation", "run it on a terminal, or add --yes")
        typer.confirm(f"Downgrade to {revision}?", abort=True, err=True)
    reached = go_down(config.database_url, revision)
    typer.echo(f"database at {reached or 'base'}")


@app.command()
def gateway(
    listen: str = typer.Option(
        "127.0.0.1:8080", envvar="IDENTITY_HTTP_LISTEN", help="HTTP address Envoy listens on."
    ),
    upstream: str = typer.Option(
        "127.0.0.1:50051", envvar="IDENTITY_GATEWAY_UPSTREAM", help="The gRPC server."
    ),
    cors_origin: list[str] = typer.Option(
        [],
        envvar="IDENTITY_CORS_ORIGINS",
        help="A website origin allowed by CORS (repeatable; the variable takes several, space-separated).",
    ),
    expose_service: list[str] = typer.Option(
        [],
        envvar="IDENTITY_GATEWAY_EXPOSE_SERVICES",
        help="Also expose this gRPC service over HTTP/JSON, e.g. identity.v1.RbacService (repeatable).",
    ),
    descriptor: Path | None = typer.Option(None, help="Descriptor set (default: the generated one)."),
    otlp_endpoint: str | None = typer.Option(
        None,
        envvar="IDENTITY_OTEL_EXPORTER_OTLP_ENDPOINT",
        help="OTLP/gRPC collector (http://HOST:PORT) for Envoy's request spans; off when unset.",
    ),
    tls_cert: Path | None = typer.Option(None, help="Serve HTTPS: certificate chain (PEM)."),
    tls_key: Path | None = typer.Option(None, help="Serve HTTPS: private key (PEM)."),
    upstream_ca: Path | None = typer.Option(None, help="Speak TLS to the server, trusting this CA (PEM)."),
    upstream_cert: Path | None = typer.Option(None, help="Client certificate, for a server asking mTLS."),
    upstream_key: Path | None = typer.Option(None, help="Private key of --upstream-cert."),
    upstream_source: str | None = typer.Option(
        None, help="Local IP address to connect to the server from (name it in IDENTITY_TRUSTED_PROXIES)."
    ),
    max_body_bytes: int = typer.Option(
        64 * 1024, help="Largest request body forwarded (413 beyond), within IDENTITY_MAX_MESSAGE_BYTES."
    ),
    print_config: bool = typer.Option(False, "--print-config", help="Print the Envoy config and exit."),
) -> None:
    """Run Envoy's gRPC-JSON transcoder in front of the server (the website path)."""
    from identity import gateway as gw

    try:
        listen_host, listen_port = gw.parse_host_port(listen)
        upstream_host, upstream_port = gw.parse_host_port(upstream)
        cfg = gw.GatewayConfig(
            listen_host=listen_host,
            listen_port=listen_port,
            upstream_host=upstream_host,
            upstream_port=upstream_port,
            descriptor_path=descriptor or gw.default_descriptor_path(),
            services=("identity.v1.AuthService", *expose_service),
            cors_origins=tuple(cors_origin),
            otlp_endpoint=otlp_endpoint or None,
            tls_cert_file=tls_cert,
            tls_key_file=tls_key,
            upstream_ca_file=upstream_ca,
            upstream_cert_file=upstream_cert,
            upstream_key_file=upstream_key,
            upstream_source=upstream_source,
            max_body_bytes=max_body_bytes,
        )
        if print_config:
            typer.echo(gw.render_config(cfg))
            return
    except (ValueError, FileNotFoundError) as exc:
        raise OperatorError(f"gateway: {exc}", "see `identity gateway --help`") from None
    try:
        code = gw.run_gateway(cfg)
    except FileNotFoundError as exc:  # no envoy binary
        raise OperatorError(f"gateway: {exc}") from None
    except OSError as exc:  # the listen address is taken
        raise OperatorError(f"gateway: {exc.strerror}") from None
    raise typer.Exit(code)


@app.command("config")
def show_config(json_output: JsonOpt = False) -> None:
    """List every IDENTITY_* variable with its default."""
    if json_output:
        emit_json({name: default for name, default in env_names()})
        return
    for name, default in env_names():
        typer.echo(f"{name}={default}")


if __name__ == "__main__":
    app()
