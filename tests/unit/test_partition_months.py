"""Month arithmetic and bound parsing behind login_history partition maintenance."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from identity.domain.partitions import Partition, add_months, month_start
from identity.services.partitions import months_to_cover, retention_cutoff
from identity.store.partitions import parse_bound, partition_name


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def test_month_start_is_taken_in_utc() -> None:
    # 08:30 on 1 February in Tokyo (UTC+9) is still January in UTC.
    tokyo = datetime(2026, 2, 1, 8, 30, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert month_start(tokyo) == utc(2026, 1, 1)
    assert month_start(utc(2026, 12, 31, 23, 59, 59)) == utc(2026, 12, 1)


@pytest.mark.parametrize(
    ("start", "count", "expected"),
    [
        (utc(2026, 11, 1), 1, utc(2026, 12, 1)),
        (utc(2026, 11, 1), 2, utc(2027, 1, 1)),
        (utc(2026, 1, 1), -1, utc(2025, 12, 1)),
        (utc(2026, 3, 1), -15, utc(2024, 12, 1)),
        (utc(2026, 3, 1), 0, utc(2026, 3, 1)),
    ],
)
def test_add_months_crosses_years(start: datetime, count: int, expected: datetime) -> None:
    assert add_months(start, count) == expected


def test_partition_names_follow_the_migration() -> None:
    assert partition_name(utc(2026, 1, 1)) == "login_history_2026_01"


def test_parse_bound_reads_postgres_text_and_default() -> None:
    assert parse_bound("DEFAULT") == (None, None)
    start, end = parse_bound("FOR VALUES FROM ('2026-11-01 00:00:00+00') TO ('2026-12-01 00:00:00+00')")
    assert (start, end) == (utc(2026, 11, 1), utc(2026, 12, 1))
    # Another session time zone renders the same instants differently; still right.
    start, _ = parse_bound("FOR VALUES FROM ('2026-11-01 01:00:00+01') TO ('2026-12-01 01:00:00+01')")
    assert start == utc(2026, 11, 1)
    with pytest.raises(ValueError):
        parse_bound("FOR VALUES IN (1, 2)")


def test_overlap_is_half_open() -> None:
    november = Partition("login_history_2026_11", utc(2026, 11, 1), utc(2026, 12, 1))
    assert november.overlaps(utc(2026, 11, 1), utc(2026, 12, 1))
    assert not november.overlaps(utc(2026, 12, 1), utc(2027, 1, 1))
    assert not november.overlaps(utc(2026, 10, 1), utc(2026, 11, 1))
    assert not Partition("login_history_default", None, None).overlaps(utc(2026, 11, 1), utc(2026, 12, 1))


def test_months_to_cover_includes_the_current_month() -> None:
    covered = months_to_cover(utc(2026, 11, 24, 12), 2)
    assert covered == [
        (utc(2026, 11, 1), utc(2026, 12, 1)),
        (utc(2026, 12, 1), utc(2027, 1, 1)),
        (utc(2027, 1, 1), utc(2027, 2, 1)),
    ]


def test_retention_keeps_whole_months_before_the_current_one() -> None:
    now = datetime(2026, 11, 24, 12, tzinfo=timezone(timedelta(hours=-5)))
    assert retention_cutoff(now, 12) == utc(2025, 11, 1)
    assert retention_cutoff(now, 1) == utc(2026, 10, 1)
