"""The `identity` command: serve, migrate, gateway, and operator tools."""

from __future__ import annotations

from pathlib import Path

import typer

from identity.cli import keys, partitions, roles, service_keys, sessions, users
from identity.cli.runtime import run, settings
from identity.config import env_names

app = typer.Typer(help="identity: accounts, sessions, tokens and roles.", no_args_is_help=True)
app.add_typer(keys.app, name="keys")
app.add_typer(sessions.app, name="sessions")
app.add_typer(partitions.app, name="partitions")
app.add_typer(roles.app, name="roles")
app.add_typer(users.app, name="users")
app.add_typer(service_keys.app, name="service-keys")


@app.command()
def serve() -> None:
    """Run the gRPC server (configured by IDENTITY_* variables)."""
    from identity.server import serve as serve_forever

    run(serve_forever(settings()))


@app.command()
def migrate(revision: str = typer.Option("head", help="Target revision.")) -> None:
    """Upgrade the database schema (Alembic)."""
    from identity.store.migrate import upgrade

    config = settings()
    upgrade(config.database_url, revision)
    typer.echo(f"database at {revision}")


@app.command()
def gateway(
    listen: str = typer.Option("127.0.0.1:8080", help="HTTP address Envoy listens on."),
    upstream: str = typer.Option("127.0.0.1:50051", help="The gRPC server."),
    cors_origin: list[str] = typer.Option([], help="A website origin allowed by CORS (repeatable)."),
    expose_service: list[str] = typer.Option(
        [], help="Also expose this gRPC service over HTTP/JSON, e.g. identity.v1.RbacService (repeatable)."
    ),
    descriptor: Path | None = typer.Option(None, help="Descriptor set (default: the generated one)."),
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
        raise typer.BadParameter(str(exc)) from None
    try:
        code = gw.run_gateway(cfg)
    except OSError as exc:
        typer.secho(f"error: {exc.strerror}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command("config")
def show_config() -> None:
    """List every IDENTITY_* variable with its default."""
    for name, default in env_names():
        typer.echo(f"{name}={default}")


if __name__ == "__main__":
    app()
