"""`identity doctor`: what an operator checks first, one line each, non-zero on a failure.

Read-only: it creates no key, partition or table. A check that depends on an earlier
one that failed is shown as skipped rather than failing for the same reason again."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import typer

from identity.cli import runtime
from identity.cli.errors import explain
from identity.cli.output import JsonOpt, emit_json
from identity.config import Settings
from identity.container import Services
from identity.store.probe import probe_postgres, probe_redis, redis_where

# An active signing key older than this gets a warning: rotate with `identity keys rotate`.
KEY_AGE_WARNING = timedelta(days=90)
TLS_VARIABLES = (
    ("IDENTITY_TLS_CERT_FILE", "certificate"),
    ("IDENTITY_TLS_KEY_FILE", "private key"),
    ("IDENTITY_TLS_CLIENT_CA_FILE", "certificate"),
)


@dataclass(frozen=True)
class Check:
    name: str
    # ok, warn (worth a look, not a failure), fail, skip (an earlier check failed)
    status: str
    detail: str


def _failure(exc: BaseException, database_url: str | None = None) -> str:
    problem = explain(exc, database_url)
    if problem is None:
        return f"unexpected {type(exc).__name__}"
    return problem.message + (f"; {problem.hint}" if problem.hint else "")


async def _probe(name: str, ok: str, probe: Callable[[], Awaitable[None]], url: str | None = None) -> Check:
    try:
        await probe()
    except Exception as exc:  # any failure is this check's result
        return Check(name, "fail", _failure(exc, url))
    return Check(name, "ok", ok)


def _schema(config: Settings) -> Check:
    from identity.store.migrate import current_revision, head_revision

    try:
        current, head = current_revision(config.database_url), head_revision()
    except Exception as exc:  # reported as the check's result
        return Check("schema", "fail", _failure(exc, config.database_url))
    if current == head:
        return Check("schema", "ok", f"at {head} (head)")
    return Check("schema", "fail", f"at {current or 'base (empty)'}, head is {head}; run `identity migrate`")


def _envoy() -> Check:
    from identity.gateway import find_envoy

    try:
        return Check("envoy", "ok", find_envoy())
    except FileNotFoundError:
        return Check(
            "envoy", "warn", "no envoy on PATH: `identity gateway` (the website path) cannot run here"
        )


def _tls() -> list[Check]:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    checks = []
    for variable, kind in TLS_VARIABLES:
        path = os.environ.get(variable, "")
        if not path:
            continue
        name = f"tls {variable.removeprefix('IDENTITY_TLS_').removesuffix('_FILE').lower().replace('_', '-')}"
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            checks.append(Check(name, "fail", f"{variable}: cannot read {path}: {exc.strerror}"))
            continue
        try:
            if kind == "private key":
                load_pem_private_key(data, password=None)
            else:
                x509.load_pem_x509_certificates(data)
        except (ValueError, TypeError):
            checks.append(Check(name, "fail", f"{variable}: {path} is not a PEM {kind}"))
            continue
        checks.append(Check(name, "ok", f"{path} is a readable PEM {kind}"))
    if not checks:
        checks.append(Check("tls", "skip", "not configured (no IDENTITY_TLS_* file set)"))
    return checks


async def _with_database(config: Settings, secret_ok: bool) -> list[Check]:
    """Key ring, key age and partitions: they need PostgreSQL at the schema's head."""
    if not secret_ok:
        # Never decrypt with a stand-in secret: it would read as a mismatch.
        config = runtime.stand_in_secret(config)
    checks: list[Check] = []
    async with runtime.services_for(config) as services:
        if secret_ok:
            try:
                snapshot = await services.keys.reload()
                if snapshot.signing_kid is None:
                    checks.append(
                        Check("key ring", "fail", "no active signing key: start `identity serve` once")
                    )
                else:
                    checks.append(
                        Check("key ring", "ok", f"active key {snapshot.signing_kid} opens with this secret")
                    )
            except Exception as exc:  # reported as the check's result
                checks.append(Check("key ring", "fail", _failure(exc, config.database_url)))
        else:
            checks.append(
                Check("key ring", "fail", "IDENTITY_SECRET_KEY (or IDENTITY_SECRET_KEY_FILE) is not set")
            )
        checks.append(await _key_age(services))
        checks.append(await _partitions(services))
    return checks


async def _key_age(services: Services) -> Check:
    try:
        active = [key for key in await services.keys.list_keys() if key.state == "active"]
    except Exception as exc:  # reported as the check's result
        return Check("signing key age", "fail", _failure(exc))
    if not active:
        return Check("signing key age", "skip", "no active key")
    since = active[0].activated_at or active[0].created_at
    age = datetime.now(UTC) - since
    detail = f"active key {active[0].kid} in use for {age.days} day(s)"
    if age > KEY_AGE_WARNING:
        return Check("signing key age", "warn", f"{detail}; rotate it: `identity keys rotate`")
    return Check("signing key age", "ok", detail)


async def _partitions(services: Services) -> Check:
    ahead = services.settings.partition_months_ahead
    try:
        missing = await services.partitions.uncovered_months()
    except Exception as exc:  # reported as the check's result
        return Check("partitions", "fail", _failure(exc))
    if missing:
        months = ", ".join(f"{m:%Y-%m}" for m in missing)
        return Check("partitions", "fail", f"no partition for {months}; run `identity partitions ensure`")
    return Check("partitions", "ok", f"this month and the {ahead} after it have partitions")


async def run_checks() -> list[Check]:
    try:
        config = runtime.settings(needs_secret=False, stand_in=False, check_tls=False)
    except Exception as exc:  # an invalid setting is the first check's result
        return [Check("settings", "fail", _failure(exc))]
    checks = [Check("settings", "ok", "every IDENTITY_* variable parses")]
    secret_ok = len(config.secret_key.reveal()) >= 32
    timeout = config.db_timeout.total_seconds()
    postgres = await _probe(
        "postgresql",
        f"reachable at {_where(config.database_url)}",
        lambda: probe_postgres(config.database_url, timeout),
        config.database_url,
    )
    checks.append(postgres)
    schema = _schema(config) if postgres.status == "ok" else Check("schema", "skip", "PostgreSQL unreachable")
    checks.append(schema)
    if schema.status == "ok":
        checks.extend(await _with_database(config, secret_ok))
    else:
        for name in ("key ring", "signing key age", "partitions"):
            checks.append(Check(name, "skip", "needs PostgreSQL at the schema's head"))
    checks.append(
        await _probe(
            "redis",
            f"reachable at {redis_where(config.redis_url)}",
            lambda: probe_redis(config.redis_url, timeout),
        )
    )
    checks.append(_envoy())
    checks.extend(_tls())
    return checks


def _where(url: str) -> str:
    from identity.cli.errors import where

    return where(url)


def doctor(json_output: JsonOpt = False) -> None:
    """Check settings, PostgreSQL, schema, key ring, Redis, partitions, key age, Envoy and TLS
    files; one line each. Exits 1 when any check fails."""
    checks = runtime.run(run_checks())
    if json_output:
        emit_json([{"check": c.name, "status": c.status, "detail": c.detail} for c in checks])
    else:
        for c in checks:
            colour = {"ok": typer.colors.GREEN, "warn": typer.colors.YELLOW, "fail": typer.colors.RED}
            status = typer.style(f"{c.status:<5}", fg=colour.get(c.status))
            typer.echo(f"{status} {c.name:<16} {c.detail}")
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)
