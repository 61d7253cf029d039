"""Refresh tokens remember the token that replaced them.

The optional refresh retry grace window (IDENTITY_REFRESH_REUSE_GRACE_SECONDS) needs
to know which token a rotation produced, so that a retried rotation can kill that
successor before it issues another one: never two live tokens in one session.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No foreign key: the successor row lives in the same table and dies with the
    # same session (ON DELETE CASCADE on session_id), so it cannot dangle for long,
    # and a self-reference would only slow every rotation down.
    op.execute("ALTER TABLE refresh_tokens ADD COLUMN replaced_by bytea")


def downgrade() -> None:
    op.execute("ALTER TABLE refresh_tokens DROP COLUMN IF EXISTS replaced_by")
