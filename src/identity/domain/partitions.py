"""Months of login history: the UTC month arithmetic partition maintenance is built on,
and the record of one partition."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Partition:
    name: str
    # Both None for the DEFAULT partition.
    start: datetime | None
    end: datetime | None
    rows: int | None = None

    @property
    def is_default(self) -> bool:
        return self.start is None

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start is not None and self.end is not None and self.start < end and start < self.end


def month_start(moment: datetime) -> datetime:
    """The first instant of moment's month, in UTC."""
    utc = moment.astimezone(UTC)
    return datetime(utc.year, utc.month, 1, tzinfo=UTC)


def add_months(month: datetime, count: int) -> datetime:
    index = month.year * 12 + (month.month - 1) + count
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
