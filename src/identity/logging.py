"""structlog setup: JSON lines off a terminal, a request id on every line of a call,
and the trace and span ids when the call is traced (identity.observability).

No processor renders exc_info: a traceback can quote SQL or values, so the error
edge logs an exception's type and location instead (identity.api.errors)."""

from __future__ import annotations

import logging
import sys

import structlog
from opentelemetry import trace

_REDACTED_KEYS = frozenset({"password", "token", "access_token", "refresh_token", "secret", "authorization"})


def _redact(_: object, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    # Defence in depth: a careless `log.info(..., password=...)` still writes nothing secret.
    for key in _REDACTED_KEYS & event.keys():
        event[key] = "[redacted]"
    return event


class _CurrentStderr:
    """sys.stderr as it is when a line is written, not as it was at configure time: loggers
    are cached on first use, and a stream swapped since (a test runner's, a closed one)
    must not take their lines, nor may stdout, which belongs to command output."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def _trace_ids(_: object, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    # The OpenTelemetry API alone: without a configured tracer (tracing off) there is
    # never a valid span here, and this costs one context lookup per line.
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
