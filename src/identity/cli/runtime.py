"""Helpers shared by CLI commands: settings, logging, an event loop, services."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from identity.cli import errors
from identity.cli.errors import OperatorError
from identity.config import Secret, Settings
from identity.container import Services, build_services
from identity.logging import configure_logging
from identity.store.probe import probe_postgres

T = TypeVar("T")

# Set by the root command's --debug: debug logs, and tracebacks on failure.
debug = False


def settings(*, needs_secret: bool = True, stand_in: bool = True, check_tls: bool = True) -> Settings:
    """Settings from the environment, or an operator error naming the bad variable
    (`identity doctor` checks the TLS files itself, one line each: check_tls=False).

    A command that neither reads nor writes anything encrypted at rest runs without the
    master secret: it gets a random one for this process only, which keys nothing but
    the page tokens the command hands itself."""
    try:
        loaded = Settings.from_env()
        if check_tls:
            loaded.check_tls_files()
    except ValueError as exc:
        raise OperatorError(f"invalid setting: {exc}", "`identity config` lists every variable") from None
    level = "debug" if debug else loaded.log_level.strip().lower()
    if level.upper() not in logging.getLevelNamesMapping():
        raise OperatorError(
            f"invalid setting: IDENTITY_LOG_LEVEL={loaded.log_level!r}", "use debug, info, warning or error"
        )
    if loaded.log_format not in {"auto", "json", "console"}:
        raise OperatorError(
            f"invalid setting: IDENTITY_LOG_FORMAT={loaded.log_format!r}", "use auto, json or console"
        )
    configure_logging(level, loaded.log_format)
    errors.current_database_url = loaded.database_url
    if needs_secret:
        try:
            loaded.require_secret_key()
        except ValueError as exc:
            raise OperatorError(
                str(exc), "for the `make run` stack: export IDENTITY_SECRET_KEY_FILE=.dev/secret-key"
            ) from None
    elif stand_in and not loaded.secret_key:
        loaded = stand_in_secret(loaded)
    return loaded


def stand_in_secret(config: Settings) -> Settings:
    return dataclasses.replace(config, secret_key=Secret(secrets.token_hex(32)), secret_key_file="")


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return asyncio.run(coro)


@asynccontextmanager
async def services_for(config: Settings) -> AsyncIterator[Services]:
    # One direct connection first: the pool would retry in the background and end in a
    # timeout that no longer says why; this fails at once with the server's own reason.
    await probe_postgres(config.database_url, config.db_timeout.total_seconds())
    services = await build_services(config)
    try:
        yield services
    finally:
        await services.close()


def with_services(action: Callable[[Services], Awaitable[T]], *, needs_secret: bool = False) -> T:
    """Runs one use case against fresh services. Failures are reported by
    identity.cli.errors (domain errors as `message (REASON)`)."""
    config = settings(needs_secret=needs_secret)

    async def main() -> T:
        async with services_for(config) as services:
            return await action(services)

    return run(main())
