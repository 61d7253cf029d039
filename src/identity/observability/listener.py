"""The metrics HTTP listener (IDENTITY_METRICS_LISTEN): prometheus_client's own
server, in a daemon thread, answering GET /metrics.

With several workers on one host (PROMETHEUS_MULTIPROC_DIR set), every worker
writes its values to that directory and one listener per host serves them all:
the first worker to bind the port serves, the others retry every few seconds, so
when the serving worker exits another takes its place and a scrape still sees the
counters of every worker, the exited ones included. The port is bound without
SO_REUSEPORT, so two workers can never both hold it."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Callable, Iterable
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

log = structlog.get_logger("identity.metrics")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"IDENTITY_METRICS_LISTEN: expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - the operator's choice


class _FlushedFirst:
    """What the listener serves: `registry`, after `flush` has added this process's
    in-memory tallies (identity.observability.metrics) to it."""

    def __init__(self, registry: CollectorRegistry, flush: Callable[[], None]) -> None:
        self._registry = registry
        self._flush = flush

    def collect(self) -> Iterable[Metric]:
        self._flush()
        return self._registry.collect()

    def restricted_registry(self, names: Iterable[str]) -> object:  # `?name[]=` scrapes
        self._flush()
        return self._registry.restricted_registry(names)


class MetricsListener:
    def __init__(self, listen: str, registry: CollectorRegistry | None, flush: Callable[[], None]) -> None:
        self._host, self._port = parse_listen(listen)
        self.multiprocess = multiprocess_dir() is not None
        if self.multiprocess:
            # A fresh registry whose one collector reads every worker's files per scrape.
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        assert registry is not None
        self._served = _FlushedFirst(registry, flush)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int | None:
        """The bound port (useful with port 0), or None while another worker serves."""
        return None if self._server is None else int(self._server.server_port)

    def try_start(self) -> bool:
        """Binds and serves; False when another worker of this host holds the port."""
        if self._server is not None:
            return True
        try:
            self._server, self._thread = start_http_server(self._port, self._host, self._served)
        except OSError as exc:
            if self.multiprocess and exc.errno == errno.EADDRINUSE:
                return False
            raise RuntimeError(
                f"cannot listen on {self._host}:{self._port} for metrics: {exc.strerror}"
            ) from None
        log.info("metrics_serving", host=self._host, port=self.port, multiprocess=self.multiprocess)
        return True

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self.multiprocess:
            # This worker's live gauges leave the sums; its counters stay.
            mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
