"""Helpers shared by repositories for turning rows into domain values."""

from __future__ import annotations

from typing import Any

import psycopg

Row = dict[str, Any]
Conn = psycopg.AsyncConnection[Row]


def ip_text(value: object) -> str | None:
    return None if value is None else str(value)
