"""Keyset positions and ranges for the newest-first listings (sessions, login history)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID


@dataclass(frozen=True)
class SessionCursor:
    """Position in a newest-first listing of sessions: the last one already shown."""

    created_at: datetime
    id: UUID


@dataclass(frozen=True)
class HistoryCursor:
    """Position in a newest-first listing of login history: the last entry already shown."""

    login_at: datetime
    id: int


@dataclass(frozen=True)
class TimeRange:
    """start <= login_at < end; either side may be open."""

    start: datetime | None = None
    end: datetime | None = None
