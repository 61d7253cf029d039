"""Login attempts in flight, apart from the consecutive failures.

users.failed_logins counted every attempt before its hash was checked and only a
success reset it, so a burst of correct logins could lock an account. Now an
attempt reserves a slot (login_pending) before the hash is checked, and only a
checked wrong password turns into a failure. A reservation is refused while
failed_logins + login_pending would exceed the limit, so parallel guesses still
cannot pass it; login_pending_until lets reservations left by a process that died
mid-check lapse instead of holding slots forever.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE users
            ADD COLUMN login_pending integer NOT NULL DEFAULT 0,
            ADD COLUMN login_pending_until timestamptz
        """
    )


def downgrade() -> None:
    op.execute("ALTER TABLE users DROP COLUMN login_pending_until, DROP COLUMN login_pending")
