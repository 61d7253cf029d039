"""Runs Alembic from code, so `identity migrate` needs no ini file or working directory.

`upgrade` never goes down: asking for a revision older than the database's is refused,
and going down is `downgrade`, a separate step the operator confirms."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError


class RevisionError(ValueError):
    """An unknown revision, or one on the wrong side of the database's for the command."""


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


def _scripts() -> ScriptDirectory:
    config = Config()
    config.set_main_option("script_location", str(resources.files("identity.migrations")))
    return ScriptDirectory.from_config(config)


def known_revisions() -> list[str]:
    """Every revision, oldest first."""
    return [script.revision for script in reversed(list(_scripts().walk_revisions()))]


def head_revision() -> str:
    head = _scripts().get_current_head()
    assert head is not None
    return head


def current_revision(database_url: str) -> str | None:
    """The revision the database is at; None before the first migration."""
    from sqlalchemy import create_engine

    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def resolve(revision: str) -> str | None:
    """A revision id from an id, `head` or `base` (None); RevisionError when unknown."""
    if revision == "base":
        return None
    try:
        found = _scripts().get_revision(revision)
    except CommandError:
        found = None
    if found is None:
        known = ", ".join([*known_revisions(), "head", "base"])
        raise RevisionError(f"unknown revision {revision!r} (known: {known})")
    return str(found.revision)


def _order(revision: str | None) -> int:
    known = known_revisions()
    if revision is not None and revision not in known:
        raise RevisionError(
            f"the database is at revision {revision!r}, which this release does not know"
            " (a newer release migrated it): run that release, or its downgrade"
        )
    return 0 if revision is None else known.index(revision) + 1


def upgrade(database_url: str, revision: str = "head") -> str | None:
    """Upgrades to `revision` and returns the revision the database is at afterwards.
    Refuses a revision older than the database's: upgrade never goes down."""
    target = resolve(revision)
    current = current_revision(database_url)
    if _order(target) < _order(current):
        raise RevisionError(
            f"the database is at {current}, past {revision}: upgrade never goes down"
            f" (to go down: identity downgrade --revision {revision})"
        )
    command.upgrade(alembic_config(database_url), revision)
    return current_revision(database_url)


def downgrade_steps(database_url: str, revision: str) -> tuple[str | None, list[str]]:
    """(current revision, the revisions a downgrade to `revision` would undo, newest first)."""
    target = resolve(revision)
    current = current_revision(database_url)
    if _order(target) > _order(current):
        raise RevisionError(
            f"the database is at {current or 'base'}, before {revision}: use identity migrate"
        )
    known = known_revisions()
    return current, list(reversed(known[_order(target) : _order(current)]))


def downgrade(database_url: str, revision: str) -> str | None:
    """Downgrades to `revision` and returns the revision the database is at afterwards."""
    resolve(revision)
    command.downgrade(alembic_config(database_url), revision)
    return current_revision(database_url)
