"""Operator mistakes become one or two lines on stderr and a non-zero exit.

Every command runs under `OperatorGroup.main`: a known failure (a setting, an
unreachable or missing database, Redis, a secret that does not open the key ring,
an unknown revision, a domain error) is explained in a line saying what is wrong and,
when useful, a second saying what to do. Tracebacks only with `--debug` or
IDENTITY_LOG_LEVEL=debug: they can quote SQL or values, and an operator rarely needs one."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import typer
from typer import Abort
from typer._click.exceptions import ClickException, NoArgsIsHelpError  # Typer 0.29 vendors click
from typer.core import TyperGroup

from identity.domain.errors import DomainError


class OperatorError(Exception):
    """A failure the operator can fix; `hint` says how."""

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and SQLAlchemy's wrapped `orig`."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        todo.extend(
            [orig if isinstance(orig, BaseException) else None, current.__cause__, current.__context__]
        )


def where(url: str) -> str:
    """host:port/dbname of a libpq URL, without credentials."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "IDENTITY_DATABASE_URL"
    return f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}/{info.get('dbname') or ''}"


def _postgres(error: psycopg.OperationalError, url: str | None) -> OperatorError:
    text = str(error).strip()
    target = where(url) if url else "PostgreSQL"
    host_port, _, dbname = target.rpartition("/")
    if "does not exist" in text and "database" in text:
        return OperatorError(
            f"PostgreSQL database {dbname!r} does not exist on {host_port}",
            f"create it (createdb {dbname}) then run `identity migrate`, or fix IDENTITY_DATABASE_URL",
        )
    if "refused" in text:
        return OperatorError(
            f"PostgreSQL at {host_port} is not reachable (connection refused)",
            "start PostgreSQL or point IDENTITY_DATABASE_URL at a running server",
        )
    if "timeout" in text.lower() or "timed out" in text.lower():
        return OperatorError(
            f"PostgreSQL at {host_port} did not answer in time",
            "check that it runs and IDENTITY_DATABASE_URL (IDENTITY_DB_TIMEOUT_SECONDS bounds the wait)",
        )
    if "authentication" in text or "password" in text:
        return OperatorError(
            f"PostgreSQL at {host_port} refused the credentials of IDENTITY_DATABASE_URL",
            "fix the user or password in IDENTITY_DATABASE_URL",
        )
    first = text.splitlines()[0] if text else type(error).__name__
    return OperatorError(f"PostgreSQL at {host_port}: {first}", "check IDENTITY_DATABASE_URL")


def explain(exc: BaseException, database_url: str | None = None) -> OperatorError | None:
    """The operator's reading of a failure, or None when it is not a known one."""
    from cryptography.exceptions import InvalidTag
    from psycopg_pool import PoolTimeout
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from identity.store.migrate import RevisionError

    for item in _chain(exc):
        if isinstance(item, OperatorError):
            return item
        if isinstance(item, RevisionError):
            return OperatorError(str(item))
        if isinstance(item, InvalidTag):
            return OperatorError(
                "IDENTITY_SECRET_KEY does not match the key ring: the signing keys in the database"
                " were encrypted with another secret",
                "use the secret the key ring was made with (IDENTITY_SECRET_KEY or IDENTITY_SECRET_KEY_FILE)",
            )
        if isinstance(item, psycopg.errors.UndefinedTable):
            return OperatorError(
                "the database has no identity schema (or an old one)", "run `identity migrate`"
            )
        if isinstance(item, psycopg.OperationalError):
            return _postgres(item, database_url)
        if isinstance(item, PoolTimeout):
            return OperatorError("no PostgreSQL connection in time", "check IDENTITY_DATABASE_URL")
        if isinstance(item, RedisConnectionError | RedisTimeoutError):
            return OperatorError(f"Redis is not reachable ({item})", "check IDENTITY_REDIS_URL")
    for item in _chain(exc):
        if isinstance(item, DomainError):
            return OperatorError(f"{item.message} ({item.reason})")
    return None


def _debugging(args: Sequence[str]) -> bool:
    return "--debug" in args or os.environ.get("IDENTITY_LOG_LEVEL", "").strip().lower() == "debug"


def report(problem: OperatorError) -> None:
    typer.secho(f"error: {problem.message}", err=True, fg=typer.colors.RED)
    if problem.hint:
        typer.echo(f"  {problem.hint}", err=True)


# The database URL of the running command, so a connection error can name the server.
current_database_url: str | None = None


class OperatorGroup(TyperGroup):
    """The root command: runs everything in non-standalone mode and reports failures itself."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        code = self._run(argv, prog_name, complete_var, extra)
        if standalone_mode:
            sys.exit(code)
        return code

    def _run(self, argv: list[str], prog_name: str | None, complete_var: str | None, extra: Any) -> int:
        try:
            result = super().main(
                args=argv, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra
            )
            return result if isinstance(result, int) else 0
        except NoArgsIsHelpError as error:
            error.show()
            return error.exit_code
        except ClickException as error:
            # Usage mistakes: one line, plus where help is.
            report(OperatorError(error.format_message(), f"see `{_command_path(error)} --help`"))
            return error.exit_code
        except Abort:
            report(OperatorError("aborted"))
            return 1
        except KeyboardInterrupt:
            return 130
        except Exception as error:
            if _debugging(argv):
                traceback.print_exc()
            problem = explain(error, current_database_url)
            if problem is None:
                problem = OperatorError(
                    f"unexpected {type(error).__name__}", "run again with --debug to see where it came from"
                )
            report(problem)
            return problem.exit_code


def _command_path(error: ClickException) -> str:
    ctx = getattr(error, "ctx", None)
    return ctx.command_path if ctx is not None else "identity"
