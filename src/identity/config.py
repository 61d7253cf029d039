"""Settings: every knob is an IDENTITY_* environment variable, read once at start-up
into a frozen Settings and passed down. README.md lists them all with defaults."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any, TypeAlias

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

# Variables that no longer exist, with what replaces them: start-up fails rather than
# silently dropping a setting an operator relies on.
_REPLACED = {
    "IDENTITY_TRUSTED_PROXY_HOPS": (
        "IDENTITY_TRUSTED_PROXY_HOPS is replaced by IDENTITY_TRUSTED_PROXIES, the comma-separated "
        "CIDRs of the proxies in front of the server (e.g. 127.0.0.1/32 for a local Envoy)"
    ),
}


class Secret:
    """A string that never shows itself in a repr, a log line or a traceback."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


def _seconds(value: str) -> timedelta:
    return timedelta(seconds=int(value))


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _networks(value: str) -> tuple[IPNetwork, ...]:
    out = []
    for part in _csv(value):
        try:
            out.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"not an address or CIDR: {part!r}") from None
    return tuple(out)


# Keyed by the field annotation as written (annotations are strings here).
_PARSERS: dict[str, Callable[[str], Any]] = {
    "str": str,
    "int": int,
    "bool": _bool,
    "timedelta": _seconds,
    "tuple[str, ...]": _csv,
    "Secret": Secret,
    "tuple[IPNetwork, ...]": _networks,
}


def _env(name: str, **metadata: Any) -> dict[str, Any]:
    return {"env": name, **metadata}


