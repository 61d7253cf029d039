"""structlog setup: JSON lines off a terminal, a request id on every line of a call.

No processor renders exc_info: a traceback can quote SQL or values, so the error
edge logs an exception's type and location instead (identity.api.errors)."""

from __future__ import annotations

import logging
import sys

import structlog

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


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
