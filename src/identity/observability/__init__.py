"""Prometheus metrics and OpenTelemetry traces, wired in by the composition root.

Nothing outside this package imports prometheus_client or opentelemetry (bar the
log processor that puts the trace id on log lines): services, the store and the api
edge report to an `identity.domain.observer.Observer`, and `Telemetry` gives them
the implementation the settings ask for, or the no-op one. Off by default: metrics
need IDENTITY_METRICS_LISTEN, traces an OTLP endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

import grpc

from identity.config import Settings
from identity.domain.models import LoginOutcome
from identity.domain.observer import NOOP, CacheEvent, Observer, RefreshOutcome, ThrottleScope
from identity.domain.permissions import DecisionReason

if TYPE_CHECKING:
    from identity.container import Services
    from identity.observability.listener import MetricsListener
    from identity.observability.metrics import Metrics, MetricsObserver
    from identity.observability.sampler import Sampler
    from identity.observability.tracing import Tracing, TracingObserver

# A worker that could not bind the metrics port (another worker of the host serves
# it) tries again this often, to take over when that worker exits.
LISTEN_RETRY_SECONDS = 2.0

_tracing: Tracing | None = None  # one tracer provider per process

_STANDARD_ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def otlp_endpoint(settings: Settings, environ: Mapping[str, str] | None = None) -> str | None:
    """Where traces go: IDENTITY_OTEL_EXPORTER_OTLP_ENDPOINT, else the standard OTEL_*
    variables; None (no tracing) when neither is set or OTEL_SDK_DISABLED is true."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if settings.otel_exporter_otlp_endpoint:
        return settings.otel_exporter_otlp_endpoint
    for name in _STANDARD_ENDPOINTS:
        if env.get(name):
            return env[name]
    return None


class _Both:
    """Metrics and traces at once: each event to both."""

    def __init__(self, metrics: MetricsObserver, tracing: TracingObserver) -> None:
        self._m = metrics
        self._t = tracing

    def rpc_done(self, service: str, method: str, code: str, seconds: float) -> None:
        self._m.rpc_done(service, method, code, seconds)
        self._t.rpc_done(service, method, code, seconds)

    def password_check(self, outcome: LoginOutcome, *, reauthentication: bool) -> None:
        self._m.password_check(outcome, reauthentication=reauthentication)

    def mfa(self, outcome: LoginOutcome) -> None:
        self._m.mfa(outcome)

    def refresh(self, outcome: RefreshOutcome) -> None:
        self._m.refresh(outcome)

    def throttled(self, scope: ThrottleScope) -> None:
        self._m.throttled(scope)

    def account_locked(self) -> None:
        self._m.account_locked()

    def decision(self, reason: DecisionReason) -> None:
        self._m.decision(reason)

    def permission_cache(self, event: CacheEvent) -> None:
        self._m.permission_cache(event)

    def rbac_lease_lost(self) -> None:
        self._m.rbac_lease_lost()

    def redis_error(self) -> None:
        self._m.redis_error()

    def db_pool_timeout(self) -> None:
        self._m.db_pool_timeout()

    @contextlib.contextmanager
    def bcrypt(self, operation: str) -> Iterator[None]:
        with self._t.bcrypt(operation):
            yield


class Telemetry:
    """What one server process exports. Built before the services (tracing must
    wrap the PostgreSQL driver before the pool connects), started after them."""

    def __init__(self, settings: Settings) -> None:
        global _tracing
        self.metrics: Metrics | None = None
        self.tracing: Tracing | None = None
        self._listener: MetricsListener | None = None
        self._sampler: Sampler | None = None
        self._retry: asyncio.Task[None] | None = None
        metrics_observer: MetricsObserver | None = None
        tracing_observer: TracingObserver | None = None
        if settings.metrics_listen:
            from prometheus_client import CollectorRegistry, disable_created_metrics

            from identity.observability.listener import MetricsListener, multiprocess_dir
            from identity.observability.metrics import Metrics, MetricsObserver

            # No `_created` series next to every counter: nobody here reads them.
            disable_created_metrics()  # type: ignore[no-untyped-call]
            registry = None if multiprocess_dir() else CollectorRegistry(auto_describe=True)
            self.metrics = Metrics(registry)
            metrics_observer = MetricsObserver(self.metrics)
            self._listener = MetricsListener(settings.metrics_listen, registry, metrics_observer.flush)
        self._metrics_observer = metrics_observer
        endpoint = otlp_endpoint(settings)
        if endpoint is not None:
            from identity.observability.tracing import Tracing, TracingObserver

            _tracing = _tracing or Tracing(endpoint)
            self.tracing = _tracing
            tracing_observer = TracingObserver(_tracing.tracer, settings.bcrypt_rounds)
        if metrics_observer is not None and tracing_observer is not None:
            self.observer: Observer = _Both(metrics_observer, tracing_observer)
        else:
            self.observer = metrics_observer or tracing_observer or NOOP

    def interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """To run outside the error mapping (which wraps each method as it is registered),
        so that every log line of a call is inside its span."""
        return [] if self.tracing is None else [self.tracing.server_interceptor()]

    @property
    def metrics_port(self) -> int | None:
        return None if self._listener is None else self._listener.port

    async def start(self, services: Services) -> None:
        if self.metrics is None or self._listener is None:
            return
        from identity.observability.sampler import Sampler

        assert self._metrics_observer is not None
        self._sampler = Sampler(self.metrics, services, self._metrics_observer.flush)
        self._sampler.start()
        if not self._listener.try_start():
            self._retry = asyncio.create_task(self._take_over(self._listener), name="metrics-listen")

    async def _take_over(self, listener: MetricsListener) -> None:
        while True:
            await asyncio.sleep(LISTEN_RETRY_SECONDS)
            if listener.try_start():
                return

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
        if self._sampler is not None:
            await self._sampler.stop()
        if self._metrics_observer is not None:
            self._metrics_observer.flush()
        if self._listener is not None:
            self._listener.stop()
        if self.tracing is not None:
            # Blocks the loop, but only at shutdown and for at most this long.
            self.tracing.provider.force_flush(timeout_millis=2000)