@dataclass(frozen=True)
class Settings:
    database_url: str = field(
        default="postgresql://postgres@127.0.0.1:5432/identity", metadata=_env("IDENTITY_DATABASE_URL")
    )
    redis_url: str = field(default="redis://127.0.0.1:6379/0", metadata=_env("IDENTITY_REDIS_URL"))
    # Prefix of every Redis key, so several deployments (or test runs) can share a Redis.
    redis_prefix: str = field(default="identity:", metadata=_env("IDENTITY_REDIS_PREFIX"))
    grpc_listen: str = field(default="127.0.0.1:50051", metadata=_env("IDENTITY_GRPC_LISTEN"))
    # Several `identity serve` processes on one port (SO_REUSEPORT); off so that a second
    # server cannot silently share the port by accident.
    grpc_reuseport: bool = field(default=False, metadata=_env("IDENTITY_GRPC_REUSEPORT"))
    # `identity serve` processes sharing the port under one supervisor (`--workers` wins).
    workers: int = field(default=1, metadata=_env("IDENTITY_WORKERS"))
    # TLS on the gRPC listener (PEM files, re-read when they change); both or neither.
    tls_cert_file: str = field(default="", metadata=_env("IDENTITY_TLS_CERT_FILE"))
    tls_key_file: str = field(default="", metadata=_env("IDENTITY_TLS_KEY_FILE"))
    # Mutual TLS: every client must present a certificate issued by this CA.
    tls_client_ca_file: str = field(default="", metadata=_env("IDENTITY_TLS_CLIENT_CA_FILE"))
    # Master secret: encrypts private signing keys and TOTP secrets at rest (HKDF per purpose).
    secret_key: Secret = field(default=Secret(""), metadata=_env("IDENTITY_SECRET_KEY"))
    # The usual `_FILE` convention for container secrets: the secret is read from this file
    # (trailing newline dropped) so it never sits in the environment or `docker inspect`.
    secret_key_file: str = field(default="", metadata=_env("IDENTITY_SECRET_KEY_FILE"))

    issuer: str = field(default="identity", metadata=_env("IDENTITY_ISSUER"))
    # Audiences written into access tokens; the first is the token's "aud", all are accepted.
    audiences: tuple[str, ...] = field(default=("cinema",), metadata=_env("IDENTITY_AUDIENCES"))
    access_token_ttl: timedelta = field(
        default=timedelta(minutes=15), metadata=_env("IDENTITY_ACCESS_TOKEN_TTL_SECONDS")
    )
    clock_skew: timedelta = field(default=timedelta(seconds=30), metadata=_env("IDENTITY_CLOCK_SKEW_SECONDS"))
    session_absolute_ttl: timedelta = field(
        default=timedelta(days=30), metadata=_env("IDENTITY_SESSION_ABSOLUTE_TTL_SECONDS")
    )
    session_idle_ttl: timedelta = field(
        default=timedelta(days=7), metadata=_env("IDENTITY_SESSION_IDLE_TTL_SECONDS")
    )
    # A client that lost a Refresh answer may present the same token again this long after
    # it was rotated: the token it never received dies and a new one is issued, so a session
    # never holds two live refresh tokens. 0 (the default) treats every second use as reuse.
    refresh_reuse_grace: timedelta = field(
        default=timedelta(0), metadata=_env("IDENTITY_REFRESH_REUSE_GRACE_SECONDS")
    )
    # How often each process re-reads the key ring, so a rotation made elsewhere is picked up.
    key_refresh_interval: timedelta = field(
        default=timedelta(seconds=30), metadata=_env("IDENTITY_KEY_REFRESH_SECONDS")
    )

    bcrypt_rounds: int = field(default=12, metadata=_env("IDENTITY_BCRYPT_ROUNDS"))
    # Concurrent bcrypt computations; defaults to the number of cores.
    hash_concurrency: int = field(default=os.cpu_count() or 2, metadata=_env("IDENTITY_HASH_CONCURRENCY"))
    # Consecutive failed logins after which an account is locked until an operator unlocks it.
    max_failed_logins: int = field(default=100, metadata=_env("IDENTITY_MAX_FAILED_LOGINS"))
    # Login attempts allowed per account and per client address in each window.
    login_attempts_per_account: int = field(default=10, metadata=_env("IDENTITY_LOGIN_ATTEMPTS_PER_ACCOUNT"))
    login_attempts_per_ip: int = field(default=50, metadata=_env("IDENTITY_LOGIN_ATTEMPTS_PER_IP"))
    login_window: timedelta = field(
        default=timedelta(minutes=1), metadata=_env("IDENTITY_LOGIN_WINDOW_SECONDS")
    )
    # TOTP: the issuer authenticator apps show; previous steps still accepted (0 or 1);
    # how long a setup stays pending before it must start over.
    totp_issuer: str = field(default="identity", metadata=_env("IDENTITY_TOTP_ISSUER"))
    totp_skew_steps: int = field(default=1, metadata=_env("IDENTITY_TOTP_SKEW_STEPS"))
    totp_setup_ttl: timedelta = field(
        default=timedelta(minutes=10), metadata=_env("IDENTITY_TOTP_SETUP_TTL_SECONDS")
    )
    # Between password and code: the ticket's lifetime and its wrong codes.
    mfa_ticket_ttl: timedelta = field(
        default=timedelta(minutes=5), metadata=_env("IDENTITY_MFA_TICKET_TTL_SECONDS")
    )
    mfa_ticket_max_failures: int = field(default=5, metadata=_env("IDENTITY_MFA_TICKET_MAX_FAILURES"))
    # Wrong second-factor codes per account per window, across every ticket and process.
    mfa_failures_per_window: int = field(default=10, metadata=_env("IDENTITY_MFA_FAILURES_PER_WINDOW"))
    mfa_failure_window: timedelta = field(
        default=timedelta(minutes=15), metadata=_env("IDENTITY_MFA_FAILURE_WINDOW_SECONDS")
    )
    # Consecutive wrong codes that lock the second factor; it opens again with a correct
    # password login once the wait is over, or `identity users mfa-reset`.
    mfa_lock_threshold: int = field(default=20, metadata=_env("IDENTITY_MFA_LOCK_THRESHOLD"))
    mfa_lock_wait: timedelta = field(
        default=timedelta(hours=1), metadata=_env("IDENTITY_MFA_LOCK_WAIT_SECONDS")
    )
    # Addresses (CIDRs) of the proxies in front of the server. x-forwarded-for is read only
    # when the TCP peer is one of them; from anyone else the header is ignored.
    trusted_proxies: tuple[IPNetwork, ...] = field(default=(), metadata=_env("IDENTITY_TRUSTED_PROXIES"))

    # Monthly login_history partitions kept ready beyond the current month (start-up and daily).
    partition_months_ahead: int = field(default=3, metadata=_env("IDENTITY_PARTITION_MONTHS_AHEAD"))
    partition_maintenance_interval: timedelta = field(
        default=timedelta(days=1), metadata=_env("IDENTITY_PARTITION_MAINTENANCE_SECONDS")
    )
    # Default of `identity partitions prune --older-than`: whole months kept before the current one.
    login_history_retention_months: int = field(
        default=12, metadata=_env("IDENTITY_LOGIN_HISTORY_RETENTION_MONTHS")
    )

    db_pool_min: int = field(default=2, metadata=_env("IDENTITY_DB_POOL_MIN"))
    db_pool_max: int = field(default=10, metadata=_env("IDENTITY_DB_POOL_MAX"))
    db_timeout: timedelta = field(default=timedelta(seconds=5), metadata=_env("IDENTITY_DB_TIMEOUT_SECONDS"))
    # Establishing one PostgreSQL connection (a hung server accepts TCP but never answers).
    db_connect_timeout: timedelta = field(
        default=timedelta(seconds=2), metadata=_env("IDENTITY_DB_CONNECT_TIMEOUT_SECONDS")
    )
    # The longest one unit of work (a transaction or a read, waiting for its connection
    # included) may take; also PostgreSQL's statement_timeout. 0: no limit.
    db_statement_timeout: timedelta = field(
        default=timedelta(seconds=3), metadata=_env("IDENTITY_DB_STATEMENT_TIMEOUT_SECONDS")
    )
    shutdown_grace: timedelta = field(
        default=timedelta(seconds=10), metadata=_env("IDENTITY_SHUTDOWN_GRACE_SECONDS")
    )
    # On SIGTERM, keep serving this long while health answers NOT_SERVING, so that a load
    # balancer's health checks take the process out of rotation before it stops accepting
    # calls (then the shutdown grace applies). 0: stop accepting at once.
    shutdown_delay: timedelta = field(default=timedelta(0), metadata=_env("IDENTITY_SHUTDOWN_DELAY_SECONDS"))
    max_message_bytes: int = field(default=64 * 1024, metadata=_env("IDENTITY_MAX_MESSAGE_BYTES"))
    # How long a process may answer checks from its permission cache without hearing from
    # PostgreSQL; also the longest an RBAC write waits for a hung or killed process.
    rbac_lease: timedelta = field(default=timedelta(seconds=3), metadata=_env("IDENTITY_RBAC_LEASE_SECONDS"))
    # Users whose effective permissions each process keeps in memory.
    permission_cache_size: int = field(default=100_000, metadata=_env("IDENTITY_PERMISSION_CACHE_SIZE"))
    # The same for the record of ended sessions (token checks without a PostgreSQL round
    # trip); also the longest a logout waits for a hung or killed process.
    session_state_lease: timedelta = field(
        default=timedelta(seconds=3), metadata=_env("IDENTITY_SESSION_STATE_LEASE_SECONDS")
    )
    # How often the revocation feed tells a peer that its copy is current.
    revocation_feed_heartbeat: timedelta = field(
        default=timedelta(seconds=1), metadata=_env("IDENTITY_REVOCATION_FEED_HEARTBEAT_SECONDS")
    )

    # HOST:PORT of the Prometheus metrics listener (GET /metrics); empty: no metrics.
    metrics_listen: str = field(default="", metadata=_env("IDENTITY_METRICS_LISTEN"))
    # OTLP/gRPC collector for traces, http://HOST:PORT (plaintext) or https://; empty: the
    # standard OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT if set, else no traces.
    otel_exporter_otlp_endpoint: str = field(
        default="", metadata=_env("IDENTITY_OTEL_EXPORTER_OTLP_ENDPOINT")
    )

    log_level: str = field(default="info", metadata=_env("IDENTITY_LOG_LEVEL"))
    # "auto": JSON unless stderr is a terminal; "json" or "console" to force.
    log_format: str = field(default="auto", metadata=_env("IDENTITY_LOG_FORMAT"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        environ = os.environ if environ is None else environ
        for name, replacement in _REPLACED.items():
            if environ.get(name, "").strip() not in ("", "0"):
                raise ValueError(replacement)
        values: dict[str, Any] = {}
        for f in fields(cls):
            name = f.metadata["env"]
            if name in environ:
                try:
                    values[f.name] = _PARSERS[str(f.type)](environ[name])
                except ValueError as exc:
                    raise ValueError(f"{name}: {exc}") from None
        if values.get("secret_key_file"):
            if environ.get("IDENTITY_SECRET_KEY"):
                raise ValueError("set IDENTITY_SECRET_KEY or IDENTITY_SECRET_KEY_FILE, not both")
            values["secret_key"] = Secret(_read_secret_file(values["secret_key_file"]))
        values.update(overrides)
        return cls(**values)

    def check_tls_files(self) -> None:
        """The TLS settings name all the files they need, and those files exist."""
        cert, key, client_ca = self.tls_cert_file, self.tls_key_file, self.tls_client_ca_file
        if bool(cert) != bool(key):
            raise ValueError("IDENTITY_TLS_CERT_FILE and IDENTITY_TLS_KEY_FILE go together")
        if client_ca and not cert:
            raise ValueError(
                "IDENTITY_TLS_CLIENT_CA_FILE needs IDENTITY_TLS_CERT_FILE and IDENTITY_TLS_KEY_FILE"
            )
        for name, path in (
            ("IDENTITY_TLS_CERT_FILE", cert),
            ("IDENTITY_TLS_KEY_FILE", key),
            ("IDENTITY_TLS_CLIENT_CA_FILE", client_ca),
        ):
            if path and not os.path.isfile(path):
                raise ValueError(f"{name}: no such file: {path}")

    def require_secret_key(self) -> bytes:
        if len(self.secret_key.reveal()) < 32:
            raise ValueError(
                "IDENTITY_SECRET_KEY (or a file named by IDENTITY_SECRET_KEY_FILE) must hold"
                " at least 32 characters (e.g. `openssl rand -hex 32`)"
            )
        return self.secret_key.reveal().encode()


def _read_secret_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ValueError(f"IDENTITY_SECRET_KEY_FILE: cannot read {path}: {reason}") from None


def env_names() -> list[tuple[str, str]]:
    """(variable, default) pairs, for documentation and `identity config`."""
    out = []
    for f in fields(Settings):
        default = f.default
        shown = (
            ",".join(str(item) for item in default)
            if isinstance(default, tuple)
            else str(int(default.total_seconds()))
            if isinstance(default, timedelta)
            else "(unset)"
            if isinstance(default, Secret)
            else str(default)
        )
        out.append((f.metadata["env"], shown))
    return out
