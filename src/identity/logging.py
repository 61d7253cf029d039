"""structlog setup: JSON lines off a terminal, a request id on every line of a call,
and the trace and span ids when the call is traced (identity.observability).

No processor renders exc_info: a traceback can quote SQL or values, so the error
edge logs an exception's type and location instead (identity.api.errors).

Libraries (psycopg_pool, asyncio, redis, grpc's Python side) log through the standard
`logging` module; their records are routed through the same structlog processors, so
stderr holds one JSON object per line whatever wrote it. Of a library record only its
message *template* is kept, with the type of any exception among its arguments, never
the formatted text: psycopg_pool, for one, formats the exception of a failed connection
into its message, and that text can quote server errors, SQL or values."""

from __future__ import annotations

import logging
import sys
from typing import Any

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


def _library_record(_: object, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    """A standard-library record: its logger name, level and message template; the type
    of an exception it carries, never the exception's text or a traceback."""
    record: logging.LogRecord | None = event.get("_record")
    if record is None:
        return event
    args: Any = event.pop("positional_args", ())
    if record.name == "py.warnings":
        # captureWarnings logs the formatted warning as the message: keep its first line
        # (file, line, category and text of the warning; no exception is involved).
        event["event"] = str(record.msg).split("\n", 1)[0]
    event["logger"] = record.name
    values = args.values() if isinstance(args, dict) else (args or ())
    error = next((v for v in values if isinstance(v, BaseException)), None)
    exc_info = event.get("exc_info")
    if error is None and isinstance(exc_info, tuple) and isinstance(exc_info[1], BaseException):
        error = exc_info[1]
    if error is not None:
        event["error_type"] = type(error).__name__
    for key in ("exc_info", "exc_text", "stack_info"):
        event.pop(key, None)
    return event


def _drop_record(_: object, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    event.pop("_record", None)
    event.pop("_from_structlog", None)
    return event


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        _trace_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        # One write per line, newline included (print writes the newline apart, and stderr
        # writes through): the workers of `serve --workers N` share one stderr, and a
        # line split in two writes is cut by another worker's.
        logger_factory=structlog.WriteLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    _route_standard_logging(shared, renderer, max(numeric_level, logging.WARNING))


def _route_standard_logging(
    shared: list[structlog.typing.Processor], renderer: structlog.typing.Processor, level: int
) -> None:
    """Every standard-library logger writes through structlog's processors to stderr.
    Libraries are heard from at WARNING and above (their INFO is chatter)."""
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, _library_record],
            processors=[_drop_record, renderer],
            # The template, not the formatted message (see the module's docstring).
            use_get_message=False,
            pass_foreign_args=True,
        )
    )
    handler.set_name("identity")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "identity"]:
        root.removeHandler(old)  # configured again (tests, the in-process CLI): one handler
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
