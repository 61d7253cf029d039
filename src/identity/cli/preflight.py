"""What `identity serve` checks before it builds anything: the port first (a second
server must not get as far as answering a health probe meant for the first), then
the dependencies (PostgreSQL is needed to start; Redis down is a warning, health
answers NOT_SERVING until it answers)."""

from __future__ import annotations

import errno
import socket

import structlog

from identity.cli.errors import OperatorError
from identity.config import Settings
from identity.store.probe import probe_postgres, probe_redis, redis_where

log = structlog.get_logger("identity.serve")


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise OperatorError(f"invalid setting: IDENTITY_GRPC_LISTEN={listen!r}", "use HOST:PORT")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an empty host means every address


def check_port_free(listen: str) -> None:
    """Binds the address as gRPC would (SO_REUSEADDR) and lets it go again."""
    host, port = split_listen(listen)
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OperatorError(
            f"cannot listen on {listen}: {exc.strerror}", "fix IDENTITY_GRPC_LISTEN"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OperatorError(
                    f"port {port} is in use: cannot listen on {listen} (is another identity serve running?)",
                    "stop it, or set IDENTITY_GRPC_LISTEN to a free address",
                ) from None
            raise OperatorError(
                f"cannot listen on {listen}: {exc.strerror}", "fix IDENTITY_GRPC_LISTEN"
            ) from None


async def check_dependencies(settings: Settings) -> None:
    timeout = settings.db_timeout.total_seconds()
    await probe_postgres(settings.database_url, timeout)
    try:
        await probe_redis(settings.redis_url, timeout)
    except Exception as exc:  # any failure to PING is "down" here; the reason is in the line
        log.warning(
            "dependency_down",
            dependency="redis",
            at=redis_where(settings.redis_url),
            error=type(exc).__name__,
            effect="health answers NOT_SERVING and logins fail until Redis answers",
        )


def preflight(settings: Settings) -> None:
    if not settings.grpc_reuseport:  # with SO_REUSEPORT, sharing the port is the intent
        check_port_free(settings.grpc_listen)
