"""structlog setup: JSON lines off a terminal, a request id on every line of a call.

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

_REDACTED_KEYS = frozenset({"password", "token", "access_token", "refresh_token", "secret", "authorization"})


def _redact(_: object, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    # Defence in depth: a careless `log.info(..., password=...)` still writes nothing secret.
    for key in _REDACTED_KEYS & event.keys():
        event[key] = "[redacted]"
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
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _route_standard_logging(shared, renderer, max(numeric_level, logging.WARNING))


def _route_standard_logging(
    shared: list[structlog.typing.Processor], renderer: structlog.typing.Processor, level: int
) -> None:
    """Every standard-library logger writes through structlog's processors to stderr.
    Libraries are heard from at WARNING and above (their INFO is chatter)."""
    handler = logging.StreamHandler(sys.stderr)
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
