"""Output of list/show commands: a table for people, or `--json` for programs.
Both go to stdout; logs and errors go to stderr, so `| jq` always gets clean JSON."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout instead of a table.")]


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple | frozenset | set):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def emit_json(data: Any) -> None:
    typer.echo(json.dumps(data, default=_default, indent=2, sort_keys=False))


def when(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
