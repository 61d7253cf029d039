"""Scraping the metrics endpoint over HTTP, and a real OTLP/gRPC trace receiver."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Scrape:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    names: frozenset[str]  # every family name (counters without _total)
    text: str

    def value(self, name: str, **labels: str) -> float:
        """The sample `name` with exactly these labels; 0 when absent."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """Sum of the samples `name` whose labels include these."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)


def scrape(port: int, host: str = "127.0.0.1") -> Scrape:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Scrape(samples, frozenset(names), text)


def delta(after: Scrape, before: Scrape, name: str, **labels: str) -> float:
    return after.value(name, **labels) - before.value(name, **labels)


# -- traces ------------------------------------------------------------------------


def _attr_value(value: common_pb2.AnyValue) -> object:
    kind = value.WhichOneof("value")
    return None if kind is None else getattr(value, kind)


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, object]
    status_code: int
    event_attributes: list[dict[str, object]] = field(default_factory=list)


class _Collector(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.lock = threading.Lock()

    def Export(self, request, context):
        received = []
        for resource_spans in request.resource_spans:
            service = next(
                (
                    str(_attr_value(a.value))
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ),
                "",
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(
                        Span(
                            service=service,
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            attributes={a.key: _attr_value(a.value) for a in span.attributes},
                            status_code=span.status.code,
                            event_attributes=[
                                {a.key: _attr_value(a.value) for a in event.attributes}
                                for event in span.events
                            ],
                        )
                    )
        with self.lock:
            self.spans.extend(received)
        return trace_service_pb2.ExportTraceServiceResponse()


class TraceReceiver:
    """The OTLP trace service (opentelemetry-proto) on a real gRPC port."""

    def __init__(self, port: int, collector: _Collector) -> None:
        self.port = port
        self.endpoint = f"http://127.0.0.1:{port}"
        self._collector = collector

    @property
    def spans(self) -> list[Span]:
        with self._collector.lock:
            return list(self._collector.spans)

    def wait_for(self, predicate, what: str, timeout: float = 20.0) -> list[Span]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            spans = self.spans
            if predicate(spans):
                return spans
            time.sleep(0.1)
        names = sorted({(s.service, s.name) for s in self.spans})
        raise TimeoutError(f"timed out waiting for {what}; received {names}")


@contextmanager
def trace_receiver() -> Iterator[TraceReceiver]:
    collector = _Collector()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield TraceReceiver(port, collector)
    finally:
        server.stop(0)
