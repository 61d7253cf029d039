"""Alembic migrations: the schema is owned here and only here."""
