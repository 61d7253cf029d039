"""Alembic owns the schema: upgrade -> downgrade to base -> upgrade on an empty database."""

from __future__ import annotations

import psycopg

from identity.store.migrate import downgrade, upgrade
from tests.support import fresh_database


def _tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
    return {row[0] for row in rows} - {"alembic_version"}


def test_upgrade_downgrade_upgrade_round_trip() -> None:
    with fresh_database("identity_migrations") as url:
        upgrade(url)
        created = _tables(url)
        assert {"users", "sessions", "refresh_tokens", "roles", "signing_keys", "login_history"} <= created
        assert "login_history_default" in created
        downgrade(url, "base")
        assert _tables(url) == set()
        upgrade(url)
        assert _tables(url) == created


def test_login_history_is_range_partitioned_with_default_and_current_month() -> None:
    with fresh_database("identity_migrations") as url:
        upgrade(url)
        with psycopg.connect(url) as conn:
            strategy = conn.execute(
                "SELECT partstrat FROM pg_partitioned_table WHERE partrelid = 'login_history'::regclass"
            ).fetchone()
            partitions = conn.execute(
                """
                SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
                JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'login_history'::regclass
                """
            ).fetchall()
            current = conn.execute("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM')").fetchone()
        assert strategy == ("r",)
        bounds = dict(partitions)
        assert bounds["login_history_default"] == "DEFAULT"
        assert f"login_history_{current[0]}" in bounds
