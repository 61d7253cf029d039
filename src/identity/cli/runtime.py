"""Helpers shared by CLI commands: settings, logging, an event loop, services."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import typer

from identity.config import Settings
from identity.container import Services, build_services
from identity.domain.errors import DomainError
from identity.logging import configure_logging

T = TypeVar("T")


def settings() -> Settings:
    try:
        loaded = Settings.from_env()
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    configure_logging(loaded.log_level, loaded.log_format)
    return loaded


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds
        return asyncio.run(coro)


@asynccontextmanager
async def services_for(config: Settings) -> AsyncIterator[Services]:
    services = await build_services(config)
    try:
        yield services
    finally:
        await services.close()


def with_services(action: Callable[[Services], Awaitable[T]]) -> T:
    """Runs one use case against fresh services; domain errors become a clean exit."""
    config = settings()

    async def main() -> T:
        async with services_for(config) as services:
            return await action(services)

    try:
        return run(main())
    except DomainError as error:
        typer.secho(f"error: {error.message} ({error.reason})", err=True, fg=typer.colors.RED)
        raise typer.Exit(1) from None
