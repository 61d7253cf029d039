"""Alembic environment. The database URL comes from IDENTITY_DATABASE_URL (or the
`sqlalchemy.url` the caller set); migrations run through SQLAlchemy + psycopg3."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from identity.store.migrate import sqlalchemy_url

config = context.config


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url") or sqlalchemy_url(None)
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, transaction_per_migration=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline SQL generation is not supported; run against a database")
run_migrations_online()
