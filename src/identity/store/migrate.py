"""Runs Alembic from code, so `identity migrate` needs no ini file or working directory."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config


def sqlalchemy_url(database_url: str | None) -> str:
    """psycopg3 URL for SQLAlchemy from a libpq one (postgresql://...)."""
    if database_url is None:
        from identity.config import Settings

        database_url = Settings.from_env().database_url
    for prefix in ("postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix) :]
    return database_url


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("identity.migrations")))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url(database_url).replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)
